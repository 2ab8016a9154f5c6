"""Queue store implementations: in memory (tests), local files (the embedded default),
Redis (several nodes). The Redis one is imported by name only where it is configured,
so that the embedded default never loads the Redis client."""

from .file import FileQueueStore
from .memory import MemoryQueueStore

__all__ = ["FileQueueStore", "MemoryQueueStore"]
