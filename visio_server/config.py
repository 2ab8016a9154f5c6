"""Configuration: one frozen tree read from TOML, then overlaid by ``VISIO_*`` variables.

Rules this module keeps:

1. Unknown keys are refused with the path of the key, never ignored.
2. ``VISIO_<SECTION>__<KEY>=value`` overrides ``[section] key`` (for example
   ``VISIO_SERVER__PORT=9000``); the value is read as a TOML value when it parses as
   one (numbers, booleans, ``["a", "b"]``), otherwise as a string.
3. Without a file, the packaged example configuration is used: it runs one site
   with no Redis and no other service to install.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from queueing import (
    ALWAYS_OPEN,
    KioskId,
    KioskSpec,
    OpeningHours,
    QueueSettings,
    ServiceId,
    ServiceSpec,
    Strategy,
    parse_interval,
)

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "DocumentsConfig",
    "ExpertEntry",
    "KioskEntry",
    "MediaConfig",
    "QueueConfig",
    "RedisConfig",
    "ServerConfig",
    "ServiceEntry",
    "StorageConfig",
    "effective_config",
    "load_config",
]

ENV_PREFIX = "VISIO_"
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# ``(?![\s\S])`` ends a pattern: ``$`` would let a trailing newline through.
Identifier = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}(?![\s\S])")]
Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key at fault."""


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    public_url: str = ""
    """Address people open in a browser, when it differs from http://host:port."""
    allowed_origins: list[str] = []
    """Browser origins allowed to open the WebSocket besides the server's own."""
    max_frame_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 65_536
    rate_per_s: Positive = 50.0
    rate_burst: Annotated[int, msgspec.Meta(ge=1)] = 100
    outbound_queue: Annotated[int, msgspec.Meta(ge=8)] = 512
    heartbeat_s: Positive = 10.0
    hello_timeout_s: Positive = 10.0


class AuthConfig(_Section, frozen=True):
    algorithms: list[Literal["HS256", "HS384", "HS512", "RS256", "ES256"]] = msgspec.field(
        default_factory=lambda: ["HS256"]
    )
    hs256_secret: str = ""
    """Shared secret for HS* tokens (single site); at least 32 bytes."""
    jwks_url: str = ""
    """JWKS of the organisation's identity provider, for RS256/ES256 tokens."""
    issuer: str = ""
    audience: str = ""
    leeway_s: NonNegative = 30.0
    dev_token_ttl_s: Positive = 12 * 3600.0


class StorageConfig(_Section, frozen=True):
    backend: Literal["file", "memory"] = "file"
    data_dir: str = "var/visio"
    fsync: bool = False
    snapshot_every: Annotated[int, msgspec.Meta(ge=10)] = 1000


