"""The document bytes over HTTP: a scan up to the call's case file, a document down for
printing. Both carry the device token; aiohttp's errors stop here.

An upload is idempotent by its ``Idempotency-Key`` (the command key): sending it again
after a lost answer returns the document already stored, never a second one. So any
doubt (connection lost, timeout, 5xx) is ``TransferInterrupted``, to be tried again;
only the server's final no (a 4xx it will repeat) is ``ServerRefused``.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from pathlib import Path
from typing import Final
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import msgspec

from signaling.messages import DocumentInfo

from .errors import ServerRefused, TransferInterrupted
from .pacing import paced_chunks

__all__ = ["download_document", "safe_title", "server_path", "upload_scan"]

log = logging.getLogger(__name__)

# Answers that may change on a later try: a rotated token, a busy or restarting server.
_TRY_AGAIN: Final = frozenset({401, 408, 425, 429})
_TITLE_MAX: Final = 120


class _ErrorBody(msgspec.Struct):
    code: str = ""
    reason: str = ""


def server_path(base_url: str, path: str) -> str:
    """``path`` (``/api/...``) on the agent's own server. A full URL, or one to another
    host, is refused: the device token goes nowhere else."""
    if not path.startswith("/") or path.startswith("//") or urlsplit(path).scheme:
        raise ServerRefused(f"refusing to send the device token to {path!r}", status=0)
    return urljoin(base_url.rstrip("/") + "/", path.lstrip("/"))


def safe_title(title: str) -> str:
    """A title the server takes as given: no path separators, no ``..``, no control
    characters (the expert may well type "Avis 2024/2025")."""
    cleaned = "".join(" " if unicodedata.category(char).startswith("C") else char for char in title)
    cleaned = cleaned.replace("/", "-").replace("\\", "-")
    while ".." in cleaned:
        cleaned = cleaned.replace("..", ".")
    return " ".join(cleaned.split())[:_TITLE_MAX]


async def _refusal(response: aiohttp.ClientResponse, what: str) -> ServerRefused:
    text = await response.text(errors="replace")
    try:
        body = msgspec.json.decode(text, type=_ErrorBody)
        code, reason = body.code, body.reason
    except msgspec.DecodeError:
        code, reason = "", text.strip()[:200]
    words = reason or code or response.reason or "refused"
    return ServerRefused(
        f"the server refused the {what}: {words} ({response.status})",
        status=response.status,
        code=code,
    )


async def upload_scan(
    session: aiohttp.ClientSession,
    url: str,
    *,
    token: str,
    key: str,
    body: bytes,
    title: str = "",
    mime: str = "application/pdf",
    kbps: int | None = None,
    timeout_s: float | None = None,
) -> DocumentInfo:
    """POST ``body`` raw to ``url`` (the command's ``upload_url`` on our server), paced
    to ``kbps``; the document the server stored (201) or had stored already (200)."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": mime,
        "Content-Length": str(len(body)),
        "Idempotency-Key": key,
    }
    if title := safe_title(title):
        headers["X-Document-Title"] = quote(title, safe="")
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
    try:
        async with session.post(
            url, data=paced_chunks(body, kbps), headers=headers, timeout=timeout
        ) as response:
            if response.status in (200, 201):
                return msgspec.json.decode(await response.read(), type=DocumentInfo)
            if response.status >= 500 or response.status in _TRY_AGAIN:
                raise TransferInterrupted(f"upload answered {response.status}")
            raise await _refusal(response, "scan")
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        raise TransferInterrupted(f"upload interrupted: {exc or type(exc).__name__}") from exc
    except msgspec.DecodeError as exc:
        raise TransferInterrupted(f"upload answer unreadable: {exc}") from exc


async def download_document(
    session: aiohttp.ClientSession,
    url: str,
    *,
    token: str,
    dest: Path,
    max_bytes: int,
    timeout_s: float | None = None,
) -> int:
    """GET a document's bytes into ``dest``; how many. More than ``max_bytes`` is a
    refusal (a kiosk printer is no place for it)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
    try:
        async with session.get(
            url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        ) as response:
            if response.status >= 500 or response.status in _TRY_AGAIN:
                raise TransferInterrupted(f"download answered {response.status}")
            if response.status != 200:
                raise await _refusal(response, "document")
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    raise ServerRefused(
                        f"the document is larger than {max_bytes} bytes", status=413
                    )
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        raise TransferInterrupted(f"download interrupted: {exc or type(exc).__name__}") from exc
    await asyncio.to_thread(_write_whole, dest, bytes(data))
    return len(data)


def _write_whole(dest: Path, data: bytes) -> None:
    partial = dest.with_name(dest.name + ".part")
    partial.write_bytes(data)
    partial.replace(dest)
