"""A kiosk on a 512 kbit/s link in a three-party call: does the citizen's voice hold?

The hard case of calls as rooms: an interpreter joins, and the kiosk, whose link is the
published minimum (512 kbit/s each way), now sends its camera and microphone twice and
receives two videos. The kiosk page shares ``media.kiosk_uplink_kbps`` across its
outgoing connections, audio first (``RTCRtpSender.setParameters``). This bench measures
what the expert receives from the kiosk, with that budget and, as the reference in the
same run, without it (a budget far above the link, so Chromium's own congestion control
alone shares the link):

- audio concealed: the share of the kiosk's audio samples the expert's decoder had to
  invent because packets were late or lost (what a person hears as the voice breaking
  up), and audio packets lost;
- the kiosk's video frame rate at the expert, and the bit rate that arrives from it;

first with the kiosk and the expert alone, then with the interpreter in the call.

Real headless Chromium pages with fake camera and microphone. The kiosk's browser runs
in a network namespace of its own; the expert's and the interpreter's share another.
Media between them crosses one veth pair shaped by ``tc tbf`` to 512 kbit/s in each
direction; each namespace reaches the in-process server by a veth pair of its own. The
namespaces are made by this bench and removed when it ends (root and ``ip`` needed).

Run: ``python bench/kiosk_uplink.py [--quick] [--json]``
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import SECRET, bench_parser, in_process_server, report, run
from playwright.async_api import Browser, Page, async_playwright

from visio_server.auth import mint_token
from visio_server.config import Config, load_config

LINK_KBPS = 512
NO_BUDGET_KBPS = 100_000
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KIOSK = "kiosk:kiosk-1"
INTERPRETER = "interpreter:interp-1"


# ---------------------------------------------------------------------- network


@dataclass(frozen=True)
class Site:
    """The bench's namespaces and the addresses the server listens on for each."""

    kiosk_ns: str
    office_ns: str
    kiosk_server_ip: str
    office_server_ip: str


def _ip(*args: str, ns: str | None = None) -> None:
    """``ip ARGS`` here, or inside the namespace ``ns``; ``tc ...`` likewise when
    ``args`` starts with ``tc``."""
    command = list(args) if args[0] == "tc" else ["ip", *args]
    if ns is not None:
        command = ["ip", "netns", "exec", ns, *command]
    subprocess.run(command, check=True, capture_output=True, text=True)


