"""What a run learns: each call as both of its parties saw it, the errors, the summary."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CallQuota", "CallRecord", "SimRun", "percentile"]


@dataclass
class CallRecord:
    """One call as both of its parties saw it; times are ``time.perf_counter()`` values."""

    call: str
    kiosk: str = ""
    expert: str = ""
    service: str = ""
    requested_at: float | None = None
    """When the kiosk sent call.request (the citizen pressed Call)."""
    connected_at: float | None = None
    """When the kiosk received call.connected."""
    kiosk_media_connected_at: float | None = None
    """When ICE and DTLS were up at the kiosk."""
    kiosk_first_video_at: float | None = None
    outcome: str | None = None
    """The outcome of call.ended, as the kiosk received it."""
    wrapped_up: bool = False
    kiosk_video_frames: int = 0
    kiosk_audio_frames: int = 0
    expert_video_frames: int = 0
    expert_audio_frames: int = 0

    @property
    def completed(self) -> bool:
        return self.outcome == "answered" and self.wrapped_up

    @property
    def media_both_ways(self) -> bool:
        return (
            min(
                self.kiosk_video_frames,
                self.kiosk_audio_frames,
                self.expert_video_frames,
                self.expert_audio_frames,
            )
            > 0
        )

    @property
    def connected_ms(self) -> float | None:
        if self.requested_at is None or self.connected_at is None:
            return None
        return (self.connected_at - self.requested_at) * 1000

    @property
    def media_connected_ms(self) -> float | None:
        if self.requested_at is None or self.kiosk_media_connected_at is None:
            return None
        return (self.kiosk_media_connected_at - self.requested_at) * 1000

    @property
    def setup_ms(self) -> float | None:
        """Button press to the first remote video frame decoded at the kiosk."""
        if self.requested_at is None or self.kiosk_first_video_at is None:
            return None
        return (self.kiosk_first_video_at - self.requested_at) * 1000


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass
class SimRun:
    """Calls and errors of one run, filled in by its kiosks and experts."""

    calls_requested: int
    calls: dict[str, CallRecord] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.perf_counter)
    finished_at: float | None = None

    def new_call(self, call: str, kiosk: str, service: str, requested_at: float) -> CallRecord:
        """Record a call a kiosk of this run placed; only such calls count."""
        record = CallRecord(call=call, kiosk=kiosk, service=service, requested_at=requested_at)
        self.calls[call] = record
        return record

    def error(self, text: str) -> None:
        self.errors.append(text)

    @property
    def succeeded(self) -> bool:
        records = self.calls.values()
        return (
            not self.errors
            and len(self.calls) == self.calls_requested
            and all(r.completed and r.media_both_ways for r in records)
        )

    def summary(self) -> dict[str, Any]:
        """The figures ``visio-sim --json`` prints: scripts and tests read these keys."""
        records = list(self.calls.values())
        setup = [ms for r in records if (ms := r.setup_ms) is not None]
        connected = [ms for r in records if (ms := r.connected_ms) is not None]
        finished_at = self.finished_at if self.finished_at is not None else time.perf_counter()
        return {
            "calls_requested": self.calls_requested,
            "calls_placed": len(records),
            "calls_connected": sum(r.connected_at is not None for r in records),
            "calls_completed": sum(r.completed for r in records),
            "calls_with_media_both_ways": sum(r.media_both_ways for r in records),
            "video_frames_received_by_kiosks": sum(r.kiosk_video_frames for r in records),
            "video_frames_received_by_experts": sum(r.expert_video_frames for r in records),
            "audio_frames_received_by_kiosks": sum(r.kiosk_audio_frames for r in records),
            "audio_frames_received_by_experts": sum(r.expert_audio_frames for r in records),
            "setup_ms_p50": _rounded(percentile(setup, 0.50)),
            "setup_ms_p95": _rounded(percentile(setup, 0.95)),
            "connected_ms_p50": _rounded(percentile(connected, 0.50)),
            "connected_ms_p95": _rounded(percentile(connected, 0.95)),
            "duration_s": round(finished_at - self.started_at, 2),
            "succeeded": self.succeeded,
            "errors": list(self.errors),
        }


@dataclass
class CallQuota:
    """Calls still to place, shared by every kiosk of a run."""

    remaining: int

    def take(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True
