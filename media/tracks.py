"""Synthetic media tracks: a scrolling gradient and a tone, paced in real time.

They stand in for a camera and a microphone wherever no person sits in front of a
device: the simulator, benchmarks, tests. Each frame is cheap to make (a slice of a
buffer built once), so many calls fit on one core.
"""

from __future__ import annotations

import asyncio
import math
from array import array
from fractions import Fraction

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

__all__ = [
    "AUDIO_FRAME_SAMPLES",
    "AUDIO_SAMPLE_RATE",
    "VIDEO_HEIGHT",
    "VIDEO_WIDTH",
    "FramePacer",
    "GradientVideoTrack",
    "SineAudioTrack",
]

VIDEO_WIDTH = 320
VIDEO_HEIGHT = 240
VIDEO_CLOCK_RATE = 90_000
AUDIO_SAMPLE_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960
"""20 ms at 48 kHz, the packetisation Opus uses."""
TONE_HZ = 400
"""48 kHz / 400 Hz = 120 samples a period: a 20 ms frame holds whole periods, so one repeats."""
TONE_AMPLITUDE = 8_000


class FramePacer:
    """Releases frame ``n`` at ``start + n * interval`` on the event loop's clock, so a
    late frame does not push every later one back."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._start: float | None = None
        self._count = 0

    async def next_index(self) -> int:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
            return 0
        self._count += 1
        await asyncio.sleep(self._start + self._count * self._interval_s - loop.time())
        return self._count


class GradientVideoTrack(MediaStreamTrack):
    """A 320x240 diagonal luma gradient that scrolls one row a frame."""

    kind = "video"

    def __init__(self, fps: int = 30) -> None:
        super().__init__()
        self._pacer = FramePacer(1 / fps)
        self._pts_step = VIDEO_CLOCK_RATE // fps
        # Row y of this buffer holds (x + y) mod 256: the H rows starting at row (n mod 256) are
        # frame n, so each frame is one slice of a buffer built once, not a loop over pixels.
        ramp = bytes(range(256)) * (VIDEO_WIDTH // 256 + 2)
        self._luma = b"".join(
            ramp[y % 256 : y % 256 + VIDEO_WIDTH] for y in range(VIDEO_HEIGHT + 256)
        )
        self._chroma = bytes([128]) * ((VIDEO_WIDTH // 2) * (VIDEO_HEIGHT // 2))

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pacer.next_index()
        offset = (index % 256) * VIDEO_WIDTH
        frame = VideoFrame(VIDEO_WIDTH, VIDEO_HEIGHT, "yuv420p")
        frame.planes[0].update(self._luma[offset : offset + VIDEO_WIDTH * VIDEO_HEIGHT])
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = index * self._pts_step
        frame.time_base = Fraction(1, VIDEO_CLOCK_RATE)
        return frame


class SineAudioTrack(MediaStreamTrack):
    """A 400 Hz tone, mono, 48 kHz, in 20 ms frames."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pacer = FramePacer(AUDIO_FRAME_SAMPLES / AUDIO_SAMPLE_RATE)
        self._samples = array(
            "h",
            (
                round(TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * n / AUDIO_SAMPLE_RATE))
                for n in range(AUDIO_FRAME_SAMPLES)
            ),
        ).tobytes()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pacer.next_index()
        frame = AudioFrame(format="s16", layout="mono", samples=AUDIO_FRAME_SAMPLES)
        frame.planes[0].update(self._samples)
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = index * AUDIO_FRAME_SAMPLES
        frame.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
        return frame
