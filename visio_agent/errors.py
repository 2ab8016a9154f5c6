"""What a device command can fail with. Each error carries ``reason``: the words of the
device or of the server, as the expert should read them in ``device.progress failed``.
SANE's, CUPS's and aiohttp's own exceptions are mapped to these at the module that
calls them, so the agent catches only these."""

from __future__ import annotations

__all__ = [
    "CommandCancelled",
    "DeviceFailure",
    "PrinterFailure",
    "ScannerFailure",
    "ServerRefused",
    "TransferInterrupted",
]


class DeviceFailure(Exception):
    """A command cannot go on; ``reason`` says why in the device's (or server's) words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ScannerFailure(DeviceFailure):
    """SANE refused or broke off a scan: feeder empty, jammed, cover open, no scanner..."""

    def __init__(self, reason: str, *, status: str = "") -> None:
        super().__init__(reason)
        self.status = status
        """The SANE status it stands for (``"no_docs"``, ``"jammed"``...), when known."""


class PrinterFailure(DeviceFailure):
    """CUPS refused, aborted or cancelled a job, or there is no printer."""


class ServerRefused(DeviceFailure):
    """The server answered an upload or a download with a final no (4xx): trying again
    with the same request cannot help."""

    def __init__(self, reason: str, *, status: int, code: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


class TransferInterrupted(Exception):
    """An upload or download did not get through (connection lost, 5xx, timeout): the
    same request may succeed later; an upload is idempotent by its key."""


class CommandCancelled(Exception):
    """The expert cancelled the command (``device.cancel``)."""
