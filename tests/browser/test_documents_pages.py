"""Remote scanning and printing on the real pages: the expert's console drives the
kiosk's scanner and printer through a real device agent, the kiosk's page tells the
citizen what to do at each step, and the expert's verdict on each document reaches both
pages.

The agent is the ``visio-kiosk-agent`` program, run as a process as on a kiosk, with
SANE's ``test`` backend as its scanner and a file printer of a private cupsd as its
printer (the session fixtures of ``tests/agent``). Both pages are 1280x800 screens.
One call carries the whole story: a call, an agent and two Chromium pages with media
are a lot for two cores.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.async_api import Browser, Request, expect

import tests.agent.conftest as real_devices
from tests.browser.parties import (
    Party,
    answer_call,
    assert_accessible,
    assert_no_page_errors,
    open_expert,
    open_kiosk,
    queue_a_call,
)
from visio_agent.trial import PrivateCups

pytestmark = pytest.mark.browser

# The session's SANE configuration and private cupsd, those of the agent's own tests.
sane_config = real_devices.sane_config
cups_server = real_devices.cups_server
KIOSK_PRINTER = real_devices.KIOSK_PRINTER

SCREEN = {"width": 1280, "height": 800}
# The agent connects, then reports its devices every AGENT_HEALTH_S.
AGENT_HEALTH_S = 0.5
AGENT_START_S = 30
AGENT_STOP_S = 10
DEVICE_WAIT_MS = 30_000
PLACE = "Posez votre document face contre la vitre"

# Every title the kiosk's prompt shows, in order: the test backend scans in
# milliseconds, so some prompts are on the screen for a moment only.
RECORD_PROMPTS = """() => {
  const title = document.getElementById("document-prompt-title");
  const seen = [];
  const record = () => {
    const now = title.textContent;
    if (now && seen[seen.length - 1] !== now) seen.push(now);
  };
  new MutationObserver(record)
    .observe(title, { subtree: true, childList: true, characterData: true });
  window.promptsSeen = seen;
}"""
SHARE_CODE = re.compile(r"^[A-Z0-9]{6,12}$")
# The print form's choice of a file from the expert's computer (call-documents.js).
OWN_FILE = "__own_file__"
IMAGE_SHOWN = """() => {
  const image = document.querySelector("[data-testid=viewer-image]");
  return Boolean(image) && !image.hidden && image.complete && image.naturalWidth > 0;
}"""


@dataclass
class DeviceAgent:
    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace") if self.log.exists() else ""


def agent_command() -> list[str]:
    """The installed console script, as a kiosk runs it; the module if not installed."""
    script = Path(sys.executable).with_name("visio-kiosk-agent")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "visio_agent.cli"]


@pytest.fixture
async def device_agent(
    server: Any, sane_config: Path, cups_server: PrivateCups, tmp_path: Path
) -> AsyncIterator[DeviceAgent]:
    """kiosk-1's device agent, connected to the test server with a device token."""
    log = tmp_path / "agent.log"
    environment = {
        **os.environ,
        "SANE_CONFIG_DIR": str(sane_config),
        "CUPS_SERVER": cups_server.server,
    }
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *agent_command(),
            "--server",
            server.url,
            "--token",
            server.token("device", "kiosk-1"),
            "--printer",
            KIOSK_PRINTER,
            "--spool-dir",
            str(tmp_path / "agent-spool"),
            "--health-interval",
            str(AGENT_HEALTH_S),
            # A page with lines on it, for the screenshots of the viewer.
            "--scanner-option",
            "test-picture=Grid",
            env=environment,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    agent = DeviceAgent(process, log)
    try:
        yield agent
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), AGENT_STOP_S)
            except TimeoutError:
                process.kill()
                await process.wait()


async def devices_ready(expert: Party, agent: DeviceAgent) -> None:
    """The console shows the kiosk's scanner and printer as the agent reported them."""
    for part in ("scanner", "printer"):
        try:
            await expect(expert.page.get_by_test_id(f"device-{part}")).to_have_attribute(
                "data-level", "ready", timeout=DEVICE_WAIT_MS
            )
        except AssertionError:
            pytest.fail(f"{part} not ready on the console; agent said:\n{agent.output()}")


