"""Prometheus metrics, recorded through one object with intent-named methods.

Labels are ``service``, ``role``, ``outcome``, ``result``, ``state``, ``code``,
``channel``, ``kind`` and ``part``; never a kiosk, an expert or a beneficiary. Queue
depth, experts by state and the kiosks' devices are read at scrape time, so they can
never drift from what they count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from queueing import QueueMachine
from signaling import messages as m

__all__ = ["JournalState", "Metrics"]

_WAIT_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
_HANDLE_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0)


class _QueueCollector(Collector):
    def __init__(
        self,
        machine: Callable[[], QueueMachine],
        connections: Callable[[], dict[str, int]],
        clock: Callable[[], float],
        journal: Callable[[], JournalState],
    ) -> None:
        self._machine, self._connections, self._clock = machine, connections, clock
        self._journal = journal

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        machine, now = self._machine(), self._clock()
        waiting = GaugeMetricFamily(
            "visio_queue_waiting_calls",
            "Calls waiting or ringing in a service's queue.",
            labels=["service"],
        )
        connected = GaugeMetricFamily(
            "visio_queue_connected_calls", "Calls connected to an expert.", labels=["service"]
        )
        oldest = GaugeMetricFamily(
            "visio_queue_oldest_wait_seconds",
            "Wait so far of the oldest queued call.",
            labels=["service"],
        )
        is_open = GaugeMetricFamily(
            "visio_service_open",
            "1 while the service is within its opening hours.",
            labels=["service"],
        )
        experts = GaugeMetricFamily(
            "visio_experts", "Experts answering a service, by state.", labels=["service", "state"]
        )
        for service in machine.services:
            status = machine.status(service, now)
            waiting.add_metric([service], status.waiting + status.offered)
            connected.add_metric([service], status.connected)
            oldest.add_metric([service], status.oldest_wait_s)
            is_open.add_metric([service], 1.0 if status.open else 0.0)
            for state, count in status.experts.items():
                experts.add_metric([service, state], count)
        conns = GaugeMetricFamily(
            "visio_connections", "Open WebSocket connections, by role.", labels=["role"]
        )
        for role, count in sorted(self._connections().items()):
            conns.add_metric([role], count)
        yield from (waiting, connected, oldest, is_open, experts, conns)
        journal = self._journal()
        yield GaugeMetricFamily(
            "visio_store_up",
            "1 while this node reaches the queue store (always 1 for a local store).",
            value=1.0 if journal.store_up else 0.0,
        )
        yield GaugeMetricFamily(
            "visio_journal_entry", "Last journal entry applied by this node.", value=journal.entry
        )
        yield CounterMetricFamily(
            "visio_journal_conflicts",
            "Entries another node wrote first, so this node caught up and tried again.",
            value=journal.conflicts,
        )


class _DeviceCollector(Collector):
    def __init__(self, devices: Callable[[], list[m.DeviceHealth]]) -> None:
        self._devices = devices

    def collect(self) -> Iterator[GaugeMetricFamily]:
        devices = self._devices()
        yield GaugeMetricFamily(
            "visio_device_agents",
            "Kiosk device agents connected (every node's, as this node last read them).",
            value=sum(1 for d in devices if d.online),
        )
        ready = GaugeMetricFamily(
            "visio_device_parts_ready",
            "Connected kiosk scanners and printers that report ready.",
            labels=["part"],
        )
        ready.add_metric(["scanner"], sum(1 for d in devices if d.online and d.scanner.ready))
        ready.add_metric(["printer"], sum(1 for d in devices if d.online and d.printer.ready))
        yield ready


@dataclass(frozen=True)
class JournalState:
    store_up: bool
    entry: int
    conflicts: int


class Metrics:
    def __init__(self, registry: CollectorRegistry, service_levels: Iterable[float] = ()) -> None:
        self.registry = registry
        buckets = sorted(set(_WAIT_BUCKETS) | set(service_levels))
        self._wait = Histogram(
            "visio_call_wait_seconds",
            "Time from joining a queue to being answered or leaving it.",
            ["service", "outcome"],
            buckets=buckets,
            registry=registry,
        )
        self._handle = Histogram(
            "visio_call_talk_seconds",
            "Duration of answered calls, from connection to hang-up.",
            ["service"],
            buckets=_HANDLE_BUCKETS,
            registry=registry,
        )
        self._calls = Counter(
            "visio_calls",
            "Calls that left a queue, by outcome.",
            ["service", "outcome"],
            registry=registry,
        )
        self._short_abandons = Counter(
            "visio_short_abandons",
            "Abandons quicker than the service's short-abandon threshold (misdials).",
            ["service"],
            registry=registry,
        )
        self._offers = Counter(
            "visio_offers",
            "Offers to experts, by result.",
            ["service", "result"],
            registry=registry,
        )
        self._messages = Counter(
            "visio_ws_messages_received",
            "Messages received from clients.",
            ["role"],
            registry=registry,
        )
        self._errors = Counter(
            "visio_protocol_errors", "Errors sent to clients, by code.", ["code"], registry=registry
        )
        self._nodes_lost = Counter(
            "visio_nodes_lost",
            "Other nodes this node declared dead because their heartbeat stopped.",
            registry=registry,
        )
        self._joined = Counter(
            "visio_participants_joined",
            "Guests who joined a running call (interpreters, supervisors), by role.",
            ["service", "role"],
            registry=registry,
        )
        self._stayed = Histogram(
            "visio_participant_seconds",
            "How long guests stayed in a call, by role: interpreter minutes come from here.",
            ["service", "role"],
            buckets=_HANDLE_BUCKETS,
            registry=registry,
        )
        self._channel_messages = Counter(
            "visio_channel_messages",
            "Messages on a call's channels (real-time text, whisper...), by result.",
            ["channel", "result"],
            registry=registry,
        )
        self._channel_bytes = Counter(
            "visio_channel_bytes",
            "Payload bytes relayed on a call's channels.",
            ["channel"],
            registry=registry,
        )
        self._slow = Counter(
            "visio_slow_consumers",
            "Connections closed because they did not read their messages.",
            ["role"],
            registry=registry,
        )
        self._documents = Counter(
            "visio_documents",
            "Documents of case files, by what happened to them "
            "(received, refused upload, accepted, rejected, purged).",
            ["outcome"],
            registry=registry,
        )
        self._device_commands = Counter(
            "visio_device_commands",
            "Scan, print and cancel commands for kiosk devices, by outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        self._upload_bytes = Counter(
            "visio_document_upload_bytes",
            "Bytes of documents received and stored.",
            registry=registry,
        )
        self._exports = Counter(
            "visio_exports",
            "Attempts to hand an accepted document to the partner, by outcome.",
            ["outcome"],
            registry=registry,
        )

    def watch(
        self,
        machine: Callable[[], QueueMachine],
        connections: Callable[[], dict[str, int]],
        clock: Callable[[], float],
        journal: Callable[[], JournalState] = lambda: JournalState(True, 0, 0),
    ) -> None:
        self.registry.register(_QueueCollector(machine, connections, clock, journal))

    def watch_devices(self, devices: Callable[[], list[m.DeviceHealth]]) -> None:
        self.registry.register(_DeviceCollector(devices))

    def call_answered(self, service: str, waited_s: float) -> None:
        self._wait.labels(service, "answered").observe(waited_s)

    def call_left(
        self, service: str, outcome: str, waited_s: float | None, talk_s: float | None
    ) -> None:
        self._calls.labels(service, outcome).inc()
        if waited_s is not None and outcome != "answered":
            self._wait.labels(service, outcome).observe(waited_s)
        if talk_s is not None:
            self._handle.labels(service).observe(talk_s)

    def short_abandon(self, service: str) -> None:
        self._short_abandons.labels(service).inc()

    def offer_ended(self, service: str, result: str) -> None:
        self._offers.labels(service, result).inc()

    def participant_joined(self, service: str, role: str) -> None:
        self._joined.labels(service, role).inc()

    def participant_left(self, service: str, role: str, stayed_s: float) -> None:
        self._stayed.labels(service, role).observe(stayed_s)

    def channel_message(self, channel: str, result: str, size: int) -> None:
        """``result``: relayed, refused (not a member, wrong shape) or rate_limited."""
        self._channel_messages.labels(channel, result).inc()
        if size:
            self._channel_bytes.labels(channel).inc(size)

    def message_received(self, role: str) -> None:
        self._messages.labels(role).inc()

    def error_sent(self, code: str) -> None:
        self._errors.labels(code).inc()

    def slow_consumer(self, role: str) -> None:
        self._slow.labels(role).inc()

    def node_lost(self) -> None:
        self._nodes_lost.inc()

    def document_counted(self, outcome: str) -> None:
        """``outcome``: received, refused, accepted, rejected, purged."""
        self._documents.labels(outcome).inc()

    def device_command(self, kind: str, outcome: str) -> None:
        """``kind``: scan, print, cancel; ``outcome``: sent, duplicate, refused,
        undeliverable, done, failed, cancelled, timed_out."""
        self._device_commands.labels(kind, outcome).inc()

    def upload_stored(self, size: int) -> None:
        self._upload_bytes.inc(size)

    def document_exported(self, outcome: str) -> None:
        """``outcome``: delivered or failed (and tried again later)."""
        self._exports.labels(outcome).inc()
