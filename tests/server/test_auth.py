"""Tokens from an organisation's identity provider: RS256 and ES256 keys from a JWKS URL."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support import JsonClient, RunningServer, start_server, write_test_config


def public_jwk(key: Any, kid: str, algorithm: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(
        jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(key.public_key())
    )
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


@pytest.fixture
async def identity_provider() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A JWKS endpoint on loopback with one RSA and one EC signing key."""
    keys = {
        "rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec-1": ec.generate_private_key(ec.SECP256R1()),
    }
    document = {
        "keys": [
            public_jwk(keys["rsa-1"], "rsa-1", "RS256"),
            public_jwk(keys["ec-1"], "ec-1", "ES256"),
        ]
    }

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/.well-known/jwks.json", keys
    await runner.cleanup()


@pytest.fixture
async def idp_server(
    tmp_path: Path, identity_provider: tuple[str, dict[str, Any]]
) -> AsyncIterator[RunningServer]:
    url, _keys = identity_provider
    config = write_test_config(tmp_path)
    text = config.read_text().replace(
        'algorithms = ["HS256"]',
        f'algorithms = ["RS256", "ES256"]\njwks_url = "{url}"\nissuer = "https://idp.example"',
    )
    config.write_text(text)
    running = await start_server(config)
    yield running
    await running.stop()


def signed(key: Any, kid: str, algorithm: str, **claims: Any) -> str:
    payload = {
        "sub": "expert-1",
        "role": "expert",
        "partner": "caf",
        "services": ["caf"],
        "iss": "https://idp.example",
        "exp": int(time.time()) + 600,
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


@pytest.mark.parametrize(("kid", "algorithm"), [("rsa-1", "RS256"), ("ec-1", "ES256")])
async def test_identity_provider_tokens_are_accepted(
    idp_server: RunningServer,
    identity_provider: tuple[str, dict[str, Any]],
    kid: str,
    algorithm: str,
) -> None:
    _url, keys = identity_provider
    client = await JsonClient.connect(idp_server.ws_url)
    try:
        welcome = await client.hello(signed(keys[kid], kid, algorithm))
        assert welcome["type"] == "welcome" and welcome["identity"] == "expert-1"
        assert [s["id"] for s in welcome["services"]] == ["caf"]
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("token_of", "words"),
    [
        (
            lambda keys: signed(
                rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-1", "RS256"
            ),
            "not valid",
        ),
        (lambda keys: signed(keys["rsa-1"], "rsa-9", "RS256"), "no key"),
        (
            lambda keys: signed(keys["rsa-1"], "rsa-1", "RS256", iss="https://other.example"),
            "not valid",
        ),
        (
            lambda keys: jwt.encode(
                {"sub": "x", "role": "admin", "exp": int(time.time()) + 60},
                "s" * 40,
                algorithm="HS256",
            ),
            "not allowed",
        ),
        (lambda keys: signed(keys["ec-1"], "rsa-1", "ES256"), "does not fit"),
        (lambda keys: signed(keys["rsa-1"], "ec-1", "RS256"), "does not fit"),
    ],
    ids=[
        "foreign-key",
        "unknown-kid",
        "wrong-issuer",
        "hs256-not-allowed",
        "ec-signed-names-an-rsa-key",
        "rsa-signed-names-an-ec-key",
    ],
)
async def test_identity_provider_mode_refuses_other_tokens(
    idp_server: RunningServer,
    identity_provider: tuple[str, dict[str, Any]],
    token_of: Any,
    words: str,
) -> None:
    _url, keys = identity_provider
    client = await JsonClient.connect(idp_server.ws_url)
    try:
        reply = await client.hello(token_of(keys))
        assert reply["code"] == "not_authenticated" and words in reply["reason"], reply
    finally:
        await client.close()
