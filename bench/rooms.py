"""Calls as rooms: an interpreter joining a running call, beside a two-party call set-up,
and the latency of real-time text through the server.

The server runs in its own process on loopback (memory store); every participant is a
real client in this process, with aiortc media through ``visio_sim.mesh.CallMesh``
(320x240 at 15 fps, 127.0.0.1 as the only ICE candidate). Each round is a fresh kiosk,
expert and interpreter, so nobody is in wrap-up:

- two-party: from the expert's ``offer.accept`` until the kiosk decodes the expert's
  first video frame (the expert offers to the kiosk);
- interpreter: once the kiosk and the expert see each other, the expert asks for an
  interpreter; from the interpreter's ``offer.accept`` until the kiosk, and the expert,
  decode the interpreter's first video frame (the interpreter offers to both, while the
  call's own media keeps flowing). "Both" is the later of the two.

Real-time text: the kiosk sends ``call.data`` on ``rtt`` at 10 characters a second, the
whole line so far each time, and the others time each relayed message's arrival
against its sending (one clock: same process). Idle: a call with no media, received by
the expert. Loaded: the last round's three-party call with its six connections
running in this process, received by the expert and the interpreter.

Targets (reported, not enforced): interpreter's first frame within 2x the two-party
set-up; real-time text p95 under 100 ms (EN 301 549 asks for 500 ms).

Run: ``python bench/rooms.py [--quick] [--json]``
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    bench_parser,
    config_head,
    free_port,
    kiosk_section,
    ms,
    node_args,
    percentile,
    report,
    run,
    service_section,
    subprocess_server,
)

from media.peer import loopback_host_candidates
from signaling.messages import (
    Ack,
    CallConnected,
    CallData,
    CallHangup,
    CallInvite,
    CallOffered,
    CallQueued,
    CallRequest,
    ExpertStatusSet,
    OfferAccept,
    ServerMessage,
)
from visio_client import NEW_ID, Client
from visio_server.auth import mint_token
from visio_server.config import Config, load_config
from visio_sim.room import RoomParty, RoomWaitFailed

FPS = 15
RATIO_TARGET = 2.0
RTT_TARGET_MS = 100.0
RTT_CHARS_PER_S = 10
STEP_TIMEOUT_S = 20.0
STRAGGLERS_S = 2.0
"""How long after the last character a relayed message may still arrive."""
TEXT = (
    "Bonjour, je voudrais savoir où en est mon dossier de prime d'activité, "
    "j'ai envoyé les justificatifs le mois dernier et je n'ai pas eu de réponse. "
) * 8
LINE_MAX = 500


def bench_config(kiosks: int) -> str:
    lines = config_head(['backend = "memory"'])
    lines += service_section("caf", "interpreter = true")
    lines += service_section(
        "interpretes", 'languages = ["lsf"]', "interpreting = true", "wrap_up_s = 60"
    )
    for index in range(kiosks):
        lines += kiosk_section(f"kiosk-{index}", ["caf"])
    return "\n".join(lines) + "\n"


class Party(RoomParty):
    """A room participant of the bench; a relayed ``call.data`` is not kept but timed
    on arrival."""

    def __init__(self, client: Client, *, media: bool) -> None:
        self.text_arrivals: dict[int, float] = {}
        """seq -> perf_counter() when the relayed ``call.data`` was read."""
        super().__init__(
            client, media=media, fps=FPS, timeout_s=STEP_TIMEOUT_S, on_event=self._timed
        )

    def _timed(self, event: ServerMessage) -> bool:
        if isinstance(event, CallData):
            self.text_arrivals[int(event.data["seq"])] = time.perf_counter()
            return True
        return False


async def first_video_at(party: Party, sender: str) -> float:
    peer = await party.connection_with(sender)
    async with asyncio.timeout(STEP_TIMEOUT_S):
        await peer.first_video.wait()
    assert peer.first_video_at is not None
    return peer.first_video_at


@dataclass
class Samples:
    two_party: list[float] = field(default_factory=list)
    at_kiosk: list[float] = field(default_factory=list)
    at_expert: list[float] = field(default_factory=list)
    at_both: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Site:
    url: str
    config: Config
    parties: list[Party] = field(default_factory=list)

    async def sign_in(
        self, role: str, sub: str, *, media: bool, available: bool = False, **claims: Any
    ) -> Party:
        token = mint_token(self.config, role, sub, **claims)
        party = Party(await Client.connect(self.url, token=token, reply_timeout_s=30), media=media)
        self.parties.append(party)
        if available:
            await party.client.request(ExpertStatusSet(id=NEW_ID, status="available"), Ack)
        return party

    async def close(self, parties: list[Party] | None = None) -> None:
        for party in list(self.parties) if parties is None else parties:
            if party not in self.parties:
                continue
            self.parties.remove(party)
            # A party that will not close must not stop the bench.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(party.close(), 10)


@dataclass
class Room:
    call: str
    kiosk: Party
    expert: Party
    interpreter: Party | None = None

    @property
    def parties(self) -> list[Party]:
        return [p for p in (self.kiosk, self.expert, self.interpreter) if p is not None]


async def answered_call(site: Site, index: int, *, media: bool) -> tuple[Room, float]:
    """kiosk-<index> calls, expert-<index> answers; ms from the accept to the kiosk's
    first video frame of the expert (0 without media)."""
    expert = await site.sign_in(
        "expert", f"expert-{index}", media=media, available=True, services=["caf"]
    )
    kiosk = await site.sign_in("kiosk", f"kiosk-{index}", media=media)
    queued = await kiosk.client.request(CallRequest(id=NEW_ID, service="caf"), CallQueued)
    await expert.seen(CallOffered, call=queued.call)
    accepted = time.perf_counter()
    await expert.client.request(OfferAccept(id=NEW_ID, call=queued.call), Ack)
    room = Room(queued.call, kiosk, expert)
    if not media:
        await kiosk.seen(CallConnected, call=queued.call)
        return room, 0.0
    seen = await first_video_at(kiosk, expert.key)
    await first_video_at(expert, kiosk.key)  # both ways before anyone else comes
    return room, (seen - accepted) * 1000


async def interpreter_joins(site: Site, room: Room, index: int) -> tuple[float, float]:
    """interp-<index> is asked for and accepts; ms from its accept to its first video
    frame at the kiosk and at the expert."""
    interpreter = await site.sign_in(
        "interpreter",
        f"interp-{index}",
        media=True,
        available=True,
        services=["interpretes"],
        languages=["lsf", "fr"],
    )
    room.interpreter = interpreter
    invite = CallInvite(id=NEW_ID, call=room.call, role="interpreter", language="lsf")
    await room.expert.client.request(invite, Ack)
    offered = await interpreter.seen(CallOffered, joins=room.call)
    accepted = time.perf_counter()
    await interpreter.client.request(OfferAccept(id=NEW_ID, call=offered.call), Ack)
    at_kiosk, at_expert = await asyncio.gather(
        first_video_at(room.kiosk, interpreter.key), first_video_at(room.expert, interpreter.key)
    )
    return (at_kiosk - accepted) * 1000, (at_expert - accepted) * 1000


async def hang_up(site: Site, room: Room) -> None:
    try:
        await room.kiosk.client.request(CallHangup(id=NEW_ID, call=room.call), Ack)
    finally:
        await site.close(room.parties)


async def one_round(site: Site, index: int, samples: Samples | None, keep: bool) -> Room | None:
    """One two-party call, then the interpreter; the room is returned open if ``keep``."""
    room: Room | None = None
    try:
        room, two_party = await answered_call(site, index, media=True)
        at_kiosk, at_expert = await interpreter_joins(site, room, index)
    except (TimeoutError, RuntimeError, RoomWaitFailed) as exc:
        if samples is not None:
            samples.errors.append(f"round {index}: {type(exc).__name__} {exc}".strip())
        if room is not None:
            await hang_up(site, room)
        else:
            await site.close()
        return None
    if samples is not None:
        samples.two_party.append(two_party)
        samples.at_kiosk.append(at_kiosk)
        samples.at_expert.append(at_expert)
        samples.at_both.append(max(at_kiosk, at_expert))
    if keep:
        return room
    await hang_up(site, room)
    return None


@dataclass
class TextRun:
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    expected: int = 0
    """Messages that should have arrived: sent x receivers."""


async def type_text(sender: Party, call: str, receivers: list[Party], chars: int) -> TextRun:
    """Type ``chars`` characters at RTT_CHARS_PER_S, each message the whole line so far."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent: dict[int, float] = {}
    for seq in range(chars):
        await asyncio.sleep(max(0.0, start + seq / RTT_CHARS_PER_S - loop.time()))
        line, column = divmod(seq, LINE_MAX)
        data = {"seq": seq, "text": TEXT[: column + 1], "final": False, "line": line}
        sent[seq] = time.perf_counter()
        await sender.client.send(CallData(call=call, channel="rtt", data=data))
    deadline = loop.time() + STRAGGLERS_S
    while loop.time() < deadline:
        if all(len(r.text_arrivals) >= chars for r in receivers):
            break
        await asyncio.sleep(0.05)
    run = TextRun(sent=chars, expected=chars * len(receivers))
    for receiver in receivers:
        for seq, arrived in receiver.text_arrivals.items():
            if seq in sent:
                run.latencies.append((arrived - sent[seq]) * 1000)
    return run


