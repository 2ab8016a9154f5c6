"""Receiving a document's bytes over HTTP: bounded, complete, and checked by content.

Rules this module keeps:

1. The body is the raw file, announced by ``Content-Length`` (else 411
   ``length_required``). An announced length over ``documents.max_bytes`` is refused
   before reading; a body that grows past it is refused as soon as it does (413
   ``too_large``), without reading the rest.
2. A body shorter than announced, or a connection cut while sending, stores nothing:
   the temporary file is removed and no document appears.
3. Only a file that passes ``formats.check_file`` is given a name (415
   ``unsupported_type`` otherwise).
4. A title names a document for people; one that could name a path (a separator,
   ``..``) or carries control characters is refused (400 ``invalid_title``).
"""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web
from aiohttp.client_exceptions import ClientPayloadError

from .blobs import BlobStore
from .errors import DocumentError
from .formats import UnsupportedFile, check_file

__all__ = ["Received", "check_title", "receive_body", "title_header"]

_CHUNK = 64 * 1024
MAX_TITLE = 200


@dataclass(frozen=True)
class Received:
    blob: str
    """The stored file's name, drawn by the blob store."""
    mime: str
    pages: int
    size: int
    sha256: str


def check_title(title: str) -> str:
    """The title, trimmed; ``invalid_title`` if it could be taken for a path."""
    title = title.strip()
    if len(title) > MAX_TITLE:
        raise DocumentError("invalid_title", f"a title has at most {MAX_TITLE} characters", 400)
    if "/" in title or "\\" in title or ".." in title:
        raise DocumentError("invalid_title", "a title may not contain '/', '\\' or '..'", 400)
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in title):
        raise DocumentError("invalid_title", "a title may not contain control characters", 400)
    return title


def title_header(request: web.Request) -> str:
    """``X-Document-Title``, URL-decoded as UTF-8 and checked."""
    raw = request.headers.get("X-Document-Title", "")
    try:
        decoded = unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise DocumentError("invalid_title", "X-Document-Title is URL-encoded UTF-8", 400) from None
    return check_title(decoded)


async def receive_body(request: web.Request, blobs: BlobStore, max_bytes: int) -> Received:
    """Read the request's body into the blob store, check it, and name it."""
    announced = request.content_length
    if announced is None:
        raise DocumentError("length_required", "send the file with a Content-Length", 411)
    if announced > max_bytes:
        raise DocumentError(
            "too_large", f"a document has at most {max_bytes} bytes", 413, max_bytes=max_bytes
        )
    pending = await asyncio.to_thread(blobs.begin)
    digest = hashlib.sha256()
    try:
        try:
            while True:
                chunk = await request.content.read(_CHUNK)
                if not chunk:
                    break
                if pending.size + len(chunk) > min(announced, max_bytes):
                    raise DocumentError(
                        "too_large",
                        f"a document has at most {max_bytes} bytes",
                        413,
                        max_bytes=max_bytes,
                    )
                digest.update(chunk)
                pending.write(chunk)
        except (ClientPayloadError, ConnectionError, asyncio.IncompleteReadError):
            raise DocumentError(
                "incomplete_body", "the file was cut off while sending", 400
            ) from None
        if pending.size != announced:
            raise DocumentError(
                "incomplete_body",
                f"received {pending.size} of the {announced} bytes announced",
                400,
            )
        await asyncio.to_thread(pending.finish_writing)
        try:
            checked = await asyncio.to_thread(check_file, pending.path)
        except UnsupportedFile as exc:
            raise DocumentError(
                "unsupported_type", f"send a PDF, JPEG, PNG or TIFF file ({exc})", 415
            ) from None
        name = await asyncio.to_thread(pending.commit, checked.extension)
    except BaseException:
        await asyncio.to_thread(pending.discard)
        raise
    return Received(name, checked.mime, checked.pages, pending.size, digest.hexdigest())