@contextmanager
def slow_kiosk_site(link_kbps: int) -> Iterator[Site]:
    """Two namespaces (the kiosk; the office of the expert and the interpreter), each
    with a veth pair to this namespace for signalling, and one veth pair between them
    for media, shaped to ``link_kbps`` each way."""
    tag = f"{os.getpid() % 100_000}"
    kiosk, office = f"vgk{tag}", f"vgo{tag}"
    base = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    try:
        for ns in (kiosk, office):
            _ip("netns", "add", ns)
            _ip("link", "set", "lo", "up", ns=ns)
        # Signalling: <ns> <-> this namespace, where the server listens.
        for ns, host_if, ns_if, net in (
            (kiosk, f"k{tag}h", f"k{tag}n", 0),
            (office, f"o{tag}h", f"o{tag}n", 4),
        ):
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            # No IPv6 link-local addresses: their arrival a moment after the link comes
            # up is a network change to Chromium, which aborts the page loads in flight.
            _ip("link", "set", host_if, "addrgenmode", "none")
            _ip("link", "set", ns_if, "netns", ns)
            _ip("link", "set", ns_if, "addrgenmode", "none", ns=ns)
            _ip("addr", "add", f"{base}.{net + 1}/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("addr", "add", f"{base}.{net + 2}/30", "dev", ns_if, ns=ns)
            _ip("link", "set", ns_if, "up", ns=ns)
        # Media: kiosk <-> office, the slow link, shaped on both ends' way out.
        _ip("link", "add", f"m{tag}k", "type", "veth", "peer", "name", f"m{tag}o")
        for ns, iface, address in ((kiosk, f"m{tag}k", 9), (office, f"m{tag}o", 10)):
            _ip("link", "set", iface, "netns", ns)
            _ip("link", "set", iface, "addrgenmode", "none", ns=ns)
            _ip("addr", "add", f"{base}.{address}/30", "dev", iface, ns=ns)
            _ip("link", "set", iface, "up", ns=ns)
            _ip(
                *("tc", "qdisc", "add", "dev", iface, "root", "tbf"),
                *("rate", f"{link_kbps}kbit", "burst", "16kbit", "latency", "300ms"),
                ns=ns,
            )
        yield Site(kiosk, office, f"{base}.1", f"{base}.5")
    finally:
        for ns in (kiosk, office):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", f"k{tag}h"], capture_output=True)
        subprocess.run(["ip", "link", "del", f"o{tag}h"], capture_output=True)


def chromium_in(ns: str, folder: Path) -> str:
    """A launcher that starts Debian's Chromium inside the namespace ``ns``."""
    launcher = folder / f"chromium-{ns}"
    launcher.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {CHROMIUM} "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    return str(launcher)


# ---------------------------------------------------------------------- server


def bench_config(folder: Path, uplink_kbps: int) -> Config:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        "[auth]",
        f'hs256_secret = "{SECRET}"',
        "[storage]",
        'backend = "memory"',
        "[media]",
        f"kiosk_uplink_kbps = {uplink_kbps}",
        "[[services]]",
        'id = "caf"',
        'name = "CAF"',
        'partner = "caf"',
        "always_open = true",
        "interpreter = true",
        "offer_timeout_s = 60",
        "[[services]]",
        'id = "interpretes"',
        'name = "Interprètes"',
        'partner = "interpretes"',
        "always_open = true",
        'languages = ["lsf"]',
        "interpreting = true",
        "offer_timeout_s = 60",
        "[[kiosks]]",
        'id = "kiosk-1"',
        'name = "Mairie"',
        'place = "Accueil"',
        'services = ["caf"]',
    ]
    path = folder / f"uplink-{uplink_kbps}.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return load_config(path)


# ---------------------------------------------------------------------- pages


async def open_page(browser: Browser, url: str, page_name: str, token: str) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    key = json.dumps(f"visio.token.{page_name}")
    await context.add_init_script(f"localStorage.setItem({key}, {json.dumps(token)})")
    page = await context.new_page()
    await page.goto(f"{url}/{page_name}")
    return page


async def state_is(page: Page, state: str, timeout_s: float = 30) -> None:
    await page.wait_for_function(
        "state => window.visio && window.visio.state === state",
        arg=state,
        timeout=timeout_s * 1000,
    )


async def go_available(page: Page) -> None:
    await page.get_by_test_id("status-available").click()


async def from_kiosk(page: Page) -> dict[str, float]:
    stats = await page.evaluate("async () => (await window.visio.statsByPeer())")
    return {**stats.get(KIOSK, {}), "at": time.perf_counter()}


def window_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What arrived from the kiosk between two readings of the expert's stats."""
    samples = after["audioSamplesReceived"] - before["audioSamplesReceived"]
    concealed = after["audioSamplesConcealed"] - before["audioSamplesConcealed"]
    received = after["audioPacketsReceived"] - before["audioPacketsReceived"]
    lost = after["audioPacketsLost"] - before["audioPacketsLost"]
    seconds = after["at"] - before["at"]
    return {
        "audio_concealed_pct": round(100 * concealed / samples, 2) if samples else 100.0,
        "audio_lost_pct": round(100 * lost / (lost + received), 2) if lost + received else 100.0,
        "video_fps": round((after["framesDecoded"] - before["framesDecoded"]) / seconds, 1),
        "received_kbps": round(
            8 * (after["bytesReceived"] - before["bytesReceived"]) / seconds / 1000, 1
        ),
    }


async def measure(page: Page, settle_s: float, window_s: float) -> dict[str, float]:
    await asyncio.sleep(settle_s)
    before = await from_kiosk(page)
    await asyncio.sleep(window_s)
    return window_figures(before, await from_kiosk(page))


