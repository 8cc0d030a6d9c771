"""The in-process backend: a bounded LRU (by entries and by bytes) of entries kept as their
JSON, with the hottest also kept decoded.

Every entry keeps its orjson bytes (the ``payload`` the manager encodes anyway): that is
what most of a big cache is made of, about the size a plain ``dict`` of the bodies takes.
The entries used most recently also keep their decoded, frozen value, within ``hot_bytes``:
a hit on one of them is a dict lookup and an LRU move, no lock, no copy and no decode (the
caller gets the very object the cache holds). A hit on a colder entry decodes its bytes
once (about an ``orjson.loads``) and makes it hot again; new entries start hot.

``max_bytes`` counts what is resident: each entry's bytes, key and bookkeeping, plus the
decoded objects of the hot ones (:func:`resident_size`), so the bound bounds memory.

Walking a decoded value for its size costs about as much as decoding it (~150 us of a
~166 us put for a search answer), so most puts estimate it instead: ``len(payload)`` times
a ratio learned per size class: the key's ``provider:type`` (a key of another shape: its
first two segments) and the payload's octave (its length's power of two), since the ratio
falls as bodies grow (fixed per-object overhead: a Spotify search answer of 0 tracks is
~7x its JSON, of 1 track 5x, of 10 tracks 3x), so one ratio per kind would be 40% low
after a run of long bodies and 60% high on a mix. Past :data:`_MAX_CLASSES` classes, new
shapes share one per octave. The ratio is the largest of the class's last 16 walks, so
estimates err high, and within an octave by little (search answers of 1 to 10 tracks,
mixed: totals within a few percent, the tests allow 10%). Walked, and measured exactly:
the first 8 puts of a class, then every 32nd (a shape that drifts is re-learned), every
payload under 256 B (cheap; not learned from, fixed overhead dominates there) and every
payload more than 1/8 longer than the longest walked in its class. Only hot entries'
decoded bytes are estimated, at most ``hot_bytes``; a promotion reuses the size its put
found (it never walked).

Readers take no lock (each ``OrderedDict`` call on a ``str`` key is one C call, atomic under
the GIL); writers (puts, promotions, evictions, deletes) take one. Written by hand rather
than on ``functools.lru_cache`` or cachetools: neither bounds by bytes nor lets us keep
entries past their TTL for stale-if-error.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from typing import Any, Final

from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import compile_glob, split_key
from tunegate.cache.frozen import decode
from tunegate.exceptions import ConfigurationError

__all__ = ["MemoryBackend", "resident_size"]

# Per-entry bookkeeping besides the key and the bytes: the slot, the entry (or its stand-in
# without a value) with its two stamps, the OrderedDict node and slot (about 300 B measured
# with tracemalloc, CPython 3.11); while hot, the decoded value's objects and a node in the
# hot order (about 100 B).
_ENTRY_OVERHEAD: Final = 300
_HOT_OVERHEAD: Final = 100
_BYTES_HEADER: Final = sys.getsizeof(b"")
_HOT_SHARE: Final = 4  # default hot_bytes: a quarter of max_bytes ...
_HOT_CAP: Final = 16 * 1024 * 1024  # ... at most 16 MiB
_DELETE_BATCH: Final = 1000
# Decoded-size estimates (module docstring): walks that open a class, then one in every
# _WALK_EVERY puts; the ratio is the max of the last _WINDOW walks.
_LEARN_FIRST: Final = 8
_WALK_EVERY: Final = 32
_WINDOW: Final = 16
_WALK_BELOW: Final = 256  # payloads shorter than this are always walked
_GROWTH: Final = 8  # walked if longer than the class's longest walked by more than 1/8
_MAX_CLASSES: Final = 1024  # then new shapes share "" per octave (keys are user data)

_COLD: Any = object()
"""The value of an entry whose decoded form is not kept: its slot's bytes are decoded."""


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
        # dict's and list's own iteration: a frozen value is measured as it is, not frozen
        # further on the way (see tunegate.cache.frozen: decoded values freeze lazily)
        if isinstance(obj, dict):
            stack.extend(dict.keys(obj))
            stack.extend(dict.values(obj))
        elif isinstance(obj, list):
            stack.extend(list.__iter__(obj))
        elif isinstance(obj, tuple):
            stack.extend(obj)
    return total


class _Slot:
    """One key's record. ``entry`` is the decoded entry while the key is hot, else a
    stand-in whose value is :data:`_COLD`; it is replaced whole, so a reader that took it
    holds one consistent entry."""

    __slots__ = ("decoded", "entry", "payload")

    def __init__(self, entry: CacheEntry, payload: bytes, decoded: int) -> None:
        self.entry = entry
        self.payload = payload
        self.decoded = decoded  # the bytes added while hot: decoded objects, hot node


