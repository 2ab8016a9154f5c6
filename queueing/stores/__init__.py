"""Queue store implementations: in memory (tests), local files (the embedded default)."""

from .file import FileQueueStore
from .memory import MemoryQueueStore

__all__ = ["FileQueueStore", "MemoryQueueStore"]