async def measure(rounds: int, chars: int) -> dict[str, Any]:
    samples = Samples()
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "rooms.toml"
        config_path.write_text(bench_config(rounds + 2), "utf-8")
        config = load_config(config_path)
        port = free_port()
        with loopback_host_candidates():
            async with subprocess_server(node_args(config_path, port), port) as server:
                site = Site(server.url("ws", "/ws"), config)
                try:
                    # Real-time text on an idle call first: no media in this process yet.
                    quiet, _ = await answered_call(site, rounds + 1, media=False)
                    idle = await type_text(quiet.kiosk, quiet.call, [quiet.expert], chars)
                    await hang_up(site, quiet)

                    await one_round(site, 0, None, keep=False)  # warm-up, not measured
                    loaded_room = None
                    for index in range(1, rounds + 1):
                        loaded_room = await one_round(site, index, samples, keep=index == rounds)
                    loaded = TextRun()
                    if loaded_room is not None and loaded_room.interpreter is not None:
                        receivers = [loaded_room.expert, loaded_room.interpreter]
                        loaded = await type_text(
                            loaded_room.kiosk, loaded_room.call, receivers, chars
                        )
                        await hang_up(site, loaded_room)
                    else:
                        samples.errors.append("no three-party call left for the loaded text run")
                finally:
                    await site.close()

    two_party_p50 = percentile(samples.two_party, 0.50)
    both_p50 = percentile(samples.at_both, 0.50)
    return {
        "rounds": rounds,
        "rounds_measured": len(samples.at_both),
        "fps": FPS,
        "two_party_first_frame_ms_p50": two_party_p50,
        "two_party_first_frame_ms_p95": percentile(samples.two_party, 0.95),
        "interpreter_first_frame_ms_p50": both_p50,
        "interpreter_first_frame_ms_p95": percentile(samples.at_both, 0.95),
        "interpreter_first_frame_kiosk_ms_p50": percentile(samples.at_kiosk, 0.50),
        "interpreter_first_frame_kiosk_ms_p95": percentile(samples.at_kiosk, 0.95),
        "interpreter_first_frame_expert_ms_p50": percentile(samples.at_expert, 0.50),
        "interpreter_first_frame_expert_ms_p95": percentile(samples.at_expert, 0.95),
        "interpreter_vs_two_party_ratio": (
            both_p50 / two_party_p50 if both_p50 is not None and two_party_p50 else None
        ),
        "interpreter_vs_two_party_ratio_target": RATIO_TARGET,
        "rtt_chars": chars,
        "rtt_chars_per_s": RTT_CHARS_PER_S,
        "rtt_received": len(idle.latencies),
        "rtt_expected": idle.expected,
        "rtt_latency_ms_p50": percentile(idle.latencies, 0.50),
        "rtt_latency_ms_p95": percentile(idle.latencies, 0.95),
        "rtt_latency_ms_max": max(idle.latencies, default=None),
        "rtt_loaded_received": len(loaded.latencies),
        "rtt_loaded_expected": loaded.expected,
        "rtt_loaded_latency_ms_p50": percentile(loaded.latencies, 0.50),
        "rtt_loaded_latency_ms_p95": percentile(loaded.latencies, 0.95),
        "rtt_loaded_latency_ms_max": max(loaded.latencies, default=None),
        "rtt_target_ms_p95": RTT_TARGET_MS,
        "errors": samples.errors,
    }