class RedisConfig(_Section, frozen=True):
    url: str = ""
    """Empty: one node with its own store. ``redis://host:port/db`` (or ``rediss://``,
    ``unix://``, ``redis+sentinel://h1:26379,h2:26379/master``): several nodes share the
    queue, presence and message bus there."""
    prefix: Identifier = "visio"
    """Key prefix, so that several deployments may share one Redis."""
    node_id: Annotated[
        str, msgspec.Meta(pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?(?![\s\S])")
    ] = ""
    """This node's name in the cluster (default: host name and process id). A node that
    restarts under the same name releases what it held at once."""
    heartbeat_s: Positive = 1.0
    node_cutoff_s: Positive = 5.0
    """A node silent for this long is dead: its parties are lost as if they dropped."""
    journal_keep: Annotated[int, msgspec.Meta(ge=1000)] = 100_000


class QueueConfig(_Section, frozen=True):
    kiosk_grace_s: NonNegative = 60.0
    expert_grace_s: NonNegative = 5.0
    restart_grace_s: NonNegative = 60.0
    decline_cooldown_s: NonNegative = 60.0
    estimate_refresh_s: NonNegative = 2.0


class MediaConfig(_Section, frozen=True):
    mode: Literal["p2p", "relay"] = "p2p"
    stun_urls: list[str] = []
    turn_urls: list[str] = []
    turn_secret: str = ""
    turn_ttl_s: Positive = 3600.0
    kiosk_uplink_kbps: Annotated[int, msgspec.Meta(ge=64, le=100_000)] = 512
    """What a kiosk may send in all, shared by its outgoing connections (audio first):
    512 kbit/s is the published minimum link of these kiosks."""


class DocumentsConfig(_Section, frozen=True):
    """Remote scanning and printing: the documents of each call's case file."""

    max_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 20 * 1024 * 1024
    """Largest upload; a larger body is refused (413) before it is read whole."""
    retention_days: Positive = 30.0
    """Documents are deleted this long after they were received."""
    command_timeout_s: Positive = 120.0
    """A scan or print command that reports no progress for this long has timed out."""
    upload_kbps: Annotated[int, msgspec.Meta(ge=16, le=100_000)] = 160
    """What the kiosk's agent may use of the kiosk's uplink to upload during a call."""
    shared_dir: str = ""
    """Folder of the documents that every node mounts (several nodes with Redis);
    empty: ``<storage.data_dir>/documents``."""
    export: Literal["directory", "http", "none"] = "directory"
    """Where accepted documents go: a folder, the partner's HTTP endpoint, or nowhere."""
    export_dir: str = ""
    """Folder of the directory exporter; empty: ``<storage.data_dir>/export``."""
    export_url: str = ""
    """Endpoint of the HTTP exporter (a multipart POST per document)."""
    export_secret: str = ""
    """Sent to ``export_url`` as ``Authorization: Bearer <export_secret>`` when set."""
    export_max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 12
    """Failed attempts after which each further failure is logged as an ERROR for the
    operator; the exporter never gives up a document."""
    export_backoff_s: Positive = 10.0
    """Wait before the second attempt; doubled at each failure, with jitter."""
    export_backoff_max_s: Positive = 3600.0
    export_timeout_s: Positive = 30.0
    scan_interval_s: Positive = 60.0
    """How often a node reads every case file with work left (a command's deadline, an
    export, a purge): it learns its own work as it goes; this finds what others left."""


class ServiceEntry(_Section, frozen=True):
    id: Identifier
    name: str
    partner: Identifier
    timezone: str = "Europe/Paris"
    always_open: bool = False
    hours: dict[str, list[str]] = {}
    holidays: list[str] = []
    strategy: Literal["longest-idle", "fewest-calls", "round-robin", "ring-all"] = "longest-idle"
    max_wait_s: Positive = 1800.0
    max_waiting: Annotated[int, msgspec.Meta(ge=1)] = 200
    service_level_s: Positive = 120.0
    short_abandon_s: NonNegative = 10.0
    offer_timeout_s: Positive = 20.0
    wrap_up_s: Positive = 120.0
    beneficiary_label: str = "Numéro d'allocataire"
    beneficiary_pattern: str | None = None
    beneficiary_hint: str = ""
    languages: list[str] = msgspec.field(default_factory=lambda: ["fr"])
    interpreter: bool = False
    """Callers of this service may ask for an interpreter (the expert always may)."""
    interpreting: bool = False
    """Its experts are interpreters who join other services' calls in its ``languages``."""
    rtt_transcript: bool = False
    """Keep the finished lines of real-time text of its calls in the event log."""
    visit_reasons: list[str] = msgspec.field(
        default_factory=lambda: ["Information", "Dossier en cours", "Autre"]
    )
    expected_handle_s: Positive = 600.0
    case_per_beneficiary: bool = False
    """One case file per beneficiary number, reused across its calls, instead of one
    per call."""

    def opening_hours(self) -> OpeningHours:
        if self.always_open:
            return ALWAYS_OPEN
        unknown = set(self.hours) - set(_WEEKDAYS)
        if unknown:
            raise ConfigError(f"services.{self.id}.hours: unknown day(s) {sorted(unknown)}")
        try:
            weekly = tuple(
                tuple(parse_interval(text) for text in self.hours.get(day, [])) for day in _WEEKDAYS
            )
            holidays = frozenset(date.fromisoformat(d) for d in self.holidays)
            return OpeningHours(self.timezone, weekly, holidays)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"services.{self.id}: {exc}") from None

    def spec(self) -> ServiceSpec:
        try:
            return ServiceSpec(
                id=ServiceId(self.id),
                name=self.name,
                partner=self.partner,
                hours=self.opening_hours(),
                strategy=Strategy(self.strategy),
                max_wait_s=self.max_wait_s,
                max_waiting=self.max_waiting,
                service_level_s=self.service_level_s,
                short_abandon_s=self.short_abandon_s,
                offer_timeout_s=self.offer_timeout_s,
                wrap_up_s=self.wrap_up_s,
                beneficiary_label=self.beneficiary_label,
                beneficiary_pattern=self.beneficiary_pattern,
                beneficiary_hint=self.beneficiary_hint,
                languages=tuple(self.languages),
                interpreter=self.interpreter,
                interpreting=self.interpreting,
                rtt_transcript=self.rtt_transcript,
                visit_reasons=tuple(self.visit_reasons),
                expected_handle_s=self.expected_handle_s,
            )
        except ValueError as exc:
            raise ConfigError(f"services.{self.id}: {exc}") from None


class KioskEntry(_Section, frozen=True):
    id: Identifier
    name: str
    place: str
    services: list[Identifier]
    priority: int = 0

    def spec(self) -> KioskSpec:
        return KioskSpec(
            KioskId(self.id),
            self.name,
            self.place,
            tuple(ServiceId(s) for s in self.services),
            self.priority,
        )


class ExpertEntry(_Section, frozen=True):
    """A known expert: used to mint development tokens and to show names."""

    id: Identifier
    name: str
    partner: Identifier
    services: list[Identifier]
    languages: list[str] = msgspec.field(default_factory=lambda: ["fr"])
    role: Literal["expert", "interpreter"] = "expert"


