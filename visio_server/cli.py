"""``visio-server``: serve, mint development tokens, show queues, check a configuration."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
from aiohttp import web

from .app import create_app, make_store, node_name
from .auth import ROLES, mint_token
from .config import Config, ConfigError, RedisConfig, effective_config, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visio-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML file (default: the built-in example)")
    serve.add_argument("--host", help="address to listen on (default from config)")
    serve.add_argument("--port", type=int, help="port to listen on (default from config)")
    serve.add_argument(
        "--redis-url", help="share the queue with other nodes through this Redis (redis.url)"
    )
    serve.add_argument("--node-id", help="this node's name in the cluster (redis.node_id)")
    serve.add_argument("--quiet-tokens", action="store_true", help="do not print tokens at start")

    token = sub.add_parser("token", help="mint a development JWT")
    token.add_argument("--config")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument(
        "--sub", required=True, help="kiosk id (kiosk or device), expert id or admin id"
    )
    token.add_argument("--name")
    token.add_argument("--partner")
    token.add_argument("--services", help="comma-separated service ids (experts)")
    token.add_argument("--ttl", type=float, help="lifetime in seconds")

    queue = sub.add_parser("queue", help="queue commands")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True)
    show = queue_sub.add_parser("show", help="print each service's queue, live")
    show.add_argument("--config")
    show.add_argument("--server", help="base URL (default: from config)")

    events = sub.add_parser(
        "events", help="print the event log as JSON lines (file store or Redis)"
    )
    events.add_argument("--config")
    events.add_argument("--redis-url", help="read the event log of this Redis (redis.url)")
    events.add_argument("--since", help="ISO 8601 date or time (UTC unless it says)")
    events.add_argument("--until", help="ISO 8601 date or time, excluded")

    check = sub.add_parser("check-config", help="validate and print the effective configuration")
    check.add_argument("--config")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    match args.command:
        case "serve":
            return _serve(config, args)
        case "token":
            return _token(config, args)
        case "queue":
            return asyncio.run(_queue_show(config, args.server))
        case "events":
            return asyncio.run(_events(config, args))
        case "check-config":
            print(json.dumps(effective_config(config), indent=2, ensure_ascii=False))
            print(f"configuration OK ({config.source})", file=sys.stderr)
            return 0
    return 2


def _with_redis(config: Config, url: str | None, node_id: str | None = None) -> Config:
    """The configuration with the command line's ``--redis-url``/``--node-id``."""
    if not url and not node_id:
        return config
    wanted = msgspec.to_builtins(config.redis) | {
        "url": url or config.redis.url,
        "node_id": node_id or config.redis.node_id,
    }
    try:
        redis = msgspec.convert(wanted, RedisConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"redis: {exc}") from None
    return msgspec.structs.replace(config, redis=redis)


