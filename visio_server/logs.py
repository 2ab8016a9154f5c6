"""Logging rules of the server process.

A malformed HTTP request (a NUL in a header, both ``Transfer-Encoding`` and
``Content-Length``...) is the client's fault: aiohttp answers it with a correct 400
but logs it on ``aiohttp.server`` at ERROR with a traceback, as if the server had
failed. Anyone on the network can send such bytes, so each would be an alert and a
screenful of log. ``ClientErrorFilter`` turns those records into one INFO line.
Faults of the server itself keep their level and traceback.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["ClientErrorFilter", "quiet_client_errors"]


class ClientErrorFilter(logging.Filter):
    """One INFO line, no traceback, for a request aiohttp refused as malformed (4xx)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            lines = str(exc.message).strip().splitlines()
            what = (lines[0] if lines else type(exc).__name__).replace("%", "%%")
            record.msg = f"{record.msg}: {exc.code} {what}"
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_client_errors() -> None:
    """Install ``ClientErrorFilter`` on ``aiohttp.server``, once per process."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())
