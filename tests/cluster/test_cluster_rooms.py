"""A call as a room across two nodes sharing one Redis: kiosk on node A, expert on
node B, the interpreter on either, each pair with real aiortc media. Every SDP between
parties on different nodes goes through Redis pub/sub.

The nodes run the test site's configuration (``tests.support.write_test_config``: the
CAF service allows an interpreter, and an interpreting service has ``interp-1``), not
the crowd configuration of ``cluster_config``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from signaling.messages import Ack, CallEnded, CallHangup
from tests.cluster.helpers import logs
from tests.cluster_support import Node, RedisServer
from tests.media.test_room_media import (
    EXPERT,
    Room,
    all_pairs,
    interpreter_joins,
    media_flows,
    open_room,
    two_party_call,
)
from tests.support import write_test_config
from visio_client import NEW_ID


@pytest.fixture
async def nodes(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[tuple[Node, Node]]:
    path = write_test_config(tmp_path)
    started = [
        Node(name, path, redis_server.url, tmp_path / f"{name}.log")
        for name in ("node-a", "node-b")
    ]
    try:
        await asyncio.gather(*(node.start() for node in started))
        yield started[0], started[1]
    finally:
        await asyncio.gather(*(node.stop() for node in started))


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    async with open_room() as opened:
        yield opened


@pytest.mark.media
@pytest.mark.timeout(120)
@pytest.mark.parametrize("interpreter_node", ["node-a", "node-b"])
async def test_three_party_call_across_two_nodes_carries_media_every_way(
    nodes: tuple[Node, Node], room: Room, interpreter_node: str
) -> None:
    node_a, node_b = nodes
    interpreter_at = node_a if interpreter_node == "node-a" else node_b
    try:
        call = await two_party_call(room, node_a, node_b)
        kiosk_to_expert = call.kiosk.peer(EXPERT)

        interpreter = await interpreter_joins(room, call, interpreter_at)

        pairs = all_pairs(call.kiosk, call.expert, interpreter)
        await media_flows(pairs, video=5, audio=10)
        assert call.kiosk.peer(EXPERT) is kiosk_to_expert
        for receiver, sender in pairs:
            video, audio = receiver.frames_from(sender)
            assert video > 0 and audio > 0, (receiver.name, sender, video, audio)

        await call.kiosk.client.request(CallHangup(id=NEW_ID, call=call.call), Ack)
        for side in (call.kiosk, call.expert, interpreter):
            ended = await side.seen(CallEnded, call=call.call)
            assert ended.outcome == "answered"
        assert (await interpreter.seen(CallEnded)).reason == "call_ended"
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{logs(nodes)}") from None
