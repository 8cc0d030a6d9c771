"""The in-process backend: a bounded LRU (by entries and by bytes) of frozen entries.

A hit is one locked ``OrderedDict`` lookup and move: the stored :class:`CacheEntry` (whose
value is frozen) is returned as is, with no copy and no decode. Written by hand rather than
on ``functools.lru_cache`` or cachetools: neither bounds by bytes nor lets us keep entries
past their TTL for stale-if-error.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import compile_glob
from tunegate.exceptions import ConfigurationError

__all__ = ["MemoryBackend"]

# Rough per-entry bookkeeping cost on top of the encoded value and the key.
_ENTRY_OVERHEAD = 200
_DELETE_BATCH = 1000


class MemoryBackend:
    """Entries of this process only. ``max_bytes`` counts each value's encoded (orjson) size
    plus its key: a proxy for memory use, which is a few times larger for Python objects."""

    name = "memory"

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        if not (isinstance(max_entries, int) and max_entries > 0):
            raise ConfigurationError(f"max_entries must be an int > 0, got {max_entries!r}")
        if not (isinstance(max_bytes, int) and max_bytes > 0):
            raise ConfigurationError(f"max_bytes must be an int > 0, got {max_bytes!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, CacheEntry] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is not None:
                self._data.move_to_end(key)
        return entry

    async def aget(self, key: str) -> CacheEntry | None:
        return self.get(key)

    def put(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        size = len(payload) + len(key) + _ENTRY_OVERHEAD
        data, sizes = self._data, self._sizes
        with self._lock:
            old = sizes.pop(key, None)
            if old is not None:
                self._bytes -= old
                del data[key]
            if size > self.max_bytes:
                return  # too big to ever fit; the old value is gone, so nothing stale lingers
            data[key] = entry
            sizes[key] = size
            self._bytes += size
            # Evict least recently used; amortised one eviction per insert.
            while len(data) > self.max_entries or self._bytes > self.max_bytes:
                evicted, _ = data.popitem(last=False)
                self._bytes -= sizes.pop(evicted)

    async def aput(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        self.put(key, entry, payload, now)

    def delete(self, key: str) -> int:
        with self._lock:
            size = self._sizes.pop(key, None)
            if size is None:
                return 0
            self._bytes -= size
            del self._data[key]
            return 1

    async def adelete(self, key: str) -> int:
        return self.delete(key)

    def delete_matching(self, pattern: str) -> int:
        match = compile_glob(pattern).match
        with self._lock:
            keys = list(self._data)  # one C-level copy; matching happens outside the lock
        doomed = [k for k in keys if match(k.encode("utf-8", "surrogatepass"))]
        deleted = 0
        for start in range(0, len(doomed), _DELETE_BATCH):
            with self._lock:
                for key in doomed[start : start + _DELETE_BATCH]:
                    size = self._sizes.pop(key, None)
                    if size is not None:
                        self._bytes -= size
                        del self._data[key]
                        deleted += 1
        return deleted

    async def adelete_matching(self, pattern: str) -> int:
        return self.delete_matching(pattern)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._sizes.clear()
            self._bytes = 0

    def close(self) -> None:
        self.clear()

    async def aclose(self) -> None:
        self.close()
