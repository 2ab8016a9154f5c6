"""Typed keys of the application state."""

from __future__ import annotations

from aiohttp import web

from .auth import Authenticator
from .calls import Desk
from .config import Config
from .documents.service import Documents
from .edge import Edge
from .metrics import Metrics

__all__ = ["AUTH", "CONFIG", "DESK", "DOCUMENTS", "EDGE", "METRICS"]

CONFIG = web.AppKey("config", Config)
DESK = web.AppKey("desk", Desk)
EDGE = web.AppKey("edge", Edge)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
DOCUMENTS = web.AppKey("documents", Documents)
