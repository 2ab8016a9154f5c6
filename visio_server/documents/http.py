"""HTTP routes of documents: the bytes in (uploads) and out (content, pages as PNG),
and a call's case file as JSON.

Every route takes ``Authorization: Bearer <jwt>``; who may do what is the façade's to
say (``service.Documents``). Refusals are ``DocumentError``, which the HTTP error
middleware turns into ``{"code", "reason"}`` with its status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from ..auth import Principal
from .errors import DocumentError
from .formats import MAX_WIDTH
from .library import Library

__all__ = ["Bearer", "setup_document_routes"]

_DEFAULT_WIDTH = 1000
_MIN_WIDTH = 16

Bearer = Callable[[web.Request], Awaitable[Principal]]
"""The principal behind a request's ``Authorization: Bearer`` header."""


def setup_document_routes(app: web.Application, library: Library, bearer: Bearer) -> None:
    async def upload(request: web.Request) -> web.Response:
        principal = await bearer(request)
        info, created = await library.upload(principal, request.match_info["call"], request)
        return web.json_response(msgspec.to_builtins(info), status=201 if created else 200)

    async def case_file(request: web.Request) -> web.Response:
        principal = await bearer(request)
        case, infos = await library.case_file(principal, request.match_info["call"])
        return web.json_response({"case": case, "documents": msgspec.to_builtins(infos)})

    async def content(request: web.Request) -> web.StreamResponse:
        principal = await bearer(request)
        readable = await library.readable(principal, request.match_info["doc"])
        if request.method == "GET":  # a HEAD reads nothing
            await library.opened(principal, readable)
        document = readable.document
        extension = readable.path.suffix
        return web.FileResponse(
            readable.path,
            headers={
                "Content-Type": document.mime,
                "Content-Disposition": f'inline; filename="{document.id}{extension}"',
                "Cache-Control": "private, no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def page(request: web.Request) -> web.Response:
        principal = await bearer(request)
        number = _integer(request.match_info["n"], "page")
        width = _integer(request.query.get("width", str(_DEFAULT_WIDTH)), "width")
        readable = await library.readable(principal, request.match_info["doc"])
        png = await library.page_png(readable, number, max(_MIN_WIDTH, min(width, MAX_WIDTH)))
        # The console's viewer shows pages, not the file: seeing one is viewing it.
        await library.opened(principal, readable)
        return web.Response(
            body=png,
            content_type="image/png",
            headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
        )

    app.router.add_post("/api/calls/{call}/documents", upload)
    app.router.add_get("/api/calls/{call}/documents", case_file)
    app.router.add_get("/api/documents/{doc}/content", content)
    app.router.add_get(r"/api/documents/{doc}/pages/{n}.png", page)


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DocumentError(f"invalid_{what}", f"{what} is a whole number", 400) from None
