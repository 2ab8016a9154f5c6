"""Calls per second that one node and two nodes sustain on the same Redis.

A call is the whole signalling of an answered visit: the kiosk sends call.request, an
expert gets call.offered and sends offer.accept, both get call.connected, the expert
sends call.hangup, gets wrapup.started and sends wrapup.done. No media flows.

A fixed pool of kiosks and experts (40 and 40 by default) loops in a closed loop: each
kiosk calls again as soon as its call ended, each expert takes the next offer as soon
as its wrap-up is done. Half the kiosks call service ``east``, half ``west``; with two
nodes, the kiosks of ``east`` sit on node 0 and its experts on node 1, and the other
way round for ``west``, so every call involves both nodes. With one node everything
sits on it. Calls finished during a fixed window (10 s; quick 3 s) after a warm-up
count; a fresh Redis journal serves each case.

Every process shares the same cores (two on the reference machine): the nodes, Redis,
the load generator (a process of its own) and whatever else runs there. So the bench
also reports the CPU time each of them used during the window, read from /proc, and
the rest of the machine's CPU time (other processes, interrupt handling): a second node
can only add throughput if a core is left for it. CPU figures are shares of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from redis.asyncio import Redis

import bench._common as common
from signaling.messages import (
    Ack,
    CallConnected,
    CallEnded,
    CallHangup,
    CallOffered,
    CallQueued,
    CallRequest,
    ExpertStatusSet,
    Message,
    OfferAccept,
    WrapUpDone,
    WrapUpStarted,
)
from visio_client import NEW_ID, Client, ServerError
from visio_server.auth import mint_token
from visio_server.config import load_config

SERVICES = ("east", "west")
REASON = "Bench"
KIOSK_EVENTS = ("call.connected", "call.ended")
EXPERT_EVENTS = ("call.offered", "call.connected", "wrapup.started")
SCRIPT = str(Path(__file__).resolve())


def bench_config(kiosks: int) -> str:
    lines = common.config_head(['backend = "memory"'])
    for service in SERVICES:
        lines += common.service_section(service, f'visit_reasons = ["{REASON}"]')
    for index in range(kiosks):
        lines += common.kiosk_section(f"kiosk-{index:03d}", [SERVICES[index % 2]])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces and parentheses: count fields after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent off idle, over all cores."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def journal_counters(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    wanted = {"visio_journal_conflicts_total": "conflicts", "visio_journal_entry": "entry"}
    counters = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            counters[wanted[name]] = float(value)
    return counters


@dataclass
class Tally:
    calls: int = 0
    """Calls whose wrap-up is done."""
    errors: list[str] = field(default_factory=list)
    setup_ms: list[float] = field(default_factory=list)
    """call.request -> call.connected at the kiosk, for calls requested in the window."""
    measuring: bool = False
    running: bool = True
    """Cleared at the end: a loop stops at its next step even if its cancellation is lost."""


async def kiosk_loop(kiosk: Client, service: str, tally: Tally) -> None:
    while tally.running:
        started = time.perf_counter()
        measured = tally.measuring
        try:
            queued = await kiosk.request(CallRequest(id=NEW_ID, service=service), CallQueued)
        except ServerError as refused:
            tally.errors.append(refused.code)
            await asyncio.sleep(0.01)
            continue
        await kiosk.wait_for(CallConnected, timeout_s=30, call=queued.call)
        if measured and tally.measuring:
            tally.setup_ms.append((time.perf_counter() - started) * 1000)
        await kiosk.wait_for(CallEnded, timeout_s=30, call=queued.call)


async def expert_loop(expert: Client, tally: Tally) -> None:
    await expert.request(ExpertStatusSet(id=NEW_ID, status="available"))
    while tally.running:
        call = (await expert.wait_for(CallOffered, timeout_s=30)).call
        steps: list[tuple[Message, type[Message] | None]] = [
            (OfferAccept(id=NEW_ID, call=call), CallConnected),
            (CallHangup(id=NEW_ID, call=call), WrapUpStarted),
            (WrapUpDone(id=NEW_ID, call=call, reason=REASON), None),
        ]
        for message, then in steps:
            try:
                await expert.request(message, Ack)
            except ServerError as refused:
                tally.errors.append(refused.code)
                break
            if then is not None:
                await expert.wait_for(then, timeout_s=30, call=call)
        else:
            tally.calls += 1


async def sample(
    session: aiohttp.ClientSession, plan: dict[str, Any], tally: Tally
) -> dict[str, Any]:
    """Everything the window is the difference of, read as close together as possible."""
    counters = [await journal_counters(session, node["http"]) for node in plan["nodes"]]
    return {
        "at": time.perf_counter(),
        "calls": tally.calls,
        "nodes": [cpu_seconds(node["pid"]) for node in plan["nodes"]],
        "redis": cpu_seconds(plan["redis_pid"]),
        "load": time.process_time(),
        "machine": machine_busy_seconds(),
        "conflicts": [c.get("conflicts", 0.0) for c in counters],
        "entry": max(c.get("entry", 0.0) for c in counters),
    }


async def generate(plan: dict[str, Any]) -> dict[str, Any]:
    """The load generator: connects the pool, runs the closed loop, returns the window."""
    config = load_config(plan["config"])
    nodes = plan["nodes"]
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients: list[Client] = []
        loops = []
        for index in range(plan["experts"]):
            service = SERVICES[index % 2]
            node = nodes[(index + 1) % 2 % len(nodes)]
            token = mint_token(config, "expert", f"expert-{index:02d}", services=[service])
            clients.append(await common.open_client(session, node["ws"], token, EXPERT_EVENTS))
            loops.append(expert_loop(clients[-1], tally))
        for index in range(plan["kiosks"]):
            node = nodes[index % 2 % len(nodes)]
            token = mint_token(config, "kiosk", f"kiosk-{index:03d}")
            clients.append(await common.open_client(session, node["ws"], token, KIOSK_EVENTS))
            loops.append(kiosk_loop(clients[-1], SERVICES[index % 2], tally))
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            await asyncio.sleep(plan["warmup_s"])
            start = await sample(session, plan, tally)
            tally.measuring = True
            await asyncio.sleep(plan["duration_s"])
            tally.measuring = False
            end = await sample(session, plan, tally)
        finally:
            tally.running = False
            for task in tasks:
                task.cancel()
            failed = [
                r
                for r in await asyncio.gather(*tasks, return_exceptions=True)
                if not isinstance(r, asyncio.CancelledError)
            ]
            for client in clients:
                await client.close()
    if failed:
        raise RuntimeError(f"{len(failed)} client loops failed, first: {failed[0]!r}")
    seconds = end["at"] - start["at"]
    calls = end["calls"] - start["calls"]
    nodes_cpu = [b - a for a, b in zip(start["nodes"], end["nodes"], strict=True)]
    ours = sum(nodes_cpu) + end["redis"] - start["redis"] + end["load"] - start["load"]
    return {
        "seconds": seconds,
        "calls": calls,
        "calls_per_s": calls / seconds,
        "setup_ms_p50": common.percentile(tally.setup_ms, 0.5),
        "setup_ms_p99": common.percentile(tally.setup_ms, 0.99),
        "errors": len(tally.errors),
        "node_cpu_s": nodes_cpu,
        "redis_cpu_s": end["redis"] - start["redis"],
        "load_cpu_s": end["load"] - start["load"],
        "other_cpu_s": max(end["machine"] - start["machine"] - ours, 0.0),
        "conflicts": [b - a for a, b in zip(start["conflicts"], end["conflicts"], strict=True)],
        "entries": end["entry"] - start["entry"],
    }


# ---------------------------------------------------------------------- orchestrating


async def wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


def log_tails(folder: Path) -> str:
    """The end of each node's log, to tell why a run failed."""
    logs = sorted(folder.glob("*.log"))
    return "\n".join(f"{log.name}: ...{log.read_text()[-2000:]}" for log in logs)


