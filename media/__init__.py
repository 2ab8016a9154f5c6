"""Media side of visio-guichet: ICE servers and TURN credentials, and the aiortc parts
client-side tools share (a peer session, synthetic tracks). The relay comes later.

Nothing here imports the wire protocol: SDP and ICE travel as the spec's dictionaries.
The server imports this package for TURN credentials alone, so the aiortc parts load on
first use: a server process never pays for importing aiortc and av.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .turn import ice_servers, turn_credentials

if TYPE_CHECKING:
    from .peer import (
        IceCandidateInit,
        IceServerInit,
        PeerSession,
        SessionDescriptionInit,
        loopback_host_candidates,
    )
    from .tracks import FramePacer, GradientVideoTrack, SineAudioTrack

__all__ = [
    "FramePacer",
    "GradientVideoTrack",
    "IceCandidateInit",
    "IceServerInit",
    "PeerSession",
    "SessionDescriptionInit",
    "SineAudioTrack",
    "ice_servers",
    "loopback_host_candidates",
    "turn_credentials",
]

_LAZY = {
    "FramePacer": "tracks",
    "GradientVideoTrack": "tracks",
    "SineAudioTrack": "tracks",
    "IceCandidateInit": "peer",
    "IceServerInit": "peer",
    "PeerSession": "peer",
    "SessionDescriptionInit": "peer",
    "loopback_host_candidates": "peer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
