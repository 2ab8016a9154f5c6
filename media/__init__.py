"""Media side of visio-guichet: ICE servers and TURN credentials (relay to come)."""

from .turn import ice_servers, turn_credentials

__all__ = ["ice_servers", "turn_credentials"]
