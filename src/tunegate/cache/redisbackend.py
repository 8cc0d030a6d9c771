"""The shared backend: Redis through redis-py, one round trip per hit, failing open.

Each entry is one Redis string: an ASCII header line, then the orjson payload::

    TG1 <fresh_until> <stale_until> <0|1>\\n{"name": "Strobe", ...}

so a hit is a single ``GET``, and the value stays valid UTF-8 for clients created with
``decode_responses=True`` (as in the design's example). Redis drops the key itself at
``stale_until`` (``SET ... PX``). Pattern invalidation walks ``SCAN MATCH`` and deletes with
``UNLINK`` in batches; never ``KEYS``, which blocks the server.

Decoding and freezing a value costs a few times ``orjson.loads``, more than the ``GET``'s own
client work, so each backend remembers the entries it last decoded, by key with the exact
stored string: a hit whose ``GET`` returns the same bytes (stamps included) reuses that
entry and decodes nothing. Every hit still asks Redis, so a write by any process changes
the bytes and is seen at once; sharing the object is safe because cached values are frozen.
:class:`_Decoded` bounds it by entries and by stored bytes. A stored string this process
has not read decodes at about ``orjson.loads``'s cost: the value freezes lazily
(:mod:`tunegate.cache.frozen`).

On the request path (:meth:`CacheManager.hit_flow`), a key read fresh lately is looked up
with a plain ``GET``; any other key with the lookup + single-flight claim script (one round
trip for a hit or a miss) or, while recent such lookups mostly hit, with a ``GET`` first
(:class:`FirstLook` decides).

Each operation is written once, as a flow (generator) that yields the Redis commands it needs
(:class:`tunegate._redis.RedisCall`) and returns its result; :func:`tunegate._drive.drive`
runs it with blocking calls on the sync client and :func:`tunegate._drive.adrive` with awaits
on the running loop's asyncio client, so each public sync/async pair only picks the driver.

Fail-open: a command Redis cannot serve (an unreachable or stalled server, and error replies
such as ``OOM``, ``READONLY`` or ``MISCONF`` too) ends the operation with
:class:`BackendError`, which the manager reads as a miss or a dropped write. The shared
:class:`RedisLink` accounts for it (:meth:`RedisLink.execute`, the one fail-open rule): an
outage marks the link down (one warning per outage), so for its retry interval operations
are skipped without touching the network. A value under our key that is not one
of our entries reads as a miss too, with one warning a minute.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Generator
from typing import Any, Final, TypeVar

from tunegate._drive import Effect, adrive, drive
from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import split_key
from tunegate._redis import DOWN, LinkOwner, RedisCall, RedisLike, RedisLink
from tunegate.cache._backend import BackendError, WarnEvery
from tunegate.cache.frozen import decode
from tunegate.exceptions import ConfigurationError

__all__ = ["FirstLook", "RedisBackend"]

log = logging.getLogger("tunegate.cache")

T = TypeVar("T")
#: An operation: yields commands, is sent each reply, returns its result.
Op = Generator[Effect, Any, T]

_MAGIC = b"TG1"
_HEAD = _MAGIC + b" "
_SCAN_COUNT = 500
_UNLINK_BATCH = 500


def _command(link: RedisLink, *args: Any) -> Op[Any]:
    """One command's reply; :class:`BackendError` when Redis cannot serve it."""
    reply = yield RedisCall(link, "the cache", command=args, down=DOWN)
    if reply is DOWN:
        raise BackendError("redis cannot serve")
    return reply


def pack(entry: CacheEntry, payload: bytes) -> bytes:
    """Header line plus payload (``repr`` keeps the float stamps exact)."""
    header = f"{entry.fresh_until!r} {entry.stale_until!r} {int(entry.negative)}\n"
    return _MAGIC + b" " + header.encode("ascii") + payload