class AdminEntry(_Section, frozen=True):
    id: Identifier
    name: str
    role: Literal["admin", "supervisor"] = "admin"
    partner: str = ""
    """A supervisor sees only the services of this partner."""


class Config(_Section, frozen=True):
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    storage: StorageConfig = StorageConfig()
    redis: RedisConfig = RedisConfig()
    queue: QueueConfig = QueueConfig()
    media: MediaConfig = MediaConfig()
    documents: DocumentsConfig = DocumentsConfig()
    services: list[ServiceEntry] = []
    kiosks: list[KioskEntry] = []
    experts: list[ExpertEntry] = []
    admins: list[AdminEntry] = []
    source: str = ""
    """Where the configuration was read from (set by ``load_config``)."""

    def service_specs(self) -> list[ServiceSpec]:
        return [s.spec() for s in self.services]

    def kiosk_specs(self) -> list[KioskSpec]:
        return [k.spec() for k in self.kiosks]

    def queue_settings(self) -> QueueSettings:
        q = self.queue
        return QueueSettings(
            kiosk_grace_s=q.kiosk_grace_s,
            expert_grace_s=q.expert_grace_s,
            restart_grace_s=q.restart_grace_s,
            decline_cooldown_s=q.decline_cooldown_s,
        )

    def service(self, service_id: str) -> ServiceEntry | None:
        return next((s for s in self.services if s.id == service_id), None)

    def kiosk(self, kiosk_id: str) -> KioskEntry | None:
        return next((k for k in self.kiosks if k.id == kiosk_id), None)

    def expert(self, expert_id: str) -> ExpertEntry | None:
        return next((e for e in self.experts if e.id == expert_id), None)


def example_config_text() -> str:
    return resources.files("visio_server").joinpath("example_config.toml").read_text("utf-8")


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Read, overlay and check the configuration; raise ``ConfigError`` if unusable."""
    if path is None:
        text, source = example_config_text(), "example configuration (built in)"
    else:
        try:
            text, source = Path(path).read_text("utf-8"), str(path)
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    _overlay_env(raw, os.environ if env is None else env)
    raw["source"] = source
    try:
        config = msgspec.convert(raw, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _check(config)
    return config


def _overlay_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    sections = {"server", "auth", "storage", "redis", "queue", "media", "documents"}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section not in sections:
            raise ConfigError(f"{name}: unknown section {section!r} (one of {sorted(sections)})")
        raw.setdefault(section, {})[key] = _env_value(value)


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")


def _check(config: Config) -> None:
    services = [s.id for s in config.services]
    for kind, ids in (
        ("services", services),
        ("kiosks", [k.id for k in config.kiosks]),
        ("experts", [e.id for e in config.experts]),
    ):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ConfigError(f"{kind}: duplicate id(s) {duplicates}")
    for service in config.services:
        service.spec()
    for kiosk in config.kiosks:
        unknown = sorted(set(kiosk.services) - set(services))
        if unknown:
            raise ConfigError(f"kiosks.{kiosk.id}.services: unknown service(s) {unknown}")
    for expert in config.experts:
        unknown = sorted(set(expert.services) - set(services))
        if unknown:
            raise ConfigError(f"experts.{expert.id}.services: unknown service(s) {unknown}")
    auth = config.auth
    if any(a.startswith("HS") for a in auth.algorithms) and len(auth.hs256_secret) < 32:
        raise ConfigError("auth.hs256_secret: HS* tokens need a secret of at least 32 bytes")
    if any(a[:2] in ("RS", "ES") for a in auth.algorithms) and not auth.jwks_url:
        raise ConfigError("auth.jwks_url: RS256/ES256 tokens need the identity provider's JWKS URL")
    redis = config.redis
    if redis.url and urlsplit(redis.url).scheme not in _REDIS_SCHEMES:
        raise ConfigError("redis.url: expected redis://, rediss://, unix:// or redis+sentinel://")
    if redis.node_cutoff_s < 2 * redis.heartbeat_s:
        raise ConfigError("redis.node_cutoff_s: must be at least twice redis.heartbeat_s")
    if config.media.turn_urls and not config.media.turn_secret:
        raise ConfigError("media.turn_secret: TURN URLs need the shared secret of the TURN server")
    documents = config.documents
    if documents.export == "http" and urlsplit(documents.export_url).scheme not in _HTTP:
        raise ConfigError("documents.export_url: the HTTP exporter needs an http(s):// URL")
    if documents.export_backoff_max_s < documents.export_backoff_s:
        raise ConfigError("documents.export_backoff_max_s: must be at least export_backoff_s")


_HTTP = ("http", "https")


def effective_config(config: Config) -> dict[str, Any]:
    """The configuration as plain data with every secret hidden, for ``check-config``."""
    data: dict[str, Any] = msgspec.to_builtins(config)
    for section in data.values():
        if isinstance(section, dict):
            for key in section:
                if "secret" in key and section[key]:
                    section[key] = "***"
    return data
