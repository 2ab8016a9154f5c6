"""Calls through several nodes sharing one Redis: real media across nodes, and a crowd
of kiosks answered exactly once, in queue order, whichever node each party is on."""

from __future__ import annotations

import asyncio
import warnings
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.cluster.helpers import (
    REASON,
    Parties,
    StartNodes,
    calls_of,
    kiosk_id,
    logs,
    read_events,
    read_journal,
)
from tests.cluster_support import RedisServer
from tests.support import JsonClient, assert_sim_calls_carried_media, run_sim_process


@pytest.fixture
async def parties() -> AsyncIterator[Parties]:
    opened = Parties()
    yield opened
    await opened.close()


# ---------------------------------------------------------------------- media


@pytest.mark.media
@pytest.mark.timeout(120)
async def test_sim_media_flows_both_ways_between_kiosk_and_expert_on_different_nodes(
    start_nodes: StartNodes, redis_server: RedisServer
) -> None:
    node_a, node_b = await start_nodes(2, kiosks=1, experts=1)
    # The sim hands out servers in turn, experts first: the one expert lands on node A
    # and the one kiosk on node B, so every SDP goes through Redis pub/sub.
    returncode, summary, stderr = await run_sim_process(
        "--server",
        node_a.url,
        "--server",
        node_b.url,
        "--config",
        str(node_a.config_path),
        "--kiosks",
        "1",
        "--experts",
        "1",
        "--calls",
        "3",
        "--media",
        "2",
    )
    assert summary["errors"] == [], stderr
    assert_sim_calls_carried_media(summary, 3)
    assert returncode == 0

    journal = await read_journal(redis_server.url)
    expert_links = {r["link"].split("/")[0] for r in journal if r["kind"] == "ExpertSignIn"}
    kiosk_links = {r["link"].split("/")[0] for r in journal if r["kind"] == "KioskBack"}
    assert expert_links == {node_a.name}, journal
    assert kiosk_links == {node_b.name}, journal
    rows = await read_events(redis_server.url)
    assert len(calls_of(rows, "CallConnected")) == 3


# ---------------------------------------------------------------------- a crowd

KIOSKS = 200
EXPERTS = 20
PRIORITY_KIOSKS = 40


class OfferBook:
    """What every expert was offered, checked as the offers arrive."""

    def __init__(self) -> None:
        self.offers: dict[str, list[str]] = {}
        """Expert id: the calls it was offered, in the order it got them."""
        self.ringing: dict[str, str] = {}
        """Call id: the expert it rings now."""
        self.answered = 0
        self.refused = 0
        """Requests refused with service_unavailable (and sent again) while Redis was up."""
        self.faults: list[str] = []
        self.settled = asyncio.Event()
        """Set when every call is wrapped up, or at the first fault."""

    def fault(self, text: str) -> None:
        self.faults.append(text)
        self.settled.set()

    def wrapped_up(self) -> None:
        self.answered += 1
        if self.answered == KIOSKS:
            self.settled.set()


async def ask(client: JsonClient, message: dict[str, Any], book: OfferBook) -> dict[str, Any]:
    """Send a request; a service_unavailable refusal changed nothing, so send it again."""
    while True:
        reply = await client.request(message, timeout=30)
        if reply.get("code") != "service_unavailable":
            return reply
        book.refused += 1
        await asyncio.sleep(0.05)


async def expert_at_work(name: str, expert: JsonClient, book: OfferBook) -> None:
    """Accept each offer, hang up at once, wrap up, take the next; never two at a time."""
    book.offers[name] = []
    holding: str | None = None
    while True:
        event = await expert.next_event()
        kind = event["type"]
        if kind == "call.offered":
            call = event["call"]
            if holding is not None:
                book.fault(f"{name} offered {call} while still on {holding}")
            if call in book.ringing:
                book.fault(f"{call} rings {book.ringing[call]} and {name} at once")
            book.ringing[call] = name
            book.offers[name].append(call)
            holding = call
            reply = await ask(expert, {"type": "offer.accept", "call": call}, book)
            if reply["type"] != "ack":
                book.fault(f"{name} could not accept {call}: {reply}")
        elif kind == "call.connected":
            call = event["call"]
            book.ringing.pop(call, None)
            reply = await ask(expert, {"type": "call.hangup", "call": call}, book)
            if reply["type"] != "ack":
                book.fault(f"{name} could not hang up {call}: {reply}")
        elif kind == "wrapup.started":
            call = event["call"]
            reply = await ask(expert, {"type": "wrapup.done", "call": call, "reason": REASON}, book)
            if reply["type"] != "ack":
                book.fault(f"{name} could not wrap up {call}: {reply}")
            book.wrapped_up()
            holding = None
        elif kind in ("offer.withdrawn", "error"):
            book.fault(f"{name} got {event}")


