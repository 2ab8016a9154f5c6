"""visio-sim: real WebRTC calls through running visio-guichet servers.

Kiosks and experts here are real clients: each one signs in on its own WebSocket
(``visio_client``) and, once connected, sends synthetic audio and video to its peer
through aiortc (``media.PeerSession``) while counting the frames it decodes. It reads the
server's configuration to sign its parties in, so it imports ``visio_server``'s config
and token minting; the server never imports it.
"""

from .beneficiary import beneficiary_for
from .cli import main
from .parties import SimExpert, SimKiosk
from .record import CallQuota, CallRecord, SimRun, percentile
from .run import SimOptions, is_loopback_url, run_sim

__all__ = [
    "CallQuota",
    "CallRecord",
    "SimExpert",
    "SimKiosk",
    "SimOptions",
    "SimRun",
    "beneficiary_for",
    "is_loopback_url",
    "main",
    "percentile",
    "run_sim",
]
