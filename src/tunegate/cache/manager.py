"""``CacheManager``: keys, TTLs, stale-if-error, negative entries and stats over a backend.

The decisions live in :mod:`tunegate._policy.keys` and :mod:`tunegate._policy.freshness`;
this driver reads the clock, draws the jitter, calls the backend and counts. A backend
failure never reaches the caller: a read becomes a miss, a write is dropped, and both count
in ``errors``.

Stats, per provider and in total (``docs/caching.md`` says the same for users):

- ``hits``: lookups that found a fresh positive entry.
- ``negative_hits``: lookups that found a fresh "not found" entry (saves a call too).
- ``misses``: lookups with no fresh entry, including those that found a stale one and
  those the backend failed to answer.
- ``stale_hits``: stale entries actually served, as reported by
  :meth:`CacheManager.record_stale_served`; a stale entry found by ``lookup`` is only a
  candidate (the provider may still answer), so it counts as a miss there.
- ``errors``: backend operations that failed or were skipped because Redis is down.
- ``hit_ratio``: ``(hits + negative_hits) / (hits + negative_hits + misses)``, 0.0 before
  the first lookup.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from os import PathLike
from types import TracebackType
from typing import Any, Final, ParamSpec, TypeVar, TypeVarTuple

from tunegate._clock import Clock, SystemClock
from tunegate._drive import BACKLOG, Effect, Flow, adrive, drive
from tunegate._policy.freshness import (
    DEFAULT_NEGATIVE_TTL,
    DEFAULT_STALE_GRACE,
    DEFAULT_TTL,
    CacheEntry,
    Freshness,
    TtlPolicy,
    freshness,
)
from tunegate._policy.keys import KeyScheme, split_key
from tunegate._redis import DOWN, RedisLike
from tunegate.cache._backend import BackendError, CacheBackend
from tunegate.cache.decorator import cached as cached_function
from tunegate.cache.decorator import call_parts
from tunegate.cache.frozen import encode, freeze
from tunegate.cache.memory import MemoryBackend
from tunegate.cache.redisbackend import RedisBackend, packed, unpack
from tunegate.cache.sqlite import SqliteBackend
from tunegate.exceptions import ConfigurationError, InvalidInput
from tunegate.observability import Tally
from tunegate.providers.spec import CASE_SENSITIVE_KINDS, DEFAULT_TTLS

__all__ = ["CacheManager"]

_HITS, _MISSES, _STALE_HITS, _NEGATIVE_HITS, _ERRORS = range(5)
_FIELDS = ("hits", "misses", "stale_hits", "negative_hits", "errors")
_FRESH = Freshness.FRESH
_STALE = Freshness.STALE

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")
Ts = TypeVarTuple("Ts")


class _Failed(Enum):
    """What the executors return instead of raising when the backend failed."""

    FAILED = "failed"


_FAILED: Final = _Failed.FAILED


@dataclass(frozen=True, slots=True)
class _BackendCall(Effect):
    """One operation of a backend that has no flows (memory, SQLite), in its blocking or
    its awaitable form; ``_FAILED`` instead of a :class:`BackendError`."""

    sync: Callable[..., Any]
    aio: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...]

    def run(self) -> Any:
        try:
            return self.sync(*self.args)
        except BackendError:
            return _FAILED

    async def arun(self) -> Any:
        try:
            return await self.aio(*self.args)
        except BackendError:
            return _FAILED


def _not_ours() -> InvalidInput:
    return InvalidInput("key", "not a key of this cache; build keys with cache.key()")


def _value(entry: CacheEntry | None, default: Any) -> Any:
    if entry is None or entry.stale or entry.negative:
        return default
    return entry.value


def _summary(row: list[int]) -> dict[str, Any]:
    stats: dict[str, Any] = dict(zip(_FIELDS, row, strict=True))
    served = row[_HITS] + row[_NEGATIVE_HITS]
    asked = served + row[_MISSES]
    stats["hit_ratio"] = served / asked if asked else 0.0
    return stats


class CacheManager:
    """The response cache the clients share. See ``docs/caching.md``.

    ``CacheManager()`` keeps entries in memory; ``CacheManager(redis_client)`` (a
    ``redis.Redis``, ``redis.asyncio.Redis``, URL or :class:`~tunegate._redis.RedisLink`)
    shares them through Redis; :meth:`sqlite` and :meth:`memory` build the other backends,
    and ``backend=`` takes any :class:`~tunegate.cache._backend.CacheBackend`.
    """

    def __init__(
        self,
        redis_client: RedisLike | None = None,
        default_ttl: float = DEFAULT_TTL,
        *,
        backend: CacheBackend | None = None,
        ttls: Mapping[str, float] | None = None,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        stale_grace: float = DEFAULT_STALE_GRACE,
        jitter: float = 0.1,
        namespace: str = "tunegate",
        clock: Clock | None = None,
        case_sensitive_kinds: Iterable[str] = CASE_SENSITIVE_KINDS,
    ) -> None:
        if redis_client is not None and backend is not None:
            raise ConfigurationError("pass either a Redis client or backend=, not both")
        if backend is None:
            backend = MemoryBackend() if redis_client is None else RedisBackend(redis_client)
        self._backend: CacheBackend = backend
        self._scheme = KeyScheme(namespace, case_sensitive_kinds=case_sensitive_kinds)
        self.policy = TtlPolicy.build(
            ttls,
            base=DEFAULT_TTLS,
            default_ttl=default_ttl,
            negative_ttl=negative_ttl,
            stale_grace=stale_grace,
            jitter=jitter,
        )
        self._now = (clock or SystemClock()).time  # wall time: shared backends compare it
        self._rand = random.Random().random
        self._prefix = self._scheme.prefix
        self._stats_lock = threading.Lock()
        self._rows: dict[str, list[Tally]] = {}
        self._unattributed_errors = 0

    # -- construction ------------------------------------------------------------------

    @classmethod
    def memory(
        cls, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024, **options: Any
    ) -> CacheManager:
        """An in-process LRU bounded by entries and by (encoded) bytes."""
        return cls(backend=MemoryBackend(max_entries, max_bytes), **options)

    @classmethod
    def sqlite(
        cls,
        path: str | PathLike[str] | None = None,
        *,
        busy_timeout: float = 5.0,
        **options: Any,
    ) -> CacheManager:
        """A SQLite file shared by threads and processes; ``path`` defaults to
        ``$XDG_CACHE_HOME/tunegate/cache.db``."""
        return cls(backend=SqliteBackend(path, busy_timeout=busy_timeout), **options)

    @property
    def backend(self) -> CacheBackend:
        return self._backend

    @property
    def namespace(self) -> str:
        return self._scheme.namespace

    @property
    def key_scheme(self) -> KeyScheme:
        """The scheme :meth:`key` uses (namespace and case-sensitive kinds included); code
        that builds keys without a manager at hand should use this one, not a new one."""
        return self._scheme

    # -- keys --------------------------------------------------------------------------

    def key(self, kind: str, *parts: str | int) -> str:
        """``key("spotify:search", "Deadmau5", "Strobe")`` ->
        ``"tunegate:v1:spotify:search:deadmau5:strobe"`` (normalised, escaped, bounded)."""
        return self._scheme.key(kind, *parts)

    def pattern(self, kind: str, *parts: str | int) -> str:
        """A safe pattern for :meth:`invalidate_pattern` from user data:
        ``pattern("spotify:search", "Deadmau5")`` -> ``"spotify:search:deadmau5:*"``."""
        return self._scheme.pattern(kind, *parts)

    def _split(self, key: str) -> tuple[str, str]:
        """``(provider, kind)`` of ``key``; raises for a key this cache did not build."""
        split = split_key(key, self._prefix)
        if split is None:
            raise _not_ours()
        return split

    # -- the two executors: the only code that differs between sync and async ---------
    # Each public pair below is the same steps around one backend call; the executor makes
    # that call and turns a backend failure into _FAILED, which the shared steps count.

    @staticmethod
    def _call(method: Callable[[*Ts], T], *args: *Ts) -> T | _Failed:
        try:
            return method(*args)
        except BackendError:
            return _FAILED

    @staticmethod
    async def _acall(method: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T | _Failed:
        try:
            return await method(*args)
        except BackendError:
            return _FAILED

    # -- stats -------------------------------------------------------------------------

    def _bump(self, provider: str, index: int, failed: bool = False) -> None:
        """Count one ``index`` event for ``provider``, and one error too when ``failed``
        (no lock: each counter is a :class:`~tunegate.observability.Tally`)."""
        row = self._rows.get(provider) or self._row(provider)
        row[index].bump()
        if failed:
            row[_ERRORS].bump()

    def _row(self, provider: str) -> list[Tally]:
        return self._rows.setdefault(provider, [Tally() for _ in _FIELDS])

    def record_stale_served(self, key_or_provider: str) -> None:
        """Count one stale entry actually served (stale-if-error). Takes the entry's key or a
        provider name; the pipeline calls it when it returns a stale entry to its caller."""
        if key_or_provider.startswith(self._prefix):
            provider = self._split(key_or_provider)[0]
        else:
            provider = key_or_provider
        self._bump(provider, _STALE_HITS)

    def get_stats(self) -> dict[str, Any]:
        """Totals and ``per_provider`` breakdown; see the module docstring for meanings."""
        with self._stats_lock:
            rows = {p: [t.read() for t in r] for p, r in list(self._rows.items())}
            unattributed = self._unattributed_errors
        totals = [sum(col) for col in zip(*rows.values(), strict=True)] or [0] * 5
        totals[_ERRORS] += unattributed
        stats = _summary(totals)
        stats["backend"] = self._backend.name
        stats["per_provider"] = {p: _summary(r) for p, r in sorted(rows.items())}
        return stats

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._rows.clear()
            self._unattributed_errors = 0

    # -- reads -------------------------------------------------------------------------

    def _own_prefix(self, key: str) -> str:
        # The hit path checks only the prefix before the backend call (a key of another
        # namespace never reaches it) and takes the provider from the entry found, sparing
        # a split. A key with our prefix but no kind cannot have been stored, so it misses,
        # and _judge's full split raises for it there.
        if not key.startswith(self._prefix):
            raise _not_ours()
        return key

    def _judge(self, key: str, entry: CacheEntry | _Failed | None) -> CacheEntry | None:
        if entry is None or entry is _FAILED:
            self._bump(self._split(key)[0], _MISSES, entry is _FAILED)
            return None
        state = freshness(entry.fresh_until, entry.stale_until, self._now())
        if state is _FRESH:
            self._bump(entry.provider, _NEGATIVE_HITS if entry.negative else _HITS)
            return entry
        self._bump(entry.provider, _MISSES)
        return entry.as_stale() if state is _STALE else None

    def lookup(self, key: str) -> CacheEntry | None:
        """The entry under ``key``: fresh, or stale (``.stale``) within the grace period, or
        None. Never raises for backend trouble (that reads as a miss)."""
        if not key.startswith(self._prefix):
            raise _not_ours()
        if BACKLOG.pending(key) is not None:  # a write a pipeline here still owes key
            drive(BACKLOG.settled(key, 2.0))
        try:
            entry = self._backend.get(key)
        except BackendError:
            return self._judge(key, _FAILED)
        if entry is not None and self._now() < entry.fresh_until:  # the hit, spelled out
            self._bump(entry.provider, _NEGATIVE_HITS if entry.negative else _HITS)
            return entry
        return self._judge(key, entry)

    def fresh(self, key: str) -> CacheEntry | None:
        """The fresh entry under ``key`` (counted as a hit) when the backend is in this
        process's memory; else None, uncounted: the caller's :meth:`lookup` counts it."""
        backend = self._backend
        if type(backend) is not MemoryBackend or not key.startswith(self._prefix):
            return None
        entry = backend.get(key)
        if entry is None or self._now() >= entry.fresh_until:
            return None
        row = self._rows.get(entry.provider) or self._row(entry.provider)
        row[_NEGATIVE_HITS if entry.negative else _HITS].bump()
        return entry

    def hit_flow(self, key: str) -> Flow[CacheEntry | None]:
        """A flow: the fresh entry under ``key`` by one plain ``GET``, counted as a hit, when
        this process read it fresh from Redis lately and its fresh time has not run out, or
        when recent lookups of other keys mostly hit (the backend's
        :class:`~tunegate.cache.redisbackend.FirstLook`); else None, uncounted, and then
        (a guess that did not hold: no fresh entry, or Redis cannot serve) after that
        ``GET``. For the request path, whose lookup is otherwise a script that also claims
        single-flight's lease for a miss; :meth:`judge` counts the script's outcome (so a
        ``GET`` that missed tells :class:`FirstLook` nothing: the script that follows does)."""
        backend = self._backend
        if type(backend) is not RedisBackend:
            return None
        now = self._now()  # fresh when asked, as the script judges it (``judge``)
        guessed = not backend.known_fresh(key, now)
        if guessed and not backend.first_look.get_first():
            return None
        raw = yield backend.get_call(key)
        if raw is DOWN:
            return None
        try:
            entry = backend.entry(key, raw)
        except BackendError:
            return None
        if entry is None or now >= entry.fresh_until:
            return None
        if guessed:
            backend.first_look.saw(True)
        row = self._rows.get(entry.provider) or self._row(entry.provider)
        row[_NEGATIVE_HITS if entry.negative else _HITS].bump()
        return entry

    def lookup_flow(self, key: str) -> Flow[CacheEntry | None]:
        """:meth:`lookup` as a flow, for the request path: a Redis backend's command runs
        in the caller's driver loop (``RedisBackend.get_flow``), any other backend as one
        effect."""
        backend = self._backend
        self._own_prefix(key)
        entry: CacheEntry | _Failed | None
        if isinstance(backend, RedisBackend):
            try:
                entry = yield from backend.get_flow(key)
            except BackendError:
                entry = _FAILED
        else:
            entry = yield _BackendCall(backend.get, backend.aget, (key,))
        return self._judge(key, entry)

    def store_flow(
        self, key: str, value: Any, *, ttl: float | None = None, negative: bool = False
    ) -> Flow[Any]:
        """:meth:`store` as a flow (see :meth:`lookup_flow`); ``TypeError`` for a value
        that is not JSON-like, before anything is written."""
        entry, payload, now = self._prepare(key, value, None, ttl, negative)
        backend = self._backend
        outcome: _Failed | None = None
        if isinstance(backend, RedisBackend):
            try:
                yield from backend.put_flow(key, entry, payload, now)
            except BackendError:
                outcome = _FAILED
        else:
            outcome = yield _BackendCall(backend.put, backend.aput, (key, entry, payload, now))
        return self._stored(entry, outcome)

    def judge(self, key: str, raw: bytes | str | None, now: float) -> CacheEntry | None:
        """:meth:`lookup` for a stored string someone else read from this cache's Redis at
        ``now`` (this cache's clock): the request path's lookup folded with its
        single-flight claim, one round trip (``tunegate._coalesce.LOOKUP_CLAIM``). Judged
        and counted as a lookup (and told to the backend's ``FirstLook``); an unreadable
        string is a miss and an error."""
        if not key.startswith(self._prefix):
            raise _not_ours()
        backend = self._backend
        shared = backend if isinstance(backend, RedisBackend) else None
        try:
            if shared is not None:  # decoded once per distinct stored string
                entry = shared.entry(key, raw)
            else:
                entry = None if raw is None else unpack(key, raw)
        except (BackendError, ValueError, UnicodeError):
            if shared is not None:
                shared.first_look.saw(False)
            return self._judge(key, _FAILED)
        hit = entry is not None and now < entry.fresh_until
        if shared is not None:  # what a GET first would have found: FirstLook learns it
            shared.first_look.saw(hit)
        if entry is None:
            return self._judge(key, None)
        if hit:
            self._bump(entry.provider, _NEGATIVE_HITS if entry.negative else _HITS)
            return entry
        return self._judge(key, entry)

    def now(self) -> float:
        """This cache's wall-clock time, which its entries' stamps are compared with."""
        return self._now()

    async def alookup(self, key: str) -> CacheEntry | None:
        if BACKLOG.pending(key) is not None:  # a write a pipeline here still owes key
            await adrive(BACKLOG.settled(key, 2.0))
        return self._judge(key, await self._acall(self._backend.aget, self._own_prefix(key)))

    def get(self, key: str, default: Any = None) -> Any:
        """The fresh, positive value under ``key``, else ``default``."""
        return _value(self.lookup(key), default)

    async def aget(self, key: str, default: Any = None) -> Any:
        return _value(await self.alookup(key), default)

    # -- writes ------------------------------------------------------------------------

    def _prepare(
        self, key: str, value: Any, kind: str | None, ttl: float | None, negative: bool
    ) -> tuple[CacheEntry, bytes, float]:
        provider, key_kind = self._split(key)
        if kind is not None and kind != key_kind:
            raise InvalidInput("kind", f"{kind!r} does not match the key's kind {key_kind!r}")
        frozen = freeze(value)
        payload = encode(frozen)
        now = self._now()
        seconds = self.policy.ttl_for(key_kind, ttl, negative)
        fresh_until, stale_until = self.policy.stamps(now, seconds, negative, self._rand())
        entry = CacheEntry(frozen, negative, False, provider, key_kind, fresh_until, stale_until)
        return entry, payload, now

    def store(
        self,
        key: str,
        value: Any,
        *,
        kind: str | None = None,
        ttl: float | None = None,
        negative: bool = False,
    ) -> Any:
        """Cache ``value`` (JSON-like) under ``key`` and return its frozen copy, which the
        caller should hand on so a miss and a hit return the same kind of object.

        TTL: ``ttl``, else (``negative``) ``negative_ttl``, else the kind's entry in ``ttls``,
        else ``default_ttl``; jitter applied. ``kind`` defaults to the key's own kind.
        A backend failure drops the write (counted in ``errors``); a value that is not
        JSON-like raises ``TypeError``."""
        entry, payload, now = self._prepare(key, value, kind, ttl, negative)
        return self._stored(entry, self._call(self._backend.put, key, entry, payload, now))

    async def astore(
        self,
        key: str,
        value: Any,
        *,
        kind: str | None = None,
        ttl: float | None = None,
        negative: bool = False,
    ) -> Any:
        entry, payload, now = self._prepare(key, value, kind, ttl, negative)
        outcome = await self._acall(self._backend.aput, key, entry, payload, now)
        return self._stored(entry, outcome)

    def _stored(self, entry: CacheEntry, outcome: _Failed | None) -> Any:
        if outcome is _FAILED:
            self._bump(entry.provider, _ERRORS)
        return entry.value

    def packed(
        self, key: str, value: Any, *, ttl: float | None = None, negative: bool = False
    ) -> tuple[Any, bytes, int]:
        """What :meth:`store` would write to this cache's Redis, without writing it:
        ``(frozen value, stored string, milliseconds to keep it)``, for the request path to
        send with its single-flight publish in one script. Then :meth:`packed_failed` if
        that script failed. ``TypeError`` for a value that is not JSON-like."""
        entry, payload, now = self._prepare(key, value, None, ttl, negative)
        return (entry.value, *packed(entry, payload, now))

    def packed_failed(self, key: str) -> None:
        """Count a write prepared by :meth:`packed` that Redis did not take."""
        self._bump(self._split(key)[0], _ERRORS)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Plain convenience for :meth:`store` of a positive value."""
        self.store(key, value, ttl=ttl)

    async def aset(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self.astore(key, value, ttl=ttl)

    # -- invalidation ------------------------------------------------------------------

    def invalidate(self, kind: str, *parts: str | int | float | None, **named: Any) -> int:
        """Delete the entry for ``kind`` and ``parts`` (normalised as in :meth:`key`), or
        for a :meth:`cached` function's call by the same arguments it was called with;
        returns how many were deleted (0 or 1; 0 also when the backend failed)."""
        key = self._scheme.key(kind, *call_parts(parts, named))
        return self._deleted(key, self._call(self._backend.delete, key))

    async def ainvalidate(self, kind: str, *parts: str | int | float | None, **named: Any) -> int:
        key = self._scheme.key(kind, *call_parts(parts, named))
        return self._deleted(key, await self._acall(self._backend.adelete, key))

    def _deleted(self, key: str | None, outcome: int | _Failed) -> int:
        """How many were deleted; a failure counts an error against the key's provider
        (``key`` None: a pattern, which belongs to no single provider) and deleted none."""
        if outcome is not _FAILED:
            return outcome
        if key is not None:
            self._bump(self._split(key)[0], _ERRORS)
        else:
            with self._stats_lock:
                self._unattributed_errors += 1
        return 0

    def _full_pattern(self, pattern: str) -> str:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidInput("pattern", "must be a non-empty string such as 'spotify:*'")
        try:
            pattern.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("pattern", "must be valid Unicode text") from None
        return self._scheme.full_pattern(pattern)

    def invalidate_pattern(self, pattern: str) -> int:
        """Delete every entry matching a Redis-style glob in the unprefixed form
        (``"spotify:*"``, ``"spotify:search:deadmau5:*"``); this cache's namespace and key
        version are added. Build patterns from user data with :meth:`pattern`."""
        full = self._full_pattern(pattern)
        return self._deleted(None, self._call(self._backend.delete_matching, full))

    async def ainvalidate_pattern(self, pattern: str) -> int:
        full = self._full_pattern(pattern)
        return self._deleted(None, await self._acall(self._backend.adelete_matching, full))

    # -- decorating functions ----------------------------------------------------------

    def cached(
        self, key_prefix: str, ttl: float | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Cache a function's (or coroutine function's) answers by its arguments::

            @cache.cached("myapp:artist_page", ttl=3600)
            def artist_page(artist: str, *, lang: str = "en") -> dict: ...

            cache.invalidate("myapp:artist_page", "Daft Punk", lang="fr")

        ``key_prefix`` is a ``provider:type`` kind (its TTL from ``ttls`` unless ``ttl``);
        arguments must be str, int, float, bool or None (see :mod:`tunegate.cache.decorator`).
        """
        return cached_function(self, key_prefix, ttl)

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        self._backend.close()

    async def aclose(self) -> None:
        """Close as :meth:`close` does, and release what the backend holds for the running
        event loop (with Redis: this loop's asyncio client, unless the caller gave the
        RedisLink), so a program that runs ``asyncio.run()`` many times and awaits
        ``aclose()`` each time keeps no connections."""
        await self._backend.aclose()

    def __enter__(self) -> CacheManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> CacheManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<CacheManager backend={self._backend.name} namespace={self.namespace!r}>"
