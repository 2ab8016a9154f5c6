"""The OpenAPI description is valid, complete, and true of the running server's answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

from queueing.machine import ON_BREAK
from queueing.model import ExpertState
from signaling import messages as m
from signaling import protocol_schema
from tests.support import JsonClient, RunningServer, write_test_config
from visio_server.app import create_app
from visio_server.config import load_config
from visio_server.keys import DESK

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "visio_server" / "openapi.yaml"


def _spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text("utf-8"))


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(_spec())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _check(
    openapi: OpenAPI,
    http: aiohttp.ClientSession,
    server: RunningServer,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    pattern: str | None = None,
    view_args: dict[str, Any] | None = None,
    validate_request: bool = True,
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    """GET ``path``, then validate the request and the real response against the spec."""
    async with http.get(server.url + path, headers=headers, allow_redirects=False) as response:
        body = await response.read()
    request = MockRequest(
        server.url,
        "get",
        path,
        path_pattern=pattern,
        view_args=view_args,
        headers=headers,
    )
    if validate_request:
        openapi.validate_request(request)
    # Bodies are text: hand them over decoded, as a server framework would.
    openapi.validate_response(
        request,
        MockResponse(
            body.decode("utf-8"),  # type: ignore[arg-type]
            status_code=response.status,
            headers=dict(response.headers),
            content_type=response.content_type,
        ),
    )
    return response.status, body, response


# ---------------------------------------------------------------------------- the document


def test_spec_is_valid_openapi_3_1() -> None:
    spec = _spec()
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_docs_link_points_at_the_packaged_spec() -> None:
    link = ROOT / "docs" / "openapi.yaml"
    assert link.is_symlink()
    assert link.resolve() == SPEC_PATH.resolve()


def test_every_router_route_is_described_and_nothing_else(tmp_path: Path) -> None:
    app = create_app(load_config(write_test_config(tmp_path)))
    routed: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp answers HEAD wherever it answers GET
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if route.resource is not None and type(route.resource).__name__ == "StaticResource":
            path += "/{path}"
        routed.add((route.method.lower(), path))
    described = {
        (method, path)
        for path, item in _spec()["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch", "head", "options"}
    }
    assert routed == described


def test_queue_status_schema_matches_the_message_structs() -> None:
    schemas = _spec()["components"]["schemas"]
    queue_status = schemas["QueueStatus"]
    fields = {f.encode_name for f in msgspec.structs.fields(m.QueueStatus)}
    assert set(queue_status["properties"]) == fields | {"type"}
    assert set(queue_status["required"]) == fields | {"type"}
    assert queue_status["properties"]["type"]["const"] == m.QueueStatus.__struct_config__.tag
    service_queue = schemas["ServiceQueue"]
    fields = {f.encode_name for f in msgspec.structs.fields(m.ServiceQueue)}
    assert set(service_queue["properties"]) == fields
    assert set(service_queue["required"]) == fields
    states = {s.value for s in ExpertState} - {"disconnected"} | {"away", ON_BREAK}
    assert set(service_queue["properties"]["experts"]["required"]) == states


async def test_served_spec_is_the_file(server: RunningServer, openapi: OpenAPI, http: Any) -> None:
    status, body, response = await _check(openapi, http, server, "/api/openapi.yaml")
    assert status == 200 and response.content_type == "application/yaml"
    assert yaml.safe_load(body) == _spec()


# ---------------------------------------------------------------------------- routes


async def test_root_redirects_to_kiosk(server: RunningServer, openapi: OpenAPI, http: Any) -> None:
    status, _, response = await _check(openapi, http, server, "/")
    assert status == 302 and response.headers["Location"] == "/kiosk"


async def test_health_and_readiness(server: RunningServer, openapi: OpenAPI, http: Any) -> None:
    status, body, _ = await _check(openapi, http, server, "/healthz")
    assert status == 200 and msgspec.json.decode(body) == {"status": "ok"}
    status, body, _ = await _check(openapi, http, server, "/readyz")
    assert status == 200
    ready = msgspec.json.decode(body)
    assert ready["status"] == "ready" and ready["store"] == "up" and ready["node"]


async def test_readiness_is_503_while_starting(
    server: RunningServer, openapi: OpenAPI, http: Any
) -> None:
    desk = server.app[DESK]
    desk.ready = False
    try:
        status, body, _ = await _check(openapi, http, server, "/readyz")
    finally:
        desk.ready = True
    assert status == 503 and msgspec.json.decode(body)["status"] == "starting"


async def test_metrics_text(server: RunningServer, openapi: OpenAPI, http: Any) -> None:
    status, body, response = await _check(openapi, http, server, "/metrics")
    assert status == 200 and response.content_type == "text/plain"
    assert b"visio_queue_waiting_calls" in body


async def test_protocol_schema(server: RunningServer, openapi: OpenAPI, http: Any) -> None:
    status, body, _ = await _check(openapi, http, server, "/api/protocol.schema.json")
    assert status == 200 and msgspec.json.decode(body) == protocol_schema()


@pytest.mark.parametrize("page", ["/kiosk", "/expert", "/admin"])
async def test_pages(server: RunningServer, openapi: OpenAPI, http: Any, page: str) -> None:
    status, body, response = await _check(openapi, http, server, page)
    assert status == 200 and response.content_type == "text/html"
    assert b"<html" in body.lower()


async def test_static_files(server: RunningServer, openapi: OpenAPI, http: Any) -> None:
    pattern = "/static/{path}"
    status, _, response = await _check(
        openapi, http, server, "/static/kiosk.js", pattern=pattern, view_args={"path": "kiosk.js"}
    )
    assert status == 200 and "javascript" in response.content_type
    status, _, _ = await _check(
        openapi, http, server, "/static/nope.js", pattern=pattern, view_args={"path": "nope.js"}
    )
    assert status == 404
    status, body, _ = await _check(
        openapi, http, server, "/static/i18n/", pattern=pattern, view_args={"path": "i18n/"}
    )
    assert status == 403 and msgspec.json.decode(body)["code"] == "forbidden"


# ---------------------------------------------------------------------------- admin API


async def test_admin_queues_for_admin(server: RunningServer, openapi: OpenAPI, http: Any) -> None:
    expert = await JsonClient.connect(server.ws_url)
    kiosk = await JsonClient.connect(server.ws_url)
    try:
        assert (await expert.hello(server.token("expert", "expert-1")))["type"] == "welcome"
        assert (await kiosk.hello(server.token("kiosk", "kiosk-1")))["type"] == "welcome"
        queued = await kiosk.request(
            {"type": "call.request", "service": "caf", "beneficiary": "1234567"}
        )
        assert queued["type"] == "call.queued"  # the expert is on break: the call waits
        headers = {"Authorization": f"Bearer {server.token('admin', 'admin-1')}"}
        status, body, _ = await _check(openapi, http, server, "/api/admin/queues", headers=headers)
    finally:
        await kiosk.close()
        await expert.close()
    assert status == 200
    data = msgspec.json.decode(body)
    assert data["type"] == "queue.status"
    rows = {row["service"]: row for row in data["services"]}
    assert set(rows) == {"caf", "cpam", "france-travail", "interpretes", "ferme"}
    assert rows["caf"]["waiting"] == 1 and rows["caf"]["experts"]["break"] == 1
    # What the HTTP route returns is exactly the wire message, decoded by its struct.
    assert msgspec.json.decode(body, type=m.QueueStatus).services[0].service == "caf"


async def test_admin_nodes_lists_who_this_node_holds_to_admins_only(
    server: RunningServer, openapi: OpenAPI, http: Any
) -> None:
    expert = await JsonClient.connect(server.ws_url)
    kiosk = await JsonClient.connect(server.ws_url)
    try:
        await expert.hello(server.token("expert", "expert-1"))
        await kiosk.hello(server.token("kiosk", "kiosk-1"))
        await expert.expect("expert.state")
        admin = {"Authorization": f"Bearer {server.token('admin', 'admin-1')}"}
        status, body, _ = await _check(openapi, http, server, "/api/admin/nodes", headers=admin)
        supervisor = {
            "Authorization": f"Bearer {server.token('supervisor', 'super-caf', partner='caf')}"
        }
        refused, refusal, _ = await _check(
            openapi, http, server, "/api/admin/nodes", headers=supervisor
        )
    finally:
        await kiosk.close()
        await expert.close()
    assert status == 200
    presence = msgspec.json.decode(body)
    assert presence["nodes"] == [
        {"node": presence["node"], "kiosks": ["kiosk-1"], "experts": ["expert-1"]}
    ]
    assert refused == 403 and msgspec.json.decode(refusal)["code"] == "forbidden"


async def test_admin_queues_for_supervisor_shows_its_partner(
    server: RunningServer, openapi: OpenAPI, http: Any
) -> None:
    token = server.token("supervisor", "super-caf", partner="caf")
    status, body, _ = await _check(
        openapi, http, server, "/api/admin/queues", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    assert [row["partner"] for row in msgspec.json.decode(body)["services"]] == ["caf"]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "not_authenticated"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, 401, "not_authenticated"),
        ({"Authorization": "Bearer not-a-jwt"}, 401, "not_authenticated"),
        ({"Authorization": "Bearer {expired}"}, 401, "not_authenticated"),
        ({"Authorization": "Bearer {kiosk}"}, 403, "forbidden"),
        ({"Authorization": "Bearer {expert}"}, 403, "forbidden"),
    ],
)
async def test_admin_queues_refusals(
    server: RunningServer,
    openapi: OpenAPI,
    http: Any,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    tokens = {
        "expired": server.token("admin", "admin-1", exp=1),
        "kiosk": server.token("kiosk", "kiosk-1"),
        "expert": server.token("expert", "expert-1"),
    }
    headers = {k: v.format(**tokens) for k, v in headers.items()}
    got, body, response = await _check(
        openapi, http, server, "/api/admin/queues", headers=headers, validate_request=False
    )
    assert got == status and response.content_type == "application/json"
    assert msgspec.json.decode(body)["code"] == code


# ---------------------------------------------------------------------------- WebSocket upgrade


_UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def test_websocket_upgrade(server: RunningServer, openapi: OpenAPI, http: Any) -> None:
    async with http.get(server.ws_url.replace("ws://", "http://"), headers=_UPGRADE) as response:
        status, headers = response.status, dict(response.headers)
        response.close()
    request = MockRequest(server.url, "get", "/ws", headers=_UPGRADE)
    openapi.validate_request(request)
    openapi.validate_response(request, MockResponse(b"", status_code=status, headers=headers))
    assert status == 101 and headers["Upgrade"].lower() == "websocket"


async def test_websocket_refuses_foreign_origin(
    server: RunningServer, openapi: OpenAPI, http: Any
) -> None:
    headers = {**_UPGRADE, "Origin": "https://evil.example"}
    status, body, _ = await _check(openapi, http, server, "/ws", headers=headers)
    assert status == 403
    assert msgspec.json.decode(body) == {
        "code": "forbidden_origin",
        "reason": "this origin may not connect",
    }


async def test_websocket_refuses_plain_get(
    server: RunningServer, openapi: OpenAPI, http: Any
) -> None:
    status, body, _ = await _check(openapi, http, server, "/ws", validate_request=False)
    assert status == 400 and msgspec.json.decode(body)["code"] == "bad_request"