def packed(entry: CacheEntry, payload: bytes, now: float) -> tuple[bytes, int]:
    """What a write of ``entry`` at ``now`` stores, and for how many milliseconds (``PX``):
    until its stale grace ends, then Redis frees it (at least 1 ms: PX refuses 0). Not kept
    decoded: a hit returns what decoding the stored bytes gives (a str or int subclass in
    ``entry.value`` comes back a plain str or int)."""
    return pack(entry, payload), max(1, int((entry.stale_until - now) * 1000.0) + 1)


def unpack(key: str, raw: bytes | str) -> CacheEntry:
    """A stored string back to an entry; raises ``ValueError`` when it is not one of ours."""
    data = raw if type(raw) is bytes else raw.encode("utf-8")  # type: ignore[union-attr]
    newline = data.find(b"\n", 0, 96)
    split = _kind_of(key)
    if newline < 0 or not data.startswith(_HEAD) or split is None:
        raise ValueError("not a tunegate cache entry")
    fresh, stale, negative = data[4:newline].split(b" ")
    value = decode(memoryview(data)[newline + 1 :])
    return _entry(value, negative == b"1", split, float(fresh), float(stale))


# A first hit on a stored string builds its entry here, about as often as it decodes one,
# so the two pieces of that around ``orjson.loads`` are trimmed: the key's (provider, kind)
# comes from a memo by the key's first four fields (the few kinds in use; the same two
# strings for every entry of a kind), and the entry is built through its slots (the frozen
# dataclass's ``__init__`` stores each field through ``object.__setattr__``: a sixth of
# unpack here). Checked at import against CacheEntry's fields, in order.
_KINDS: dict[str, tuple[str, str] | None] = {}
_KINDS_MAX: Final = 256
_FIELDS: Final = ("value", "negative", "stale", "provider", "kind", "fresh_until", "stale_until")
if tuple(f.name for f in dataclasses.fields(CacheEntry)) != _FIELDS:  # pragma: no cover
    raise ImportError("CacheEntry's fields changed: update tunegate.cache.redisbackend._entry")
_new = object.__new__
_set_value, _set_negative, _set_stale, _set_provider, _set_kind, _set_fresh, _set_until = (
    CacheEntry.__dict__[name].__set__ for name in _FIELDS
)


def _kind_of(key: str) -> tuple[str, str] | None:
    """``split_key(key)``, memoised by the key's ``namespace:vN:provider:type`` head."""
    cut = key.find(":", key.find(":", key.find(":", key.find(":") + 1) + 1) + 1)
    head = key if cut < 0 else key[:cut]
    try:
        return _KINDS[head]
    except KeyError:
        pass
    split = split_key(head)  # the same as split_key(key): the kind is fields 2 and 3
    if len(_KINDS) >= _KINDS_MAX:
        _KINDS.clear()
    _KINDS[head] = split
    return split


def _entry(
    value: Any, negative: bool, split: tuple[str, str], fresh_until: float, stale_until: float
) -> CacheEntry:
    """``CacheEntry(value, negative, False, *split, fresh_until, stale_until)``, faster."""
    entry: CacheEntry = _new(CacheEntry)
    _set_value(entry, value)
    _set_negative(entry, negative)
    _set_stale(entry, False)
    _set_provider(entry, split[0])
    _set_kind(entry, split[1])
    _set_fresh(entry, fresh_until)
    _set_until(entry, stale_until)
    return entry


# -- the operations, each written once -------------------------------------------------------


def _get(link: RedisLink, key: str) -> Op[Any]:
    return (yield from _command(link, "GET", key))


def _set(link: RedisLink, key: str, stored: bytes, ttl_ms: int) -> Op[None]:
    yield from _command(link, "SET", key, stored, "PX", ttl_ms)


def _delete(link: RedisLink, key: str) -> Op[int]:
    return int((yield from _command(link, "UNLINK", key)))


