"""The in-process backend: a bounded LRU (by entries and by bytes) of frozen entries.

A hit is one locked ``OrderedDict`` lookup and move: the stored :class:`CacheEntry` (whose
value is frozen) is returned as is, with no copy and no decode. Written by hand rather than
on ``functools.lru_cache`` or cachetools: neither bounds by bytes nor lets us keep entries
past their TTL for stale-if-error.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any

from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import compile_glob
from tunegate.exceptions import ConfigurationError

__all__ = ["MemoryBackend"]

# Per-entry bookkeeping on top of the value and the key: the CacheEntry, its OrderedDict
# node and slot, and the size-table slot (about 207 B measured with tracemalloc, CPython 3.11).
_ENTRY_OVERHEAD = 200
_DELETE_BATCH = 1000


def resident_size(value: Any) -> int:
    """Bytes the decoded value occupies in this process: ``sys.getsizeof`` summed over every
    object reachable through dicts and lists, each object once. The decoded (frozen) form is
    several times its JSON, so counting the JSON would let ``max_bytes`` overshoot RSS."""
    seen: set[int] = set()
    total = 0
    stack = [value]
    getsizeof = sys.getsizeof
    while stack:
        obj = stack.pop()
        ident = id(obj)
        if ident in seen:
            continue
        seen.add(ident)
        total += getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple):
            stack.extend(obj)
    return total


class MemoryBackend:
    """Entries of this process only. ``max_bytes`` counts what each entry keeps resident: the
    decoded value's objects (:func:`resident_size`), the key and a fixed per-entry overhead."""

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
        # No lock: each OrderedDict call is one C call on a str key, atomic under the GIL,
        # and writers change the entries and their sizes only under the lock. A key a
        # writer removes between the two calls just misses its LRU touch.
        data = self._data
        entry = data.get(key)
        if entry is not None:
            try:
                data.move_to_end(key)
            except KeyError:  # removed since the get (contextlib.suppress costs more)
                return entry
        return entry

    async def aget(self, key: str) -> CacheEntry | None:
        return self.get(key)

    def put(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        size = resident_size(entry.value) + sys.getsizeof(key) + _ENTRY_OVERHEAD
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