async def prompt_is(kiosk: Party, title: str, timeout_ms: float = 20_000) -> None:
    await expect(kiosk.page.get_by_test_id("document-prompt-title")).to_have_text(
        title, timeout=timeout_ms
    )


def command_row(expert: Party, nth: int = 0) -> Any:
    """A command of the panel, the newest first."""
    return expert.page.locator("#device-commands .command").nth(nth)


def document_row(expert: Party, title: str) -> Any:
    return expert.page.locator("#case-documents .document").filter(has_text=title)


async def document_id(expert: Party, title: str) -> str:
    row = document_row(expert, title)
    await expect(row).to_have_count(1)
    identifier = await row.get_attribute("data-document")
    assert identifier
    return identifier


async def within_screen(party: Party, *test_ids: str) -> None:
    for test_id in test_ids:
        box = await party.page.get_by_test_id(test_id).bounding_box()
        assert box is not None, test_id
        assert box["y"] >= 0 and box["y"] + box["height"] <= SCREEN["height"] + 1, (test_id, box)


async def scan(expert: Party, title: str, **settings: str) -> None:
    """The expert's scan: ``multipage="yes"``, ``color="color"``, ``resolution="300"``..."""
    page = expert.page
    multipage = page.get_by_test_id("scan-multipage")
    await multipage.set_checked(settings.pop("multipage", "") == "yes")
    for name, value in settings.items():
        await page.get_by_test_id(f"scan-{name}").select_option(value)
    await page.get_by_test_id("scan-title").fill(title)
    await page.get_by_test_id("scan-button").click()


async def open_in_viewer(expert: Party, identifier: str) -> None:
    await expert.page.get_by_test_id(f"open-{identifier}").click()
    await expect(expert.page.get_by_test_id("document-viewer")).to_be_visible()
    await expert.page.wait_for_function(IMAGE_SHOWN, timeout=15_000)


def a_pdf() -> bytes:
    """A one-page A4 PDF, as a partner's form would be."""
    page = Image.new("L", (595, 842), 255)
    ImageDraw.Draw(page).rectangle((60, 60, 535, 140), outline=0, width=4)
    out = io.BytesIO()
    page.save(out, "PDF", resolution=72)
    return out.getvalue()