def _delete_matching(link: RedisLink, pattern: str) -> Op[int]:
    deleted = 0
    batch: list[Any] = []
    cursor = 0
    while True:
        scan = ("SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT)
        cursor, keys = yield from _command(link, *scan)
        batch.extend(keys)
        while len(batch) >= _UNLINK_BATCH:
            deleted += int((yield from _command(link, "UNLINK", *batch[:_UNLINK_BATCH])))
            del batch[:_UNLINK_BATCH]
        if not cursor:
            break
    if batch:
        deleted += int((yield from _command(link, "UNLINK", *batch)))
    return deleted


class _Decoded:
    """The entries a backend last decoded, each under its key with the exact
    stored string it came from: at most ``entries`` of them and ``max_bytes`` of stored
    strings (the oldest go first). Reading needs no lock (one dict lookup, atomic); writers
    take one, so the byte count stays exact across threads."""

    __slots__ = ("_bytes", "_entries", "_kept", "_lock", "_max_bytes")

    def __init__(self, entries: int, max_bytes: int) -> None:
        self._entries = entries
        self._max_bytes = max_bytes
        self._kept: dict[str, tuple[bytes | str, CacheEntry]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str, raw: bytes | str) -> CacheEntry | None:
        """The entry decoded from exactly ``raw`` under ``key``, if kept."""
        kept = self._kept.get(key)
        if kept is not None and kept[0] == raw:  # a memcmp: the whole string, stamps too
            return kept[1]
        return None

    def fresh(self, key: str, now: float) -> bool:
        """Is the entry last decoded under ``key`` still fresh at ``now``?"""
        kept = self._kept.get(key)
        return kept is not None and now < kept[1].fresh_until

    def keep(self, key: str, raw: bytes | str, entry: CacheEntry) -> None:
        size = len(raw)
        if size > self._max_bytes or self._entries <= 0:
            return
        with self._lock:
            kept = self._kept
            old = kept.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])
            while kept and (len(kept) >= self._entries or self._bytes + size > self._max_bytes):
                self._bytes -= len(kept.pop(next(iter(kept)))[0])
            kept[key] = (raw, entry)
            self._bytes += size

    def drop(self, key: str) -> None:
        with self._lock:
            old = self._kept.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._bytes = 0


class FirstLook:
    """How the request path looks up a key this process has not read fresh lately: a plain
    ``GET`` first, or the lookup + single-flight claim script first. A pure rule over the
    outcomes it is told (:meth:`saw`); the manager asks it (:meth:`get_first`).

    Why: the script answers a hit or a miss in one round trip, but on a hit it costs more
    than a ``GET`` (a Lua call, a longer command and reply: ~18 us over a ~60 us ``GET``
    here), and a ``GET`` that misses must be followed by the script, one round trip more
    before the upstream call. ``GET`` first wins on Redis time alone once more than about
    G/S (~0.75) of these lookups hit; a miss's extra ~60 us also sits beside an upstream call
    of milliseconds, while a hit's 18 us is a quarter of the hit. So: ``GET`` first while an
    exponentially weighted hit ratio of these lookups (each weighs 1/16: about the last 16-30)
    is at least 0.8, the script first below. It starts at 0: a new process, and any run of
    mostly misses, keeps a miss at its two round trips before the answer; about 25 hits in a
    row make it ``GET`` first, and then misses above ~1 in 5 turn it back.
    Keys read fresh lately are not asked about (a plain ``GET`` either way) and not counted.
    Updates take no lock: a lost update between threads only nudges an estimate."""

    __slots__ = ("ratio",)

    #: Weight of the newest outcome in :attr:`ratio`.
    WEIGHT: Final = 1 / 16
    #: :attr:`ratio` from which a plain ``GET`` goes first.
    GET_FIRST_AT: Final = 0.8

    def __init__(self) -> None:
        self.ratio = 0.0  # recent hits / lookups, exponentially weighted

    def get_first(self) -> bool:
        """Should the next lookup of a key not read fresh lately be a plain ``GET``?"""
        return self.ratio >= self.GET_FIRST_AT

    def saw(self, hit: bool) -> None:
        """One such lookup's outcome: a fresh entry (positive or "not found"), or not."""
        self.ratio += self.WEIGHT * (hit - self.ratio)


