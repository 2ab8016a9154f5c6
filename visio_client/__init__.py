"""Protocol client of visio-guichet: one typed WebSocket client for the simulator, the
benchmarks, the tests and the kiosk device agent, built on ``signaling.messages``."""

from .client import NEW_ID, Client, Match, message_type, websocket_url
from .errors import ClientError, ConnectFailed, ConnectionLost, ServerError, UnexpectedMessage

__all__ = [
    "NEW_ID",
    "Client",
    "ClientError",
    "ConnectFailed",
    "ConnectionLost",
    "Match",
    "ServerError",
    "UnexpectedMessage",
    "message_type",
    "websocket_url",
]
