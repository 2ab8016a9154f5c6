"""HTTP routes: health, readiness, metrics, the pages, the admin JSON API, and the
documents' routes (``documents.http``).

Errors become JSON ``{"code", "reason"}`` in exactly one place: the middleware here.
The OpenAPI description of these routes is ``visio_server/openapi.yaml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

import msgspec
from aiohttp import hdrs, web
from prometheus_client.aiohttp import make_aiohttp_handler

from queueing import QueueError
from signaling import ProtocolError, protocol_schema

from .auth import Principal
from .documents.errors import DocumentError
from .documents.http import setup_document_routes
from .keys import AUTH, DESK, DOCUMENTS, METRICS

__all__ = ["error_middleware", "setup_routes"]

_PAGES = {
    "/kiosk": "kiosk.html",
    "/expert": "expert.html",
    # The console serves interpreters too; the path picks where its token is kept.
    "/interpreter": "expert.html",
    "/admin": "admin.html",
}
_STATUS_OF_CODE = {"not_authenticated": 401, "forbidden": 403, "service_unavailable": 503}
_KEPT_HEADERS = (hdrs.ALLOW, hdrs.WWW_AUTHENTICATE, hdrs.RETRY_AFTER, hdrs.LOCATION)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_error(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"code": code, "reason": reason}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProtocolError as exc:
        return _json_error(_STATUS_OF_CODE.get(exc.code, 400), exc.code, exc.reason)
    except QueueError as exc:
        return _json_error(409, exc.code, exc.reason)
    except DocumentError as exc:
        return _json_error(exc.status, exc.code, exc.reason)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        response = _json_error(exc.status, code, exc.text or exc.reason)
        # The body is rebuilt; headers that are part of the answer are not lost with it.
        for name in _KEPT_HEADERS:
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response


def web_client_dir() -> Path:
    return Path(str(resources.files("web_client")))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    desk = request.app[DESK]
    body = {"node": desk.node, "store": "up" if desk.store_ok else "unreachable"}
    if not desk.ready:
        return web.json_response({"status": "starting", **body}, status=503)
    return web.json_response({"status": "ready", **body})


async def _bearer(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise web.HTTPUnauthorized(
            text=json.dumps(
                {"code": "not_authenticated", "reason": "send Authorization: Bearer <token>"}
            ),
            content_type="application/json",
        )
    return await request.app[AUTH].verify(token.strip())


async def admin_queues(request: web.Request) -> web.Response:
    principal = await _bearer(request)
    if not principal.watches_queues:
        raise web.HTTPForbidden(
            text=json.dumps({"code": "forbidden", "reason": "admins and supervisors only"}),
            content_type="application/json",
        )
    status = request.app[DESK].queue_status(principal, time.time())
    return web.json_response(msgspec.to_builtins(status))


async def admin_nodes(request: web.Request) -> web.Response:
    """Which node holds which kiosk and expert (several nodes share one queue)."""
    principal = await _bearer(request)
    if principal.role != "admin":
        raise web.HTTPForbidden(
            text=json.dumps({"code": "forbidden", "reason": "admins only"}),
            content_type="application/json",
        )
    desk = request.app[DESK]
    held: dict[str, dict[str, list[str]]] = {}
    for party, link in sorted(desk.links().items()):
        kind, _, identity = party.partition(":")
        node = held.setdefault(link.split("/", 1)[0], {"kiosks": [], "experts": []})
        node["kiosks" if kind == "kiosk" else "experts"].append(identity)
    nodes = [{"node": name, **parties} for name, parties in sorted(held.items())]
    return web.json_response({"node": desk.node, "nodes": nodes})


async def schema(request: web.Request) -> web.Response:
    return web.json_response(protocol_schema())


async def openapi(request: web.Request) -> web.Response:
    text = resources.files("visio_server").joinpath("openapi.yaml").read_text("utf-8")
    return web.Response(text=text, content_type="application/yaml")


def _page(name: str) -> Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        path = web_client_dir() / name
        if not path.exists():
            raise web.HTTPNotFound(text=f"page {name} is not installed")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return page


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/kiosk")


def setup_routes(app: web.Application, ws_handler: Handler) -> None:
    app.router.add_get("/", root)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(app[METRICS].registry))
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/api/admin/queues", admin_queues)
    app.router.add_get("/api/admin/nodes", admin_nodes)
    app.router.add_get("/api/protocol.schema.json", schema)
    app.router.add_get("/api/openapi.yaml", openapi)
    setup_document_routes(app, app[DOCUMENTS].library, _bearer)
    for route, name in _PAGES.items():
        app.router.add_get(route, _page(name))
    app.router.add_static("/static", web_client_dir(), append_version=False)
