"""TURN with short-lived credentials: what the server hands out in ``call.connected``
opens a relay on a real coturn, and nothing else does."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import turn

from tests.support import (
    RunningServer,
    caf_parties,
    start_server,
    write_test_config,
)

pytestmark = pytest.mark.media

SECRET = "turn-test-secret-0123456789"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[int]:
    """A coturn on loopback with the TURN REST scheme (use-auth-secret)."""
    binary = shutil.which("turnserver")
    assert binary, "coturn is installed by scripts/test.sh (Debian package coturn)"
    port = free_udp_port()
    config = tmp_path / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                "listening-ip=127.0.0.1",
                "relay-ip=127.0.0.1",
                f"listening-port={port}",
                "min-port=49160",
                "max-port=49200",
                "realm=visio.test",
                "use-auth-secret",
                f"static-auth-secret={SECRET}",
                "fingerprint",
                "no-tls",
                "no-dtls",
                "no-cli",
                # Test only: the peer below is on 127.0.0.1 too.
                "allow-loopback-peers",
                f"pidfile={tmp_path / 'turnserver.pid'}",
                f"log-file={tmp_path / 'turnserver.log'}",
                "simple-log",
            ]
        )
    )
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def turn_server(tmp_path: Path, coturn: int) -> AsyncIterator[RunningServer]:
    config = write_test_config(tmp_path)
    text = config.read_text() + (
        f'\n[media]\nturn_urls = ["turn:127.0.0.1:{coturn}?transport=udp"]\n'
        f'turn_secret = "{SECRET}"\nturn_ttl_s = 600\n'
    )
    config.write_text(text)
    running = await start_server(config)
    yield running
    await running.stop()


async def ice_servers_of_a_call(server: RunningServer) -> list[dict[str, Any]]:
    kiosk, expert = await caf_parties(server)
    try:
        queued = await kiosk.request(
            {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
        )
        await expert.expect("call.offered")
        await expert.request({"type": "offer.accept", "call": queued["call"]})
        connected = await kiosk.expect("call.connected")
        return list(connected["ice_servers"])
    finally:
        await kiosk.close()
        await expert.close()


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


async def allocate(port: int, username: str, password: str) -> turn.TurnTransport:
    """Allocate a relay; coturn may still be starting, so retry briefly."""
    last: Exception | None = None
    for _ in range(50):
        try:
            transport, _protocol = await asyncio.wait_for(
                turn.create_turn_endpoint(
                    asyncio.DatagramProtocol, ("127.0.0.1", port), username, password
                ),
                2,
            )
            return transport
        except (TimeoutError, ConnectionError) as exc:
            last = exc
            await asyncio.sleep(0.1)
    raise AssertionError(f"coturn did not answer: {last}")


async def test_call_credentials_open_a_relay_that_carries_data(
    turn_server: RunningServer, coturn: int
) -> None:
    servers = await ice_servers_of_a_call(turn_server)
    relay = next(s for s in servers if any(u.startswith("turn:") for u in s["urls"]))
    assert relay["username"].split(":")[1] == "kiosk-1"

    loop = asyncio.get_running_loop()
    peer_transport, peer = await loop.create_datagram_endpoint(Collect, local_addr=("127.0.0.1", 0))
    transport = await allocate(coturn, relay["username"], relay["credential"])
    try:
        relayed = transport.get_extra_info("sockname")
        assert relayed[0] == "127.0.0.1"
        transport.sendto(b"bonjour", peer_transport.get_extra_info("sockname"))
        assert await asyncio.wait_for(peer.received.get(), 5) == b"bonjour"
    finally:
        transport.close()
        peer_transport.close()


async def test_a_wrong_credential_gets_no_relay(turn_server: RunningServer, coturn: int) -> None:
    servers = await ice_servers_of_a_call(turn_server)
    relay = next(s for s in servers if "username" in s)
    await allocate(coturn, relay["username"], relay["credential"])  # coturn is up
    with pytest.raises(Exception, match="401"):
        await turn.create_turn_endpoint(
            asyncio.DatagramProtocol, ("127.0.0.1", coturn), relay["username"], "forged"
        )