class RedisBackend(LinkOwner):
    """Entries in Redis, shared by every process that uses the same namespace.

    ``decoded_entries`` and ``decoded_bytes`` bound the entries kept decoded in this process
    (see the module docstring; ``decoded_entries=0`` turns that off): their stored strings
    count, and the frozen values take a few times that.
    """

    name = "redis"

    def __init__(
        self,
        client: RedisLike,
        *,
        decoded_entries: int = 1000,
        decoded_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        # RedisLink checks a URL at once (a typo fails here, not as a miss on every lookup)
        # and opens connections of its own: the caller's client is never used nor closed.
        self._adopt(client)
        if self._link is None:
            raise ConfigurationError("RedisBackend needs a Redis client, a URL or a RedisLink")
        for name, bound in (("decoded_entries", decoded_entries), ("decoded_bytes", decoded_bytes)):
            if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
                raise ConfigurationError(f"{name} must be an int >= 0, not {bound!r}")
        self.link: RedisLink = self._link
        self._warn = WarnEvery(log)
        self._decoded = _Decoded(decoded_entries, decoded_bytes)
        #: GET or the lookup script first for keys not read fresh lately (the manager's).
        self.first_look = FirstLook()

    def entry(self, key: str, raw: bytes | str | None) -> CacheEntry | None:
        """The entry a ``GET`` of ``key`` returned as ``raw`` (None: no entry), decoded once
        per distinct stored string; :class:`BackendError` when it is not one of ours."""
        if raw is None:
            return None
        found = self._decoded.get(key, raw)
        if found is not None:
            return found
        try:
            found = unpack(key, raw)
        except (ValueError, UnicodeError) as exc:
            self._warn.warning(
                "redis cache entry unreadable; treated as a miss (%s)", type(exc).__name__
            )
            raise BackendError("decode") from exc
        self._decoded.keep(key, raw, found)
        return found

    def known_fresh(self, key: str, now: float) -> bool:
        """Did this process last read a fresh entry under ``key``, still fresh at ``now``?
        (A guess that a ``GET`` will hit: Redis may have dropped or replaced it since.)"""
        return self._decoded.fresh(key, now)

    # -- the flows, for a caller composing them under its own driver ----------------------

    def get_flow(self, key: str) -> Op[CacheEntry | None]:
        return self.entry(key, (yield from _get(self.link, key)))

    def get_call(self, key: str) -> RedisCall:
        """The ``GET`` of ``key`` as one effect for a flow of the caller's: its reply is the
        stored string, None (no entry) or ``DOWN`` (Redis cannot serve; then :meth:`entry`
        must not be asked). For the hit path, which yields it without the frames of
        :meth:`get_flow`."""
        return RedisCall(self.link, "the cache", ("GET", key), None, (), (), DOWN)

    def put_flow(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> Op[None]:
        return _set(self.link, key, *packed(entry, payload, now))

    # -- the backend protocol: each line picks a driver ----------------------------------

    def get(self, key: str) -> CacheEntry | None:
        return drive(self.get_flow(key))

    async def aget(self, key: str) -> CacheEntry | None:
        return await adrive(self.get_flow(key))

    def put(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        drive(self.put_flow(key, entry, payload, now))

    async def aput(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        await adrive(self.put_flow(key, entry, payload, now))

    def delete(self, key: str) -> int:
        self._decoded.drop(key)  # memory only: Redis decides what a later GET returns
        return drive(_delete(self.link, key))

    async def adelete(self, key: str) -> int:
        self._decoded.drop(key)
        return await adrive(_delete(self.link, key))

    def delete_matching(self, pattern: str) -> int:
        self._decoded.clear()
        return drive(_delete_matching(self.link, pattern))

    async def adelete_matching(self, pattern: str) -> int:
        self._decoded.clear()
        return await adrive(_delete_matching(self.link, pattern))

    def close(self) -> None:
        self._decoded.clear()
        super().close()

    async def aclose(self) -> None:
        self._decoded.clear()
        await super().aclose()
