"""What the cache manager needs of a storage backend, and how a backend reports failure."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from tunegate._policy.freshness import CacheEntry

__all__ = ["BackendError", "CacheBackend", "WarnEvery"]


class BackendError(Exception):
    """A backend could not serve one operation (Redis down, SQLite locked or unreadable, a
    corrupt entry). Internal: the manager counts it, fails open, and never lets it escape."""


class WarnEvery:
    """At most one warning every ``seconds`` to ``log``: a failing backend must not log once
    per call (what the warnings hold back is counted in the cache's stats)."""

    def __init__(self, log: logging.Logger, seconds: float = 60.0) -> None:
        self._log = log
        self._seconds = seconds
        self._last = -seconds

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self._seconds:
            self._last = now
            self._log.warning(message, *args)


class CacheBackend(Protocol):
    """Storage for entries under full keys. Backends keep what the manager gives them and
    never judge freshness, except to let storage drop entries past ``stale_until``.

    Every operation comes as a blocking method and an ``a``-prefixed awaitable one; a
    backend writes each operation once and lets the pair drive it (see ``redisbackend``).
    An async method must not block the event loop on I/O or on a lock."""

    name: str

    def get(self, key: str) -> CacheEntry | None: ...

    async def aget(self, key: str) -> CacheEntry | None: ...

    def put(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        """Store ``entry``; ``payload`` is its value as orjson bytes (the stored form for
        persistent backends, the size measure for the memory one)."""

    async def aput(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None: ...

    def delete(self, key: str) -> int: ...

    async def adelete(self, key: str) -> int: ...

    def delete_matching(self, pattern: str) -> int:
        """Delete every key matching the full (prefixed) Redis-style glob ``pattern``."""

    async def adelete_matching(self, pattern: str) -> int: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...
