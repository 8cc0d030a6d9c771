"""The shared backend: Redis through redis-py, one round trip per hit, failing open.

Each entry is one Redis string: an ASCII header line, then the orjson payload::

    TG1 <fresh_until> <stale_until> <0|1>\\n{"name": "Strobe", ...}

so a hit is a single ``GET``, and the value stays valid UTF-8 for clients created with
``decode_responses=True`` (as in the design's example). Redis drops the key itself at
``stale_until`` (``SET ... PX``). Pattern invalidation walks ``SCAN MATCH`` and deletes with
``UNLINK`` in batches; never ``KEYS``, which blocks the server.

Each operation is written once, as a flow (generator) that yields the Redis commands it needs
and returns its result; :func:`tunegate._redis.drive` runs it with blocking calls on the sync
client and :func:`tunegate._redis.adrive` with awaits on the running loop's asyncio client,
so each public sync/async pair only picks the driver.

Fail-open: every error of ``REDIS_FAILURES`` (an unreachable or stalled server, and error
replies such as ``OOM``, ``READONLY`` or ``MISCONF`` too) turns into :class:`BackendError`,
which the manager reads as a miss or a dropped write. The shared :class:`RedisLink` accounts
for it: an outage marks the link down (one warning per outage), so for its retry interval
operations are skipped without touching the network. A value under our key that is not one
of our entries reads as a miss too, with one warning a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio

from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import split_key
from tunegate._redis import REDIS_FAILURES, Effect, RedisLink, adrive, drive
from tunegate.cache._backend import BackendError
from tunegate.cache.frozen import decode

__all__ = ["RedisBackend"]

log = logging.getLogger("tunegate.cache")

T = TypeVar("T")
#: An operation: yields commands, is sent each reply, returns its result.
Op = Generator["_Command", Any, T]

_MAGIC = b"TG1"
_SCAN_COUNT = 500
_UNLINK_BATCH = 500
_WARN_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class _Command(Effect):
    """One Redis command on the link's client, e.g. ``("GET", key)``; its reply."""

    link: RedisLink
    args: tuple[Any, ...]

    def run(self) -> Any:
        return self.link.sync.execute_command(*self.args)  # type: ignore[no-untyped-call]

    async def arun(self) -> Any:
        return await self.link.aio.execute_command(*self.args)  # type: ignore[no-untyped-call]


def pack(entry: CacheEntry, payload: bytes) -> bytes:
    """Header line plus payload (``repr`` keeps the float stamps exact)."""
    header = f"{entry.fresh_until!r} {entry.stale_until!r} {int(entry.negative)}\n"
    return _MAGIC + b" " + header.encode("ascii") + payload


def unpack(key: str, raw: bytes | str) -> CacheEntry:
    """A stored string back to an entry; raises ``ValueError`` when it is not one of ours."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    newline = data.find(b"\n", 0, 96)
    split = split_key(key)
    if newline < 0 or not data.startswith(_MAGIC + b" ") or split is None:
        raise ValueError("not a tunegate cache entry")
    _, fresh, stale, negative = data[:newline].split(b" ")
    value = decode(memoryview(data)[newline + 1 :])
    provider, kind = split
    return CacheEntry(value, negative == b"1", False, provider, kind, float(fresh), float(stale))


# -- the operations, each written once -------------------------------------------------------


def _get(link: RedisLink, key: str) -> Op[Any]:
    return (yield _Command(link, ("GET", key)))


def _put(link: RedisLink, key: str, entry: CacheEntry, payload: bytes, now: float) -> Op[None]:
    ttl_ms = max(1, int((entry.stale_until - now) * 1000.0) + 1)  # Redis frees it after grace
    yield _Command(link, ("SET", key, pack(entry, payload), "PX", ttl_ms))


def _delete(link: RedisLink, key: str) -> Op[int]:
    return int((yield _Command(link, ("UNLINK", key))))


def _delete_matching(link: RedisLink, pattern: str) -> Op[int]:
    deleted = 0
    batch: list[Any] = []
    cursor = 0
    while True:
        scan = ("SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT)
        cursor, keys = yield _Command(link, scan)
        batch.extend(keys)
        while len(batch) >= _UNLINK_BATCH:
            deleted += int((yield _Command(link, ("UNLINK", *batch[:_UNLINK_BATCH]))))
            del batch[:_UNLINK_BATCH]
        if not cursor:
            break
    if batch:
        deleted += int((yield _Command(link, ("UNLINK", *batch))))
    return deleted


class RedisBackend:
    """Entries in Redis, shared by every process that uses the same namespace."""

    name = "redis"

    def __init__(self, client: redis.Redis | redis.asyncio.Redis | str | RedisLink) -> None:
        # RedisLink checks a URL at once (a typo fails here, not as a miss on every lookup)
        # and opens connections of its own: the caller's client is never used nor closed.
        self._given_link = isinstance(client, RedisLink)
        self.link = client if isinstance(client, RedisLink) else RedisLink(client)
        self._warned_at = -_WARN_EVERY

    def _guarded(self, op: Op[T], what: str) -> Op[T]:
        """``op``, skipped while the link is down, with Redis errors as BackendError."""
        if not self.link.available:
            raise BackendError("redis marked down")
        try:
            result = yield from op
        except REDIS_FAILURES as exc:
            self.link.failed(exc, "the cache")  # an outage marks the link down, logs once
            raise BackendError(what) from exc
        self.link.mark_up()
        return result

    def _entry(self, key: str, raw: Any) -> CacheEntry | None:
        if raw is None:
            return None
        try:
            return unpack(key, raw)
        except (ValueError, UnicodeError) as exc:
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY:  # one a minute, not one per call
                self._warned_at = now
                log.warning(
                    "redis cache entry unreadable; treated as a miss (%s)", type(exc).__name__
                )
            raise BackendError("decode") from exc

    # -- the backend protocol: each line picks a driver ----------------------------------

    def get(self, key: str) -> CacheEntry | None:
        return self._entry(key, drive(self._guarded(_get(self.link, key), "read")))

    async def aget(self, key: str) -> CacheEntry | None:
        return self._entry(key, await adrive(self._guarded(_get(self.link, key), "read")))

    def put(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        drive(self._guarded(_put(self.link, key, entry, payload, now), "write"))

    async def aput(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        await adrive(self._guarded(_put(self.link, key, entry, payload, now), "write"))

    def delete(self, key: str) -> int:
        return drive(self._guarded(_delete(self.link, key), "delete"))

    async def adelete(self, key: str) -> int:
        return await adrive(self._guarded(_delete(self.link, key), "delete"))

    def delete_matching(self, pattern: str) -> int:
        return drive(self._guarded(_delete_matching(self.link, pattern), "delete"))

    async def adelete_matching(self, pattern: str) -> int:
        return await adrive(self._guarded(_delete_matching(self.link, pattern), "delete"))

    def close(self) -> None:
        """Close the link's sync client when the link is ours. A caller's own client is never
        touched, nor a RedisLink the caller gave (the limiter and breakers may share it)."""
        if not self._given_link:
            self.link.close()

    async def aclose(self) -> None:
        """Close as :meth:`close` does, and first the link's client of the running event loop
        when the link is ours. (A caller's RedisLink closes that client itself when the loop
        ends, or on its own ``aclose()``.)"""
        if not self._given_link:
            await self.link.aclose()
        self.close()
