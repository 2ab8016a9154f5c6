"""One run: sign in the experts and kiosks a configuration names, place the calls, and
bring back what every party saw.

Rules this module keeps:

1. Nothing outlives a run: what a run learns lives in its ``SimRun``; the one
   process-wide change (loopback ICE candidates) is undone when the run ends.
2. Server messages are decoded strictly against the protocol; a frame the protocol does
   not allow is reported as an error of the run, never silently skipped.
3. Every wait is bounded: replies by ``REPLY_TIMEOUT_S``, the whole run by
   ``SimOptions.timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from media.peer import loopback_host_candidates
from signaling.messages import Welcome
from visio_client import Client, ClientError
from visio_server.auth import mint_token
from visio_server.config import Config

from .parties import SimExpert, SimKiosk
from .record import CallQuota, SimRun

__all__ = ["REPLY_TIMEOUT_S", "SimOptions", "is_loopback_url", "run_sim"]

REPLY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SimOptions:
    """What one run does; the command line fills it, a bench may build its own."""

    servers: tuple[str, ...]
    """Server base URLs (``http://host:port``); clients are spread over them in turn."""
    kiosks: int = 1
    experts: int = 1
    calls: int = 1
    media_s: float = 2.0
    """Seconds of audio and video each call carries once video reaches the expert."""
    timeout_s: float = 120.0
    fps: int = 30
    loopback_ice: bool | None = None
    """None: offer only 127.0.0.1 when every server is on a loopback address."""
    seed: int | None = None


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class _Identity:
    role: str
    id: str
    token: str


@dataclass(frozen=True)
class _Cast:
    experts: list[_Identity]
    kiosks: list[_Identity]
    served: frozenset[str]
    """Services at least one of the experts serves: the only ones worth calling."""


def _cast(config: Config, options: SimOptions) -> _Cast:
    """The first experts of the configuration, and kiosks that share a service with them."""
    if options.experts > len(config.experts):
        raise ValueError(
            f"{options.experts} experts asked, the configuration has {len(config.experts)}"
        )
    experts = config.experts[: options.experts]
    served = frozenset(s for e in experts for s in e.services)
    kiosks = [k for k in config.kiosks if served.intersection(k.services)][: options.kiosks]
    if len(kiosks) < options.kiosks:
        raise ValueError(
            f"{options.kiosks} kiosks asked, the configuration has {len(kiosks)} "
            "that share a service with the chosen experts"
        )
    expert_tokens = [
        mint_token(
            config, "expert", e.id, services=list(e.services), name=e.name, partner=e.partner
        )
        for e in experts
    ]
    return _Cast(
        experts=[_Identity("expert", e.id, t) for e, t in zip(experts, expert_tokens, strict=True)],
        kiosks=[_Identity("kiosk", k.id, mint_token(config, "kiosk", k.id)) for k in kiosks],
        served=served,
    )


async def run_sim(options: SimOptions, config: Config) -> SimRun:
    """Place ``options.calls`` calls and return what the run saw; never raises for a call."""
    run = SimRun(calls_requested=options.calls)
    loopback = options.loopback_ice
    if loopback is None:
        loopback = all(is_loopback_url(url) for url in options.servers)
    with loopback_host_candidates() if loopback else contextlib.nullcontext():
        try:
            async with asyncio.timeout(options.timeout_s):
                await _drive(options, config, run)
        except TimeoutError:
            run.error(f"run timed out after {options.timeout_s:g} s")
        except (ValueError, ClientError) as exc:
            run.error(f"{type(exc).__name__}: {exc}")
    run.finished_at = time.perf_counter()
    return run


async def _drive(options: SimOptions, config: Config, run: SimRun) -> None:
    cast = _cast(config, options)
    rng = random.Random(options.seed)
    quota = CallQuota(options.calls)
    # One sequence for everyone, experts first: with two servers and one party of each,
    # the kiosk and the expert land on different servers.
    server_of = itertools.cycle(options.servers)
    async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as clients:

        async def connect(identity: _Identity) -> tuple[Client, Welcome]:
            client = await Client.connect(
                next(server_of),
                session=http,
                label=f"{identity.role} {identity.id}",
                reply_timeout_s=REPLY_TIMEOUT_S,
                on_invalid=lambda problem: run.error(str(problem)),
            )
            clients.push_async_callback(client.close)
            return client, await client.hello(identity.token)

        experts: list[SimExpert] = []
        for identity in cast.experts:
            client, welcome = await connect(identity)
            expert = SimExpert(
                client, identity.id, run=run, media_s=options.media_s, fps=options.fps
            )
            expert.use_catalogue(welcome)
            experts.append(expert)
        kiosks: list[SimKiosk] = []
        for identity in cast.kiosks:
            client, welcome = await connect(identity)
            kiosk = SimKiosk(
                client,
                identity.id,
                run=run,
                quota=quota,
                served_services=cast.served,
                fps=options.fps,
                rng=rng,
            )
            kiosk.use_catalogue(welcome)
            kiosks.append(kiosk)

        await asyncio.gather(*(e.go_available() for e in experts))
        async with asyncio.TaskGroup() as experts_at_work:
            working = [experts_at_work.create_task(_guarded(run, e.client, e.run)) for e in experts]
            async with asyncio.TaskGroup() as kiosks_at_work:
                for kiosk in kiosks:
                    kiosks_at_work.create_task(_guarded(run, kiosk.client, kiosk.run))
            # The last calls may still be in wrap-up when their kiosks are done.
            await asyncio.gather(*(e.idle.wait() for e in experts))
            for task in working:
                task.cancel()
        await asyncio.gather(*(e.log_out() for e in experts))


async def _guarded(run: SimRun, client: Client, work: Callable[[], Awaitable[None]]) -> None:
    """Run one party; what goes wrong with it is an error of the run, not the end of it.

    Anything a party raises (a lost socket, a refused request, an aiortc error on a bad
    SDP) is what the sim is there to report, so it is caught broadly, here and only here.
    """
    try:
        await work()
    except Exception as exc:
        run.error(f"{client.label}: {type(exc).__name__}: {exc}")
