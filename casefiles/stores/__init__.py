"""Case-file stores: in memory, local files (the embedded default), shared Redis. The
Redis one (``casefiles.stores.redis_store.RedisCaseStore``) is imported by name only
where it is configured, so that the embedded default never loads the Redis client."""

from .file import FileCaseStore
from .memory import MemoryCaseStore

__all__ = ["FileCaseStore", "MemoryCaseStore"]
