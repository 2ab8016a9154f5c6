"""media.peer and media.tracks: aiortc peers with synthetic media, on loopback.

Two real ``PeerSession``s are connected in-process (the offer and answer handed over
directly), as aiortc's own tests pair real objects instead of mocking them.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest

from media import GradientVideoTrack, PeerSession, SineAudioTrack, loopback_host_candidates
from media.tracks import AUDIO_FRAME_SAMPLES, AUDIO_SAMPLE_RATE, VIDEO_HEIGHT, VIDEO_WIDTH


@pytest.mark.media
async def test_two_peer_sessions_exchange_audio_and_video() -> None:
    with loopback_host_candidates():
        offerer, answerer = PeerSession(), PeerSession()
        try:
            await offerer.accept_answer(await answerer.answer(await offerer.create_offer()))
            async with asyncio.timeout(10):
                await asyncio.gather(
                    *(e.wait() for p in (offerer, answerer) for e in (p.first_video, p.first_audio))
                )
        finally:
            await asyncio.gather(offerer.close(), answerer.close())
    for peer in (offerer, answerer):
        assert peer.video_frames > 0 and peer.audio_frames > 0


async def test_descriptions_are_the_specs_plain_dictionaries() -> None:
    offerer, answerer = PeerSession(), PeerSession()
    try:
        offer = await offerer.create_offer()
        assert offer["type"] == "offer" and offer["sdp"].startswith("v=0")
        answer = await answerer.answer(offer)
        assert answer["type"] == "answer" and "m=video" in answer["sdp"]
        # The end-of-candidates marker, and an empty candidate, need nothing from aiortc.
        await answerer.add_remote_candidate(None)
        await answerer.add_remote_candidate({"candidate": ""})
    finally:
        await asyncio.gather(offerer.close(), answerer.close())


async def test_gradient_frames_scroll_and_carry_their_timestamps() -> None:
    track = GradientVideoTrack(fps=100)
    try:
        first, second = await track.recv(), await track.recv()
    finally:
        track.stop()
    assert (first.width, first.height) == (VIDEO_WIDTH, VIDEO_HEIGHT)
    assert first.time_base == Fraction(1, 90_000)
    assert (first.pts, second.pts) == (0, 900)
    assert bytes(first.planes[0]) != bytes(second.planes[0])


async def test_tone_frames_are_20_ms_of_mono_48_khz() -> None:
    track = SineAudioTrack()
    try:
        first, second = await track.recv(), await track.recv()
    finally:
        track.stop()
    assert first.sample_rate == AUDIO_SAMPLE_RATE and first.samples == AUDIO_FRAME_SAMPLES
    assert (first.pts, second.pts) == (0, AUDIO_FRAME_SAMPLES)