async def kiosk_calls(kiosk: JsonClient, book: OfferBook) -> dict[str, Any]:
    queued = await ask(kiosk, {"type": "call.request", "service": "caf", "beneficiary": "1"}, book)
    assert queued["type"] == "call.queued", queued
    await kiosk.expect("call.connected", timeout=45, call=queued["call"])
    ended = await kiosk.expect("call.ended", timeout=45, call=queued["call"])
    assert ended["outcome"] == "answered", ended
    return queued


@pytest.mark.timeout(120)
async def test_two_hundred_kiosks_through_three_nodes_are_each_answered_once_in_queue_order(
    start_nodes: StartNodes, redis_server: RedisServer, parties: Parties
) -> None:
    nodes = await start_nodes(3, kiosks=KIOSKS, experts=EXPERTS, priority_kiosks=PRIORITY_KIOSKS)
    experts = await parties.experts(nodes, EXPERTS, available=True)
    # The priority kiosks (the first numbers) call last, so that they find ordinary
    # calls waiting and must overtake them.
    numbers = range(KIOSKS, 0, -1)
    kiosks = await asyncio.gather(
        *(parties.kiosk(nodes[n % len(nodes)], kiosk_id(n)) for n in numbers)
    )
    book = OfferBook()
    workers = [
        asyncio.create_task(expert_at_work(f"expert-{i + 1:02d}", e, book))
        for i, e in enumerate(experts)
    ]
    try:
        async with asyncio.timeout(90):
            queued = await asyncio.gather(*(kiosk_calls(k, book) for k in kiosks))
            await book.settled.wait()
    except TimeoutError:
        raise AssertionError(
            f"{book.answered} of {KIOSKS} calls answered; faults: {book.faults}\n{logs(nodes)}"
        ) from None
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    assert book.faults == []
    if book.refused:
        # Redis never failed here: a node gives up a write after a fixed number of races
        # lost to the other nodes (visio_server/calls/ledger.py); the clients sent them again.
        warnings.warn(
            f"{book.refused} requests refused with service_unavailable under contention",
            stacklevel=1,
        )
    offered = [call for calls in book.offers.values() for call in calls]
    assert sorted(offered) == sorted(q["call"] for q in queued)
    assert len(set(offered)) == KIOSKS

    rows = await read_events(redis_server.url)
    for kind in ("CallQueued", "CallOffered", "CallConnected", "CallEnded"):
        calls = calls_of(rows, kind)
        duplicates = [c for c, n in Counter(calls).items() if n > 1]
        assert len(calls) == KIOSKS and not duplicates, (kind, len(calls), duplicates)
    assert set(calls_of(rows, "CallConnected")) == {q["call"] for q in queued}
    assert [r["result"] for r in rows if r["kind"] == "OfferEnded"] == ["accepted"] * KIOSKS
    assert sum(r["priority"] == 1 for r in rows if r["kind"] == "CallQueued") == PRIORITY_KIOSKS
    overtaken = assert_offers_follow_priority_then_arrival(rows)
    assert overtaken > 0, "no priority call found an ordinary call waiting: nothing was tested"


def assert_offers_follow_priority_then_arrival(rows: list[dict[str, Any]]) -> int:
    """Replay the log: each call offered must be the best of those waiting at that moment,
    higher priority first, then first queued. (Connections may finish in another order:
    twenty experts accept at their own pace, so the queue's decision is the offer.)
    Returns how many times a priority call went before an ordinary call queued earlier."""
    waiting: dict[str, tuple[int, int]] = {}
    arrivals = 0
    offered_by_class: dict[int, list[str]] = {0: [], 1: []}
    queued_by_class: dict[int, list[str]] = {0: [], 1: []}
    priority_of: dict[str, int] = {}
    overtaken = 0
    for row in rows:
        if row["kind"] == "CallQueued":
            arrivals += 1
            waiting[row["call"]] = (-row["priority"], arrivals)
            priority_of[row["call"]] = row["priority"]
            queued_by_class[row["priority"]].append(row["call"])
        elif row["kind"] == "CallOffered":
            best = min(waiting, key=waiting.__getitem__)
            assert row["call"] == best, (
                f"{row['call']} {waiting.get(row['call'])} offered before {best} {waiting[best]}"
            )
            del waiting[best]
            if priority_of[best] == 1:
                overtaken += sum(key[0] == 0 for key in waiting.values())
            offered_by_class[priority_of[best]].append(best)
    assert waiting == {}
    assert offered_by_class == queued_by_class
    return overtaken
