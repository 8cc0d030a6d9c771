"""The shared backend: Redis through redis-py, one round trip per hit, failing open.

Each entry is one Redis string: an ASCII header line, then the orjson payload::

    TG1 <fresh_until> <stale_until> <0|1>\\n{"name": "Strobe", ...}

so a hit is a single ``GET``, and the value stays valid UTF-8 for clients created with
``decode_responses=True`` (as in the design's example). Redis drops the key itself at
``stale_until`` (``SET ... PX``). Pattern invalidation walks ``SCAN MATCH`` and deletes with
``UNLINK`` in batches; never ``KEYS``, which blocks the server.

When Redis is unreachable (``REDIS_DOWN_ERRORS``), the shared :class:`RedisLink` is marked
down (one warning per outage) and, for its retry interval, operations are skipped without
touching the network; the manager turns that into misses and dropped writes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
import redis.asyncio
import redis.exceptions
from redis.connection import parse_url

from tunegate._policy.freshness import CacheEntry
from tunegate._redis import REDIS_DOWN_ERRORS, RedisLink
from tunegate.cache._backend import BackendError, split_key
from tunegate.cache.frozen import decode
from tunegate.exceptions import ConfigurationError

__all__ = ["RedisBackend"]

log = logging.getLogger("tunegate.cache")

_MAGIC = b"TG1"
_SCAN_COUNT = 500
_UNLINK_BATCH = 500
_WARN_EVERY = 60.0
# Anything redis-py raises, plus socket errors: fail open on all of them. Only the
# REDIS_DOWN_ERRORS among them mark the link down.
_FAILURES: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, *REDIS_DOWN_ERRORS)


def pack(entry: CacheEntry, payload: bytes) -> bytes:
    """Header line plus payload (``repr`` keeps the float stamps exact)."""
    header = f"{entry.fresh_until!r} {entry.stale_until!r} {int(entry.negative)}\n"
    return _MAGIC + b" " + header.encode("ascii") + payload


def unpack(key: str, raw: bytes | str) -> CacheEntry:
    """A stored string back to an entry; raises ``ValueError`` when it is not one of ours."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    newline = data.find(b"\n", 0, 96)
    if newline < 0 or not data.startswith(_MAGIC + b" "):
        raise ValueError("not a tunegate cache entry")
    _, fresh, stale, negative = data[:newline].split(b" ")
    value = decode(memoryview(data)[newline + 1 :])
    provider, kind = split_key(key)
    return CacheEntry(value, negative == b"1", False, provider, kind, float(fresh), float(stale))


def _ttl_ms(entry: CacheEntry, now: float) -> int:
    return max(1, int((entry.stale_until - now) * 1000.0) + 1)


class RedisBackend:
    """Entries in Redis, shared by every process that uses the same namespace."""

    name = "redis"

    def __init__(self, client: redis.Redis | redis.asyncio.Redis | str | RedisLink) -> None:
        if isinstance(client, str):
            try:  # a typo should fail here, not as a miss on every lookup
                parse_url(client)  # type: ignore[no-untyped-call]
            except ValueError as exc:
                raise ConfigurationError(f"bad Redis URL for the cache: {exc}") from None
        self.link = client if isinstance(client, RedisLink) else RedisLink(client)
        # close()/aclose() close what we created (from a URL, or the twin RedisLink derives
        # from the caller's client), never the caller's own client or a caller's RedisLink.
        given_link = isinstance(client, RedisLink)
        self._owns_sync = not given_link and not isinstance(client, redis.Redis)
        self._owns_aio = not given_link and not isinstance(client, redis.asyncio.Redis)
        self._warned_at = -_WARN_EVERY

    # -- failure handling --------------------------------------------------------------

    def _skip_if_down(self) -> None:
        if not self.link.available:
            raise BackendError("redis marked down")

    def _failed(self, exc: BaseException, what: str) -> BackendError:
        if isinstance(exc, REDIS_DOWN_ERRORS):
            self.link.mark_down(exc, "the cache")  # logs once per outage
        else:
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY:
                self._warned_at = now
                log.warning(
                    "redis cache %s failed; treated as a miss (%s)", what, type(exc).__name__
                )
        return BackendError(what)

    def _decode(self, key: str, raw: Any) -> CacheEntry | None:
        self.link.mark_up()
        if raw is None:
            return None
        try:
            return unpack(key, raw)
        except (ValueError, UnicodeError) as exc:
            raise self._failed(exc, "decode") from exc

    # -- sync --------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        self._skip_if_down()
        try:
            raw = self.link.sync.get(key)
        except _FAILURES as exc:
            raise self._failed(exc, "read") from exc
        return self._decode(key, raw)

    def put(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        self._skip_if_down()
        try:
            self.link.sync.set(key, pack(entry, payload), px=_ttl_ms(entry, now))
        except _FAILURES as exc:
            raise self._failed(exc, "write") from exc
        self.link.mark_up()

    def delete(self, key: str) -> int:
        self._skip_if_down()
        try:
            deleted = int(self.link.sync.unlink(key))
        except _FAILURES as exc:
            raise self._failed(exc, "delete") from exc
        self.link.mark_up()
        return deleted

    def delete_matching(self, pattern: str) -> int:
        self._skip_if_down()
        client = self.link.sync
        deleted = 0
        batch: list[Any] = []
        try:
            for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
                batch.append(key)
                if len(batch) >= _UNLINK_BATCH:
                    deleted += int(client.unlink(*batch))
                    batch.clear()
            if batch:
                deleted += int(client.unlink(*batch))
        except _FAILURES as exc:
            raise self._failed(exc, "delete") from exc
        self.link.mark_up()
        return deleted

    def close(self) -> None:
        if self._owns_sync:
            self.link.sync.close()

    # -- async (same steps, awaited on the running loop's client) ----------------------

    async def aget(self, key: str) -> CacheEntry | None:
        self._skip_if_down()
        try:
            raw = await self.link.aio.get(key)
        except _FAILURES as exc:
            raise self._failed(exc, "read") from exc
        return self._decode(key, raw)

    async def aput(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        self._skip_if_down()
        try:
            await self.link.aio.set(key, pack(entry, payload), px=_ttl_ms(entry, now))
        except _FAILURES as exc:
            raise self._failed(exc, "write") from exc
        self.link.mark_up()

    async def adelete(self, key: str) -> int:
        self._skip_if_down()
        try:
            deleted = int(await self.link.aio.unlink(key))
        except _FAILURES as exc:
            raise self._failed(exc, "delete") from exc
        self.link.mark_up()
        return deleted

    async def adelete_matching(self, pattern: str) -> int:
        self._skip_if_down()
        client = self.link.aio
        deleted = 0
        batch: list[Any] = []
        try:
            async for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
                batch.append(key)
                if len(batch) >= _UNLINK_BATCH:
                    deleted += int(await client.unlink(*batch))
                    batch.clear()
            if batch:
                deleted += int(await client.unlink(*batch))
        except _FAILURES as exc:
            raise self._failed(exc, "delete") from exc
        self.link.mark_up()
        return deleted

    async def aclose(self) -> None:
        """Close as :meth:`close` does, plus this event loop's asyncio client if ours."""
        if self._owns_aio:
            await self.link.aio.aclose()
        self.close()
