"""Call set-up time through the server, against the floor of two peers with no server.

Through the server, each call is a fresh kiosk and expert (aiortc, from visio_sim)
on an in-process server on loopback, so every call meets an idle expert and measures
queue, offer, accept and SDP relay only.  Measured from call.request:

- connected: until call.connected reaches the kiosk;
- first frame: until the kiosk decodes the expert's first video frame.

The floor is the same pair of aiortc peers with their SDP handed over in-process: start
until the answering side decodes its first video frame.  First frame minus floor is what
the server's signaling costs a citizen.  One unmeasured warm-up of each comes first.

Run: ``python bench/call_setup.py [--quick] [--json]``
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from _common import bench_parser, in_process_server, ms, percentile, report

from media.peer import PeerSession, loopback_host_candidates
from visio_server.config import Config, load_config
from visio_sim import SimOptions, run_sim

CONNECTED_TARGET_MS = 100.0
FIRST_FRAME_TARGET_MS = 150.0
MEDIA_S = 0.3
"""Media kept flowing after the first frame: enough to count frames both ways."""
CALL_TIMEOUT_S = 30.0
FIRST_FRAME_TIMEOUT_S = 10.0


def bench_config() -> Config:
    """The example configuration with its queue journal kept in memory, not in ./var."""
    config = load_config()
    return msgspec.structs.replace(
        config, storage=msgspec.structs.replace(config.storage, backend="memory")
    )


@dataclass
class Samples:
    """Milliseconds of each measured call, through the server and direct."""

    connected: list[float] = field(default_factory=list)
    media_connected: list[float] = field(default_factory=list)
    first_frame: list[float] = field(default_factory=list)
    direct_connected: list[float] = field(default_factory=list)
    direct_first_frame: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def call_through_server(url: str, config: Config, samples: Samples) -> None:
    """One call by a fresh kiosk and expert, which meets an idle expert."""
    options = SimOptions(servers=(url,), calls=1, media_s=MEDIA_S, timeout_s=CALL_TIMEOUT_S)
    run = await run_sim(options, config)
    samples.errors.extend(run.errors)
    for record in run.calls.values():
        for values, value in (
            (samples.connected, record.connected_ms),
            (samples.media_connected, record.media_connected_ms),
            (samples.first_frame, record.setup_ms),
        ):
            if value is not None:
                values.append(value)


async def direct_call(samples: Samples) -> None:
    """Two peers connected with no server between; timed on the answering side."""
    started = time.perf_counter()
    offerer = PeerSession()
    answerer = PeerSession()
    try:
        answer = await answerer.answer(await offerer.create_offer())
        await offerer.accept_answer(answer)
        async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
            await answerer.first_video.wait()
    except TimeoutError:
        samples.errors.append("direct call: no video frame within the timeout")
        return
    finally:
        await asyncio.gather(offerer.close(), answerer.close())
    assert answerer.first_video_at is not None
    samples.direct_first_frame.append((answerer.first_video_at - started) * 1000)
    if answerer.connected_at is not None:
        samples.direct_connected.append((answerer.connected_at - started) * 1000)


async def measure(calls: int) -> dict[str, Any]:
    config = bench_config()
    samples = Samples()
    with loopback_host_candidates():
        async with in_process_server(config) as url:
            await direct_call(Samples())
            await call_through_server(url, config, Samples())
            # Interleaved, so both kinds of call meet the same machine conditions.
            for _ in range(calls):
                await direct_call(samples)
                await call_through_server(url, config, samples)
    return {
        "calls": calls,
        "calls_measured": len(samples.first_frame),
        "connected_ms_p50": percentile(samples.connected, 0.50),
        "connected_ms_p95": percentile(samples.connected, 0.95),
        "media_connected_ms_p50": percentile(samples.media_connected, 0.50),
        "first_frame_ms_p50": percentile(samples.first_frame, 0.50),
        "first_frame_ms_p95": percentile(samples.first_frame, 0.95),
        "direct_runs": len(samples.direct_first_frame),
        "direct_connected_ms_p50": percentile(samples.direct_connected, 0.50),
        "direct_first_frame_ms_p50": percentile(samples.direct_first_frame, 0.50),
        "direct_first_frame_ms_p95": percentile(samples.direct_first_frame, 0.95),
        "connected_target_ms": CONNECTED_TARGET_MS,
        "first_frame_target_ms": FIRST_FRAME_TARGET_MS,
        "errors": samples.errors,
    }


def main() -> int:
    args = bench_parser(__doc__.splitlines()[0]).parse_args()
    calls = 5 if args.quick else 20
    figures = asyncio.run(measure(calls))
    for error in figures["errors"]:
        print(f"error: {error}")
    report(
        f"Call set-up on loopback: {figures['calls_measured']}/{calls} calls through the server, "
        f"{figures['direct_runs']} direct",
        [
            (
                "server: connected p50",
                ms(figures["connected_ms_p50"]),
                f"< {CONNECTED_TARGET_MS:g} ms",
            ),
            ("server: connected p95", ms(figures["connected_ms_p95"]), ""),
            ("server: ICE+DTLS up p50", ms(figures["media_connected_ms_p50"]), ""),
            (
                "server: first frame p50",
                ms(figures["first_frame_ms_p50"]),
                f"< {FIRST_FRAME_TARGET_MS:g} ms",
            ),
            ("server: first frame p95", ms(figures["first_frame_ms_p95"]), ""),
            ("direct: ICE+DTLS up p50", ms(figures["direct_connected_ms_p50"]), "floor"),
            ("direct: first frame p50", ms(figures["direct_first_frame_ms_p50"]), "floor"),
            ("direct: first frame p95", ms(figures["direct_first_frame_ms_p95"]), "floor"),
        ],
        {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()},
        args.json,
    )
    return 0 if not figures["errors"] and figures["calls_measured"] == calls else 1


if __name__ == "__main__":
    raise SystemExit(main())