async def _events(config: Config, args: argparse.Namespace) -> int:
    try:
        config = _with_redis(config, args.redis_url)
        since, until = _instant(args.since, "--since"), _instant(args.until, "--until")
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    cluster = None
    if config.redis.url:
        from .cluster import Cluster  # the embedded default does without the Redis client

        cluster = Cluster(config)
    store = cluster.store if cluster else make_store(config)
    try:
        rows = await store.read_events(since, until)
    except Exception as exc:  # a file or Redis that cannot be read: say which, not a trace
        print(f"cannot read the event log: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()
        if cluster is not None:
            await cluster.client.aclose()
    for row in rows:
        print(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    return 0


def _instant(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option}: not an ISO 8601 date or time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def _base_url(config: Config, host: str | None = None, port: int | None = None) -> str:
    if config.server.public_url:
        return config.server.public_url.rstrip("/")
    shown = host or config.server.host
    if shown in ("0.0.0.0", "::", ""):
        shown = "127.0.0.1"
    return f"http://{shown}:{port or config.server.port}"


def _serve(config: Config, args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = _with_redis(config, args.redis_url, args.node_id)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    base = _base_url(config, host, port)
    print(f"visio-guichet serving with {config.source}")
    if config.redis.url:
        print(f"  shared queue    {_hide_password(config.redis.url)} as node {node_name(config)}")
    print(f"  kiosk page      {base}/kiosk")
    print(f"  expert console  {base}/expert")
    print(f"  interpreter     {base}/interpreter")
    print(f"  admin page      {base}/admin")
    print(f"  metrics         {base}/metrics")
    if not args.quiet_tokens and config.auth.hs256_secret:
        print("Paste one of these development tokens into a page (valid 12 hours):")
        for label, token in _sample_tokens(config):
            print(f"  {label}:\n    {token}")
        print("More: visio-server token --role expert --sub <id>  (ids are in the configuration)")
    web.run_app(create_app(config), host=host, port=port, print=None)
    return 0


def _sample_tokens(config: Config) -> list[tuple[str, str]]:
    samples = []
    if config.kiosks:
        kiosk = config.kiosks[0]
        samples.append((f"kiosk {kiosk.id}", mint_token(config, "kiosk", kiosk.id)))
        samples.append(
            (
                f"device agent of {kiosk.id} (visio-kiosk-agent --token ...)",
                mint_token(config, "device", kiosk.id),
            )
        )
    always_open = {s.id for s in config.services if s.always_open}
    experts = [e for e in config.experts if e.role == "expert"][:1]
    interpreters = [e for e in config.experts if e.role == "interpreter"]
    # An interpreter who can be asked for at any hour lets a newcomer try a three-party call.
    interpreters.sort(key=lambda e: not always_open.intersection(e.services))
    for expert in experts + interpreters[:1]:
        samples.append(
            (
                f"{expert.role} {expert.id} ({', '.join(expert.services)})",
                _expert_token(config, expert.id),
            )
        )
    for role in ("admin", "supervisor"):
        admin = next((a for a in config.admins if a.role == role), None)
        if admin is not None:
            token = mint_token(config, admin.role, admin.id, name=admin.name, partner=admin.partner)
            label = f"{admin.role} {admin.id}" + (f" ({admin.partner})" if admin.partner else "")
            samples.append((label, token))
    return samples


def _expert_token(config: Config, expert_id: str) -> str:
    expert = config.expert(expert_id)
    assert expert is not None
    return mint_token(
        config,
        expert.role,
        expert.id,
        name=expert.name,
        partner=expert.partner,
        services=list(expert.services),
        languages=list(expert.languages),
    )


def _token(config: Config, args: argparse.Namespace) -> int:
    claims: dict[str, Any] = {}
    known = config.expert(args.sub)
    if args.role in ("expert", "interpreter") and known is not None:
        claims.update(
            name=known.name,
            partner=known.partner,
            services=list(known.services),
            languages=list(known.languages),
        )
    admin = next((a for a in config.admins if a.id == args.sub), None)
    if args.role in ("admin", "supervisor") and admin is not None:
        claims.update(name=admin.name, partner=admin.partner)
    if args.role in ("kiosk", "device") and config.kiosk(args.sub) is None:
        print(
            f"warning: kiosk {args.sub!r} is not in the configuration; the server will refuse it",
            file=sys.stderr,
        )
    if args.name:
        claims["name"] = args.name
    if args.partner:
        claims["partner"] = args.partner
    if args.services:
        claims["services"] = [s.strip() for s in args.services.split(",") if s.strip()]
    try:
        print(mint_token(config, args.role, args.sub, ttl_s=args.ttl, **claims))
    except ValueError as exc:
        print(f"cannot mint a token: {exc}", file=sys.stderr)
        return 2
    return 0


async def _queue_show(config: Config, server: str | None) -> int:
    base = (server or _base_url(config)).rstrip("/")
    admin = next((a for a in config.admins if a.role == "admin"), None)
    token = mint_token(config, "admin", admin.id if admin else "cli")
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{base}/api/admin/queues", headers={"Authorization": f"Bearer {token}"}
            ) as response,
        ):
            body = await response.json()
            if response.status != 200:
                print(f"{base}: {body.get('code')}: {body.get('reason')}", file=sys.stderr)
                return 1
    except aiohttp.ClientError as exc:
        print(f"cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    specs = {s.id: s for s in config.services}
    for row in body["services"]:
        spec = specs.get(row["service"])
        strategy = spec.strategy if spec else "?"
        limit = spec.max_waiting if spec else "?"
        queued = row["waiting"] + row["offered"]
        print(
            f"{row['service']} ({row['name']}) has {queued} calls (max {limit}) "
            f"in '{strategy}' strategy, {row['connected']} connected, "
            f"oldest wait {_mmss(row['oldest_wait_s'])}, "
            f"{'open' if row['open'] else 'closed'}"
        )
        experts = row["experts"]
        print(
            "   Experts: "
            + ", ".join(f"{experts.get(state, 0)} {label}" for state, label in _STATE_LABELS)
        )
    return 0


_STATE_LABELS = (
    ("idle", "idle"),
    ("break", "on break"),
    ("offered", "ringing"),
    ("in_call", "in call"),
    ("wrap_up", "in wrap-up"),
    ("away", "away"),
)


def _mmss(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


if __name__ == "__main__":
    raise SystemExit(main())