async def scenario(
    count: int, redis_url: str, redis_pid: int, folder: Path, plan: dict[str, Any]
) -> dict[str, Any]:
    """Start ``count`` nodes on a flushed Redis, run the load generator against them."""
    client = Redis.from_url(redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        nodes = []
        for index in range(count):
            port = common.free_port()
            args = common.node_args(
                plan["config"], port, redis_url=redis_url, node_id=f"node-{index}"
            )
            log = folder / f"{count}-node-{index}.log"
            node = await stack.enter_async_context(common.subprocess_server(args, port, output=log))
            await wait_ready(session, node.url())
            nodes.append({"ws": node.url("ws", "/ws"), "http": node.url(), "pid": node.pid})
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            SCRIPT,
            "--worker",
            json.dumps({**plan, "nodes": nodes, "redis_pid": redis_pid}),
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=common.die_with_parent,
        )
        try:
            output, _ = await worker.communicate()
        finally:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        if worker.returncode != 0:
            raise RuntimeError(
                f"the load generator failed ({worker.returncode})\n{log_tails(folder)}"
            )
        result: dict[str, Any] = json.loads(output.decode().splitlines()[-1])
        return result


async def measure(plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "scale.toml"
        config.write_text(bench_config(plan["kiosks"]))
        plan = {**plan, "config": str(config)}
        async with common.redis_server() as redis:
            url = redis.url("redis", "/0")
            return {n: await scenario(n, url, redis.pid, Path(folder), plan) for n in (1, 2)}


def share(seconds: float, window: float) -> str:
    """CPU time as a share of one core."""
    return f"{100 * seconds / window:.0f}%"


def summarise(runs: dict[int, dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "kiosks": plan["kiosks"],
        "experts": plan["experts"],
        "warmup_s": plan["warmup_s"],
        "duration_s": plan["duration_s"],
    }
    for count, result in runs.items():
        suffix = "1_node" if count == 1 else f"{count}_nodes"
        calls = max(result["calls"], 1)
        figures |= {
            f"calls_per_s_{suffix}": round(result["calls_per_s"], 1),
            f"calls_{suffix}": result["calls"],
            f"setup_ms_p50_{suffix}": round(result["setup_ms_p50"] or 0, 2),
            f"setup_ms_p99_{suffix}": round(result["setup_ms_p99"] or 0, 2),
            f"node_cpu_s_{suffix}": [round(s, 2) for s in result["node_cpu_s"]],
            f"node_cpu_ms_per_call_{suffix}": round(1000 * sum(result["node_cpu_s"]) / calls, 2),
            f"redis_cpu_s_{suffix}": round(result["redis_cpu_s"], 2),
            f"load_cpu_s_{suffix}": round(result["load_cpu_s"], 2),
            f"other_cpu_s_{suffix}": round(result["other_cpu_s"], 2),
            f"journal_entries_per_call_{suffix}": round(result["entries"] / calls, 2),
            f"journal_conflicts_{suffix}": [int(c) for c in result["conflicts"]],
            f"errors_{suffix}": result["errors"],
        }
    figures["ratio"] = round(figures["calls_per_s_2_nodes"] / figures["calls_per_s_1_node"], 2)
    return figures


def main() -> int:
    parser = common.bench_parser(__doc__ or "")
    parser.add_argument("--kiosks", type=int, default=120, help="kiosks in the pool (default 120)")
    parser.add_argument(
        "--experts", type=int, default=120, help="experts in the pool (default 120)"
    )
    parser.add_argument("--duration", type=float, help="measured seconds (default 10; quick 3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # the load generator's own process
        print(json.dumps(common.run(generate(json.loads(args.worker)))))
        return 0
    duration = args.duration or (3.0 if args.quick else 10.0)
    plan = {
        "kiosks": args.kiosks,
        "experts": args.experts,
        "warmup_s": 1.0 if args.quick else 3.0,
        "duration_s": duration,
    }
    runs = common.run(measure(plan))
    figures = summarise(runs, plan)
    windows = {count: result["seconds"] for count, result in runs.items()}

    def row(name: str, render: Any) -> tuple[str, ...]:
        return (name, *(render(result, windows[count]) for count, result in runs.items()), "")

    rows = [
        row("calls per second", lambda r, w: f"{r['calls_per_s']:.1f}"),
        row("request -> connected p50, wait included", lambda r, w: common.ms(r["setup_ms_p50"])),
        row("request -> connected p99", lambda r, w: common.ms(r["setup_ms_p99"])),
        row(
            "node CPU, share of a core", lambda r, w: "+".join(share(s, w) for s in r["node_cpu_s"])
        ),
        row(
            "node CPU per call",
            lambda r, w: common.ms(1000 * sum(r["node_cpu_s"]) / max(r["calls"], 1)),
        ),
        row("Redis CPU, share of a core", lambda r, w: share(r["redis_cpu_s"], w)),
        row("load generator CPU", lambda r, w: share(r["load_cpu_s"], w)),
        row("rest of the machine CPU", lambda r, w: share(r["other_cpu_s"], w)),
        row("journal entries per call", lambda r, w: f"{r['entries'] / max(r['calls'], 1):.2f}"),
        row("journal conflicts", lambda r, w: "+".join(f"{c:.0f}" for c in r["conflicts"])),
        row("errors", lambda r, w: str(r["errors"])),
        ("2 nodes / 1 node", "", f"{figures['ratio']}x", ""),
    ]
    common.report(
        f"Scale-out on one Redis: {plan['kiosks']} kiosks, {plan['experts']} experts, "
        f"closed loop, {duration:g} s after {plan['warmup_s']:g} s of warm-up "
        f"({os.cpu_count()} cores)",
        rows,
        figures,
        args.json,
        columns=["1 node", "2 nodes"],
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