async def test_expert_scans_reviews_and_prints_at_the_kiosk(
    browser: Browser,
    server: Any,
    device_agent: DeviceAgent,
    cups_server: PrivateCups,
    tmp_path: Path,
) -> None:
    expert = await open_expert(browser, server, SCREEN)
    kiosk = await open_kiosk(browser, server, SCREEN)
    page_requests: list[Request] = []
    expert.page.on(
        "request",
        lambda request: page_requests.append(request) if "/pages/" in request.url else None,
    )
    await queue_a_call(kiosk)
    await answer_call(kiosk, expert)
    console, screen = expert.page, kiosk.page

    # 1. The Documents panel shows the kiosk's devices as its agent reports them.
    await expect(console.get_by_test_id("documents-panel")).to_be_visible()
    await devices_ready(expert, device_agent)
    await screen.evaluate(RECORD_PROMPTS)
    await console.screenshot(path=tmp_path / "console-documents.png")
    await assert_accessible(expert, "console with the documents panel")

    # 2. A scan of two pages: the kiosk asks for the document, then for each next page.
    await scan(expert, "Justificatif de domicile", multipage="yes")
    await expect(screen.get_by_test_id("page-more")).to_be_visible(timeout=20_000)
    await prompt_is(kiosk, "Page 1 numérisée")
    assert PLACE in await screen.evaluate("window.promptsSeen")
    await expect(command_row(expert)).to_have_attribute("data-state", "waiting_page")
    await expect(command_row(expert).locator(".command-text")).to_contain_text("Page 1")
    await within_screen(kiosk, "page-more", "page-done", "hangup-button")
    await screen.screenshot(path=tmp_path / "kiosk-next-page.png")
    await assert_accessible(kiosk, "kiosk asking for the next page")
    await screen.get_by_test_id("page-more").click()
    await prompt_is(kiosk, "Page 2 numérisée")
    await screen.get_by_test_id("page-done").click()
    await prompt_is(kiosk, "Document envoyé au conseiller")
    await expect(screen.get_by_test_id("page-more")).to_be_hidden()
    await expect(command_row(expert)).to_have_attribute("data-state", "done", timeout=20_000)
    proof = await document_id(expert, "Justificatif de domicile")
    row = document_row(expert, "Justificatif de domicile")
    await expect(row).to_have_attribute("data-state", "received")
    await expect(row).to_contain_text("2 pages")

    # 3. The viewer shows the scan as images fetched with the token in a header.
    await open_in_viewer(expert, proof)
    await expect(console.get_by_test_id("viewer-page")).to_have_text("Page 1 sur 2")
    # The page turns from the keyboard as well as with the buttons.
    await console.get_by_test_id("viewer-canvas").press("ArrowRight")
    await expect(console.get_by_test_id("viewer-page")).to_have_text("Page 2 sur 2")
    await expect(console.get_by_test_id("document-viewer")).to_have_attribute("data-page", "2")
    await console.wait_for_function(IMAGE_SHOWN)
    source = await console.get_by_test_id("viewer-image").get_attribute("src")
    assert source and source.startswith("blob:"), source
    await console.get_by_test_id("viewer-rotate-right").click()
    await expect(console.get_by_test_id("document-viewer")).to_have_attribute("data-rotation", "90")
    await console.get_by_test_id("viewer-zoom-in").click()
    await expect(console.get_by_test_id("viewer-zoom")).to_have_text("125 %")
    fetched = [request for request in page_requests if f"/documents/{proof}/pages/" in request.url]
    assert {"1.png", "2.png"} <= {r.url.split("/pages/")[1].split("?")[0] for r in fetched}
    for request in fetched:
        headers = await request.all_headers()
        assert headers.get("authorization", "").startswith("Bearer "), request.url
        assert "token" not in request.url
    await console.screenshot(path=tmp_path / "console-viewer.png")
    await assert_accessible(expert, "document viewer")

    # 4. Rejected as illegible: the console and the kiosk say so.
    await console.get_by_test_id("reject-illegible").check()
    await console.get_by_test_id("reject-document").click()
    await expect(console.get_by_test_id("viewer-state")).to_have_attribute("data-state", "rejected")
    await expect(console.get_by_test_id("viewer-review")).to_be_hidden()
    await expect(row).to_have_attribute("data-state", "rejected")
    await expect(row).to_contain_text("Illisible, à refaire")
    await prompt_is(kiosk, "Document illisible")
    await expect(screen.get_by_test_id("document-prompt-text")).to_contain_text(
        "numériser à nouveau"
    )
    await screen.screenshot(path=tmp_path / "kiosk-rejected.png")
    await console.get_by_test_id("viewer-close").click()
    await expect(console.get_by_test_id("document-viewer")).to_be_hidden()

    # 5. A one-page scan in colour at 300 dpi, accepted.
    await scan(expert, "Avis d'imposition", color="color", resolution="300")
    await expect(command_row(expert)).to_have_attribute("data-state", "done", timeout=30_000)
    notice = await document_id(expert, "Avis d'imposition")
    await open_in_viewer(expert, notice)
    await expect(console.get_by_test_id("viewer-page")).to_have_text("Page 1 sur 1")
    await console.get_by_test_id("accept-document").click()
    # The test configuration exports accepted documents to a folder at once.
    accepted = re.compile(r"^(accepted|exported)$")
    await expect(console.get_by_test_id("viewer-state")).to_have_attribute("data-state", accepted)
    await console.get_by_test_id("viewer-close").click()
    await expect(document_row(expert, "Avis d'imposition")).to_have_attribute(
        "data-state", accepted
    )
    await prompt_is(kiosk, "Document accepté")

    # 6. Printed at the kiosk, two copies: the kiosk says to take the printout.
    choice = console.get_by_test_id("print-document")
    await expect(choice).to_have_value(notice)
    await console.get_by_test_id("print-copies").fill("2")
    await console.get_by_test_id("print-button").click()
    await prompt_is(kiosk, "Prenez votre impression", timeout_ms=60_000)
    assert "Impression en cours" in await screen.evaluate("window.promptsSeen")
    await expect(command_row(expert)).to_have_attribute("data-state", "done")
    await expect(command_row(expert)).to_have_attribute("data-kind", "print")
    printout = cups_server.out / f"{KIOSK_PRINTER}.prn"
    assert printout.exists() and printout.stat().st_size > 0
    assert cups_server.completed_jobs().strip(), "no completed CUPS job"
    await screen.screenshot(path=tmp_path / "kiosk-printout.png")
    await assert_accessible(kiosk, "kiosk telling to take the printout")

    # A form of the expert's own, uploaded from the console then printed at the kiosk.
    await choice.select_option(OWN_FILE)
    await console.get_by_test_id("print-file").set_input_files(
        {"name": "Formulaire à signer.pdf", "mimeType": "application/pdf", "buffer": a_pdf()}
    )
    await console.get_by_test_id("print-copies").fill("1")
    await console.get_by_test_id("print-button").click()
    form = document_row(expert, "Formulaire à signer.pdf")
    await expect(form).to_contain_text("envoyé par le conseiller")
    await expect(command_row(expert)).to_have_attribute("data-kind", "print")
    await expect(command_row(expert)).to_have_attribute("data-state", "done", timeout=60_000)
    await prompt_is(kiosk, "Prenez votre impression")
    assert len(cups_server.completed_jobs().strip().splitlines()) >= 2
    await console.screenshot(path=tmp_path / "console-case-file.png")

    # 7. Tell it once: the citizen agrees to reuse the accepted documents and sees the
    # code; takes the agreement back (that code stops working); agrees again.
    await screen.get_by_test_id("consent-button").click()
    code = screen.get_by_test_id("share-code")
    await expect(code).to_have_text(SHARE_CODE)
    withdrawn = await code.text_content()
    await screen.screenshot(path=tmp_path / "kiosk-share-code.png")
    await assert_accessible(kiosk, "kiosk showing its sharing code")
    await screen.get_by_test_id("withdraw-button").click()
    await expect(screen.get_by_test_id("share-notice")).to_contain_text("retiré")
    await expect(code).to_be_hidden()
    await screen.get_by_test_id("consent-button").click()
    await expect(code).to_have_text(SHARE_CODE)
    given = await code.text_content()
    assert withdrawn and given

    # Nothing of the documents stays on either page once the call is over.
    await console.get_by_test_id("hangup-button").click()
    await expert.state_is("wrap_up")
    assert await console.locator("#case-documents .document").count() == 0
    await kiosk.state_is("ended")
    await expect(screen.get_by_test_id("document-prompt")).to_be_hidden()
    await expect(screen.get_by_test_id("case-share")).to_be_hidden()

    # 8. At the next call the citizen types the code: the accepted document is offered
    # to the expert as a shared one; the withdrawn code is refused.
    await console.get_by_test_id("wrapup-reason-0").check()
    await console.get_by_test_id("wrapup-submit").click()
    await expert.state_is("idle")
    # The thank-you screen gives the kiosk back to the next visitor by itself.
    await kiosk.state_is("home", within_ms=15_000)
    await queue_a_call(kiosk)
    await answer_call(kiosk, expert)
    await expect(console.locator("#case-documents .document")).to_have_count(0)
    await screen.get_by_test_id("have-code-button").click()
    await screen.get_by_test_id("share-input").fill(withdrawn)
    await screen.get_by_test_id("share-submit").click()
    await expect(screen.locator("#share-error")).to_contain_text("pas reconnu")
    await screen.get_by_test_id("share-input").fill(given.lower())
    await screen.get_by_test_id("share-submit").click()
    await expect(screen.get_by_test_id("share-notice")).to_contain_text("voit maintenant")
    shared = document_row(expert, "Avis d'imposition")
    await expect(shared).to_contain_text("partagé")
    await expect(console.get_by_test_id("case-empty")).to_be_hidden()
    await assert_accessible(kiosk, "kiosk after typing a sharing code")
    await console.screenshot(path=tmp_path / "console-shared.png")
    await screen.screenshot(path=tmp_path / "kiosk-shared.png")

    assert device_agent.process.returncode is None, device_agent.output()
    assert_no_page_errors(kiosk, expert)