class _SizeClass:
    """What a class of keys has learned of its decoded sizes (see the module docstring)."""

    __slots__ = ("longest", "puts", "ratio", "window")

    def __init__(self) -> None:
        self.puts = 0  # puts of at least _WALK_BELOW bytes
        self.longest = 0  # the longest payload walked
        self.ratio = 0.0  # max(window): decoded bytes per payload byte
        self.window: tuple[float, ...] = ()  # the last _WINDOW walks' ratios


class MemoryBackend:
    """Entries of this process only.

    Args:
        max_entries: at most this many entries (least recently used go first).
        max_bytes: at most this many resident bytes: every entry's JSON, key and
            bookkeeping, and the decoded objects of the hot ones.
        hot_bytes: at most this many of those bytes are decoded objects (default: a quarter
            of ``max_bytes``, at most 16 MiB); 0 keeps only the JSON, decoding every hit.
    """

    name = "memory"

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        hot_bytes: int | None = None,
    ) -> None:
        if not (isinstance(max_entries, int) and max_entries > 0):
            raise ConfigurationError(f"max_entries must be an int > 0, got {max_entries!r}")
        if not (isinstance(max_bytes, int) and max_bytes > 0):
            raise ConfigurationError(f"max_bytes must be an int > 0, got {max_bytes!r}")
        if hot_bytes is None:
            hot_bytes = min(max_bytes // _HOT_SHARE, _HOT_CAP)
        if not (isinstance(hot_bytes, int) and 0 <= hot_bytes <= max_bytes):
            raise ConfigurationError(
                f"hot_bytes must be an int from 0 to max_bytes, got {hot_bytes!r}"
            )
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hot_bytes = hot_bytes
        self._data: OrderedDict[str, _Slot] = OrderedDict()
        self._hot: OrderedDict[str, _Slot] = OrderedDict()  # the decoded ones, LRU first
        self._bytes = 0
        self._hot_total = 0
        self._lock = threading.Lock()
        self._classes: dict[tuple[str, int], _SizeClass] = {}

    def __len__(self) -> int:
        return len(self._data)

    @property
    def total_bytes(self) -> int:
        """The resident bytes accounted for, the hot entries' decoded objects included."""
        return self._bytes

    @property
    def hot_total(self) -> int:
        """The part of :attr:`total_bytes` that is decoded objects of hot entries."""
        return self._hot_total

    def get(self, key: str) -> CacheEntry | None:
        data = self._data
        slot = data.get(key)
        if slot is None:
            return None
        entry = slot.entry  # read once: a writer replaces it whole, never in part
        try:
            data.move_to_end(key)
            if entry.value is not _COLD:
                self._hot.move_to_end(key)
                return entry
        except KeyError:  # removed or cooled since the read: the entry taken is still whole
            if entry.value is not _COLD:
                return entry
        return self._decoded(key, slot, entry)

    async def aget(self, key: str) -> CacheEntry | None:
        return self.get(key)

    def _decoded(self, key: str, slot: _Slot, cold: CacheEntry) -> CacheEntry:
        """``cold``'s entry with its value decoded from the slot's bytes, kept hot when it
        fits (another thread may have promoted or replaced it meanwhile: then only served)."""
        entry = CacheEntry(
            decode(slot.payload),
            cold.negative,
            cold.stale,
            cold.provider,
            cold.kind,
            cold.fresh_until,
            cold.stale_until,
        )
        if (
            slot.decoded > self.hot_bytes
            or _cold_size(key, slot.payload) + slot.decoded > self.max_bytes
        ):
            return entry
        with self._lock:
            if self._data.get(key) is slot and slot.entry is cold:
                slot.entry = entry
                self._hot[key] = slot
                self._hot_total += slot.decoded
                self._bytes += slot.decoded
                self._shrink()
        return entry

    def put(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        # A right-sized copy: orjson's bytes keep their whole output buffer (4 KiB or the
        # next power of two; orjson 3.12+), several times their length, and so would we.
        payload = bytes(memoryview(payload))
        size = _cold_size(key, payload)
        decoded = self._decoded_size(key, entry.value, len(payload)) + _HOT_OVERHEAD
        hot = decoded <= self.hot_bytes and size + decoded <= self.max_bytes
        if not hot:
            entry = _cold(entry)
        with self._lock:
            if size > self.max_bytes:
                self._drop(key)
                return  # too big to ever fit; the old value is gone, so nothing stale lingers
            old = self._data.get(key)
            if old is not None:
                self._release(key, old)
            slot = _Slot(entry, payload, decoded)
            # Replaced in place, then moved: a reader (no lock) sees the old slot or the
            # new one, never no entry in between (a drop and insert lost hits under threads).
            self._data[key] = slot
            self._data.move_to_end(key)
            self._bytes += size
            if hot:
                self._hot[key] = slot
                self._hot_total += decoded
                self._bytes += decoded
            self._shrink()

    async def aput(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        self.put(key, entry, payload, now)

    def _decoded_size(self, key: str, value: Any, length: int) -> int:
        """``value``'s :func:`resident_size`, walked or estimated from its ``length`` bytes of
        JSON (the module docstring says when). Runs outside the lock: threads racing on one
        class may lose a count (a walk comes a put early or late) or one walk's ratio (the
        next walk brings it back), which leaves the table only slightly stale."""
        if length < _WALK_BELOW:
            return resident_size(value)
        cls = self._size_class(key, length.bit_length())
        puts = cls.puts
        cls.puts = puts + 1
        longest = cls.longest  # read before the ratio: it is written after it
        if puts >= _LEARN_FIRST and puts % _WALK_EVERY and length <= longest + longest // _GROWTH:
            return int(length * cls.ratio) + 1
        size = resident_size(value)
        window = (*cls.window[1 - _WINDOW :], size / length)
        cls.window = window
        cls.ratio = max(window)
        if length > longest:
            cls.longest = length
        return size

    def _size_class(self, key: str, octave: int) -> _SizeClass:
        name = (_class_name(key), octave)
        cls = self._classes.get(name)
        if cls is None:
            if len(self._classes) >= _MAX_CLASSES:
                name = ("", octave)
            cls = self._classes.setdefault(name, _SizeClass())
        return cls

    def _shrink(self) -> None:
        """Under the lock: cool the least recently used hot entries past ``hot_bytes``,
        then evict the least recently used entries past either bound (amortised one
        eviction per insert)."""
        hot, data = self._hot, self._data
        while self._hot_total > self.hot_bytes:
            _, slot = hot.popitem(last=False)
            self._unheat(slot)
            slot.entry = _cold(slot.entry)
        while len(data) > self.max_entries or self._bytes > self.max_bytes:
            evicted, slot = data.popitem(last=False)
            self._bytes -= _cold_size(evicted, slot.payload)
            if hot.pop(evicted, None) is not None:
                self._unheat(slot)

    def _unheat(self, slot: _Slot) -> None:
        """Under the lock, for a slot just taken out of the hot order: its decoded objects
        are no longer this cache's (a slot removed keeps its entry for readers holding it)."""
        self._hot_total -= slot.decoded
        self._bytes -= slot.decoded

    def _drop(self, key: str) -> bool:
        """Under the lock: forget ``key``; whether it was there."""
        slot = self._data.pop(key, None)
        if slot is None:
            return False
        self._release(key, slot)
        return True

    def _release(self, key: str, slot: _Slot) -> None:
        """Under the lock: take ``key``'s ``slot`` out of the byte count and the hot order
        (its place in ``_data`` is the caller's to drop or replace)."""
        self._bytes -= _cold_size(key, slot.payload)
        if self._hot.pop(key, None) is not None:
            self._unheat(slot)

    def delete(self, key: str) -> int:
        with self._lock:
            return int(self._drop(key))

    async def adelete(self, key: str) -> int:
        return self.delete(key)

    def delete_matching(self, pattern: str) -> int:
        match = compile_glob(pattern).match
        with self._lock:
            # The hash table's keys, not the LRU order, which lock-free readers reorder: one
            # C-level copy; matching happens outside the lock.
            keys = list(dict.keys(self._data))
        doomed = [k for k in keys if match(k.encode("utf-8", "surrogatepass"))]
        deleted = 0
        for start in range(0, len(doomed), _DELETE_BATCH):
            with self._lock:
                for key in doomed[start : start + _DELETE_BATCH]:
                    deleted += self._drop(key)
        return deleted

    async def adelete_matching(self, pattern: str) -> int:
        return self.delete_matching(pattern)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._hot.clear()
            self._bytes = 0
            self._hot_total = 0

    def close(self) -> None:
        self.clear()

    async def aclose(self) -> None:
        self.close()


def _cold_size(key: str, payload: bytes) -> int:
    """What an entry keeps resident without its decoded value (computed, not stored: an
    int per entry would add 32 B)."""
    return len(payload) + _BYTES_HEADER + sys.getsizeof(key) + _ENTRY_OVERHEAD


def _class_name(key: str) -> str:
    """``key``'s size class: ``provider:type`` for a key of the scheme (``namespace:vN:...``),
    else (a key of another shape) its first two segments."""
    parts = key.split(":", 2)
    if len(parts) == 3 and parts[1][:1] == "v" and parts[1][1:].isdigit():
        split = split_key(key)
        if split is not None:
            return split[1]
    return ":".join(parts[:2])


def _cold(entry: CacheEntry) -> CacheEntry:
    """``entry`` without its decoded value; provider and kind interned, since every key of
    a kind carries the same two names."""
    return CacheEntry(
        _COLD,
        entry.negative,
        entry.stale,
        sys.intern(entry.provider),
        sys.intern(entry.kind),
        entry.fresh_until,
        entry.stale_until,
    )