async def one_run(
    site: Site, folder: Path, uplink_kbps: int, settle_s: float, window_s: float
) -> dict[str, Any]:
    """A call on the slow link: the kiosk and the expert, then the interpreter joins."""
    config = bench_config(folder, uplink_kbps)
    hosts = (site.kiosk_server_ip, site.office_server_ip)
    async with in_process_server(config, hosts) as kiosk_url, async_playwright() as playwright:
        office_url = kiosk_url.replace(site.kiosk_server_ip, site.office_server_ip)
        launch = playwright.chromium.launch
        kiosk_browser = await launch(
            executable_path=chromium_in(site.kiosk_ns, folder),
            args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={kiosk_url}"],
        )
        office_browser = await launch(
            executable_path=chromium_in(site.office_ns, folder),
            args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={office_url}"],
        )
        try:
            expert_token = mint_token(
                config, "expert", "expert-1", services=["caf"], name="Expert", partner="caf"
            )
            interpreter_token = mint_token(
                config,
                "interpreter",
                "interp-1",
                services=["interpretes"],
                languages=["lsf"],
                name="Interprète",
                partner="interpretes",
            )
            expert = await open_page(office_browser, office_url, "expert", expert_token)
            interpreter = await open_page(
                office_browser, office_url, "interpreter", interpreter_token
            )
            kiosk = await open_page(
                kiosk_browser, kiosk_url, "kiosk", mint_token(config, "kiosk", "kiosk-1")
            )
            await kiosk.get_by_test_id("service-caf").click()
            await kiosk.get_by_test_id("beneficiary-input").fill("1234567")
            await kiosk.get_by_test_id("call-button").click()
            await go_available(expert)
            await state_is(expert, "offered")
            await expert.get_by_test_id("accept-button").click()
            await state_is(kiosk, "in_call")
            two_party = await measure(expert, settle_s, window_s)

            await go_available(interpreter)
            await expert.get_by_test_id("interpreter-language").select_option("lsf")
            await expert.get_by_test_id("interpreter-request").click()
            await state_is(interpreter, "offered")
            await interpreter.get_by_test_id("accept-button").click()
            await state_is(interpreter, "in_call")
            await interpreter.wait_for_function(
                "key => { const t = document.querySelector("
                '`#call-stage [data-participant="${key}"]`);'
                " return t && Number(t.dataset.framesDecoded) > 0; }",
                arg=KIOSK,
                timeout=30_000,
            )
            three_party = await measure(expert, settle_s, window_s)
            at_interpreter = await measure(interpreter, 0, window_s)
            budget = await kiosk.evaluate("async () => await window.visio.budget()")
        finally:
            await kiosk_browser.close()
            await office_browser.close()
    return {
        "two_party": two_party,
        "three_party": three_party,
        "three_party_at_interpreter": at_interpreter,
        "budget": budget,
    }


async def main(quick: bool, as_json: bool) -> None:
    settle_s, window_s = (4.0, 6.0) if quick else (8.0, 20.0)
    with tempfile.TemporaryDirectory() as tmp, slow_kiosk_site(LINK_KBPS) as site:
        folder = Path(tmp)
        with_budget = await one_run(site, folder, LINK_KBPS, settle_s, window_s)
        without = await one_run(site, folder, NO_BUDGET_KBPS, settle_s, window_s)

    def pick(run_: dict[str, Any], phase: str, key: str) -> float:
        return float(run_[phase][key])

    figures: dict[str, Any] = {"link_kbps": LINK_KBPS, "window_s": window_s}
    rows = []
    for phase in ("two_party", "three_party", "three_party_at_interpreter"):
        for key in ("audio_concealed_pct", "audio_lost_pct", "video_fps", "received_kbps"):
            budget_value = pick(with_budget, phase, key)
            free_value = pick(without, phase, key)
            figures[f"{phase}_{key}_budget"] = budget_value
            figures[f"{phase}_{key}_no_budget"] = free_value
            rows.append((f"{phase} {key}", str(budget_value), str(free_value), ""))
    figures["kiosk_budget_plan"] = with_budget["budget"]
    report(
        f"Kiosk on a {LINK_KBPS} kbit/s link (each way), what the expert receives from it",
        rows,
        figures,
        as_json,
        columns=("budget", "no budget"),
    )


if __name__ == "__main__":
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    run(main(args.quick, args.json))
