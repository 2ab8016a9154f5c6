"""visio-guichet server: configuration, call control, WebSocket edge, HTTP API, metrics."""

from .app import create_app
from .config import Config, ConfigError, load_config

__all__ = ["Config", "ConfigError", "create_app", "load_config"]
