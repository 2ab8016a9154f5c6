"""Other nodes: following the shared journal, the node heartbeat, presence kept for later.

Rules this module keeps:

1. Fetching never waits for the lock: the next entries are on their way while this node
   is busy, and they are applied under the lock, in journal order.
2. After a failure to fetch or to apply, fetching starts again from the last entry
   applied: nothing is skipped, and the ledger ignores entries it already holds.
3. A node moved elsewhere or declared dead is told to the edge, which closes the
   connections it can no longer vouch for.
4. Only a node that has itself reached the store for a whole ``node_cutoff_s`` may
   declare others dead: after an outage everyone first gets the time to beat again.
5. A connection or a loss the store could not record is kept, the latest one per party,
   and retried until the store takes it or the queue says it no longer applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from queueing import Command, NodeLost, QueueError, QueueStore
from signaling import address, not_cancelled

from ..config import RedisConfig
from ..metrics import Metrics
from .commit import Committer
from .ledger import StoreUnavailable

__all__ = ["Follower", "Heartbeat", "NodeRegistry", "PendingPresence"]

log = logging.getLogger(__name__)

_FOLLOW_BLOCK_S = 1.0
_RETRY_S = 1.0


class NodeRegistry(Protocol):
    """Node liveness in a shared store: a heartbeat that expires."""

    async def beat(self, node: str, ttl_s: float) -> None: ...

    async def alive(self, nodes: list[str]) -> set[str]: ...


class Follower:
    def __init__(self, committer: Committer, store: QueueStore, node: str) -> None:
        self.committer = committer
        self.store = store
        self.node = node
        self.on_moved: Callable[[str, str], None] = lambda party, link: None
        """Told when another node took a party this node may still hold."""
        self.on_node_lost: Callable[[], None] = lambda: None
        """Told when the others declared this node dead (it was cut off too long)."""

    async def run(self) -> None:
        """Fetch what other nodes write to the shared journal as soon as they write it."""
        failing = False
        applying: asyncio.Task[None] | None = None
        try:
            while not_cancelled():
                try:
                    entries = await self.store.wait_journal(
                        self.committer.fetch_after(), _FOLLOW_BLOCK_S
                    )
                    if entries:
                        self.committer.received(entries)
                        if applying is None or applying.done():
                            applying = asyncio.create_task(self._apply_fetched())
                    if failing:
                        log.warning("following the shared journal again")
                    failing = False
                except Exception as exc:
                    if not failing:
                        log.warning("cannot follow the shared journal (%r); retrying", exc)
                    failing = True
                    self.committer.fetch_again()
                    await asyncio.sleep(_RETRY_S)
        finally:
            if applying is not None:
                applying.cancel()

    async def _apply_fetched(self) -> None:
        try:
            await self.committer.apply_received()
        except Exception:
            log.exception("entries of other nodes could not be applied; fetching them again")
            self.committer.fetch_again(drop=True)

    def heard(self, record: dict[str, Any]) -> None:
        """An entry another node wrote, once its events were told here."""
        kind, link = record["kind"], record.get("link", "")
        if kind == "KioskBack" and link:
            self.on_moved(address("kiosk", record["kiosk"]), link)
        elif kind == "ExpertSignIn" and link:
            self.on_moved(address("expert", record["expert"]), link)
        elif kind == "NodeLost" and record["node"] == self.node:
            self.on_node_lost()


class Heartbeat:
    def __init__(
        self,
        committer: Committer,
        nodes: NodeRegistry,
        node: str,
        settings: RedisConfig,
        metrics: Metrics,
    ) -> None:
        self.committer = committer
        self.nodes = nodes
        self.node = node
        self.settings = settings
        self.metrics = metrics

    async def run(self) -> None:
        """Say this node is alive; declare dead the nodes whose heartbeat stopped."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        reachable_since: float | None = None
        while not_cancelled():
            try:
                await self.nodes.beat(self.node, settings.node_cutoff_s)
                if reachable_since is None:
                    reachable_since = loop.time()
                self.committer.store_ok = True
                if loop.time() - reachable_since >= settings.node_cutoff_s:
                    await self._declare_dead_nodes()
            except Exception as exc:
                if self.committer.store_ok:
                    log.warning("cannot reach the shared store (%s)", exc)
                reachable_since, self.committer.store_ok = None, False
            await asyncio.sleep(settings.heartbeat_s)

    async def _declare_dead_nodes(self) -> None:
        links = self.committer.ledger.machine.links()
        others = sorted({link.split("/", 1)[0] for link in links.values()} - {self.node})
        if not others:
            return
        alive = await self.nodes.alive(others)
        for node in others:
            if node not in alive:
                log.warning("node %s stopped its heartbeat: its parties count as lost", node)
                self.metrics.node_lost()
                await self.committer.execute(NodeLost(node))


class PendingPresence:
    def __init__(self, committer: Committer) -> None:
        self.committer = committer
        self._pending: dict[str, Command] = {}
        """Presence commands the store refused while down, replayed when it is back."""

    async def record(self, party: str, command: Command) -> None:
        """Record a connection or its loss; kept and retried while the store is down."""
        try:
            await self.committer.execute(command)
        except StoreUnavailable:
            self._pending[party] = command
            raise
        self._pending.pop(party, None)

    async def run(self) -> None:
        while not_cancelled():
            await asyncio.sleep(_RETRY_S)
            for party, command in list(self._pending.items()):
                try:
                    await self.committer.execute(command)
                except StoreUnavailable:
                    break
                except QueueError as exc:
                    log.info("presence of %s no longer applies: %s", party, exc.reason)
                if self._pending.get(party) is command:
                    del self._pending[party]
