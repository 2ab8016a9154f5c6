from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from tests.cluster_support import Node
from tests.support import JsonClient

StartNodes = Callable[..., Awaitable[list[Node]]]


async def test_kiosk_on_one_node_is_answered_by_an_expert_on_another(
    start_nodes: StartNodes,
) -> None:
    node_a, node_b = await start_nodes(2)
    expert = await JsonClient.connect(node_b.ws_url)
    await expert.hello(node_b.token("expert", "expert-01"))
    await expert.request({"type": "expert.status", "status": "available"})
    kiosk = await JsonClient.connect(node_a.ws_url)
    await kiosk.hello(node_a.token("kiosk", "kiosk-001"))
    queued = await kiosk.request({"type": "call.request", "service": "caf", "beneficiary": "1"})
    assert queued["type"] == "call.queued", queued
    await expert.expect("call.offered", call=queued["call"])
    await expert.request({"type": "offer.accept", "call": queued["call"]})
    await kiosk.expect("call.connected")
    await expert.expect("call.connected")
    await expert.send(
        {"type": "rtc.sdp", "call": queued["call"], "description": {"type": "offer", "sdp": "v=0"}}
    )
    relayed = await kiosk.expect("rtc.sdp")
    assert relayed["sender"] == "expert:expert-01"
    # Either node tells an admin which node holds whom: the queue records it.
    admin = {"Authorization": f"Bearer {node_b.token('admin', 'admin-1')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{node_b.url}/api/admin/nodes", headers=admin) as response,
    ):
        presence = await response.json()
    assert presence == {
        "node": "node-b",
        "nodes": [
            {"node": "node-a", "kiosks": ["kiosk-001"], "experts": []},
            {"node": "node-b", "kiosks": [], "experts": ["expert-01"]},
        ],
    }
    await kiosk.close()
    await expert.close()
