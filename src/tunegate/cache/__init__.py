"""The response cache: :class:`CacheManager` over a memory, SQLite or Redis backend.

See ``docs/caching.md`` for how to pick a backend, the key scheme, TTLs, negative caching
and stale-if-error.
"""

from __future__ import annotations

from tunegate._policy.freshness import CacheEntry
from tunegate.cache.frozen import FrozenDict, FrozenList, freeze, thaw
from tunegate.cache.manager import CacheManager
from tunegate.cache.memory import MemoryBackend
from tunegate.cache.redisbackend import RedisBackend
from tunegate.cache.sqlite import SqliteBackend, default_sqlite_path
from tunegate.providers.spec import DEFAULT_TTLS

__all__ = [
    "DEFAULT_TTLS",
    "CacheEntry",
    "CacheManager",
    "FrozenDict",
    "FrozenList",
    "MemoryBackend",
    "RedisBackend",
    "SqliteBackend",
    "default_sqlite_path",
    "freeze",
    "thaw",
]