def verdict(value: float | None, limit: float) -> str:
    return "-" if value is None else ("met" if value <= limit else "MISSED")


def main() -> int:
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    rounds, chars = (3, 60) if args.quick else (10, 300)
    figures = run(measure(rounds, chars))
    for error in figures["errors"]:
        print(f"error: {error}")
    ratio = figures["interpreter_vs_two_party_ratio"]
    rtt_p95 = figures["rtt_latency_ms_p95"]
    report(
        f"Rooms on loopback: {figures['rounds_measured']}/{rounds} rounds, {FPS} fps; "
        f"real-time text {chars} characters at {RTT_CHARS_PER_S}/s",
        [
            (
                "two-party: accept -> first frame p50",
                ms(figures["two_party_first_frame_ms_p50"]),
                "",
            ),
            (
                "two-party: accept -> first frame p95",
                ms(figures["two_party_first_frame_ms_p95"]),
                "",
            ),
            (
                "interpreter: accept -> frame at both p50",
                ms(figures["interpreter_first_frame_ms_p50"]),
                f"< {RATIO_TARGET:g}x two-party",
            ),
            (
                "interpreter: accept -> frame at both p95",
                ms(figures["interpreter_first_frame_ms_p95"]),
                "",
            ),
            ("  at the kiosk p50", ms(figures["interpreter_first_frame_kiosk_ms_p50"]), ""),
            ("  at the expert p50", ms(figures["interpreter_first_frame_expert_ms_p50"]), ""),
            (
                "interpreter / two-party (p50)",
                "-" if ratio is None else f"{ratio:.2f}x",
                f"< {RATIO_TARGET:g}x: {verdict(ratio, RATIO_TARGET)}",
            ),
            (
                "rtt idle: latency p50",
                ms(figures["rtt_latency_ms_p50"]),
                f"{figures['rtt_received']}/{figures['rtt_expected']} received",
            ),
            (
                "rtt idle: latency p95",
                ms(rtt_p95),
                f"< {RTT_TARGET_MS:g} ms: {verdict(rtt_p95, RTT_TARGET_MS)}",
            ),
            (
                "rtt during 3-party media: p50",
                ms(figures["rtt_loaded_latency_ms_p50"]),
                f"{figures['rtt_loaded_received']}/{figures['rtt_loaded_expected']} received",
            ),
            ("rtt during 3-party media: p95", ms(figures["rtt_loaded_latency_ms_p95"]), ""),
        ],
        {
            k: round(v, 2 if "ratio" in k else 1) if isinstance(v, float) else v
            for k, v in figures.items()
        },
        args.json,
    )
    complete = figures["rounds_measured"] == rounds
    received = figures["rtt_received"] == figures["rtt_expected"]
    return 0 if not figures["errors"] and complete and received else 1


if __name__ == "__main__":
    raise SystemExit(main())
