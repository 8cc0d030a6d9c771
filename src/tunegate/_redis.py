"""One Redis connection setting, two drivers, and the fail-open rule every shared piece obeys.

The cache, the limiter and the breaker all take a ``redis=`` argument. Users hand us a sync
``redis.Redis`` (as the design's examples do), an ``redis.asyncio.Redis``, or a URL; the
async forms of our operations need an asyncio client and the sync forms a sync one, so
:class:`RedisLink` derives the missing twin from the same host, port, db and credentials.

When Redis cannot be reached, callers fall back (cache miss, local limiter, local breaker);
:class:`RedisLink` remembers the failure for ``retry_interval`` seconds so a dead Redis costs
one failed connect per interval rather than one per call, and logs one warning per outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
import redis.asyncio
import redis.exceptions

__all__ = ["REDIS_DOWN_ERRORS", "LuaScript", "RedisLink", "load_lua"]

log = logging.getLogger("tunegate.redis")

# What "Redis is not there" looks like; anything else (a script bug) must surface.
REDIS_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)

_COPIED_KWARGS = (
    "host",
    "port",
    "path",
    "db",
    "username",
    "password",
    "socket_timeout",
    "socket_connect_timeout",
)


def load_lua(name: str) -> str:
    """Read a Lua script shipped as package data in ``tunegate/_lua``."""
    return resources.files("tunegate").joinpath("_lua", name).read_text(encoding="utf-8")


def _twin_kwargs(pool_kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: pool_kwargs[k] for k in _COPIED_KWARGS if k in pool_kwargs}
    if kwargs.get("path"):
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        kwargs["unix_socket_path"] = kwargs.pop("path")
    return kwargs


class RedisLink:
    """A sync client, per-event-loop asyncio clients, and the shared up/down state."""

    def __init__(
        self,
        client: redis.Redis | redis.asyncio.Redis | str,
        *,
        retry_interval: float = 1.0,
        socket_timeout: float = 0.5,
    ) -> None:
        self._sync: redis.Redis | None = None
        self._async_given: redis.asyncio.Redis | None = None
        self._kwargs: dict[str, Any]
        if isinstance(client, str):
            self._url: str | None = client
            self._kwargs = {}
            self._socket_timeout = socket_timeout
        elif isinstance(client, redis.asyncio.Redis):
            self._url = None
            self._async_given = client
            self._kwargs = _twin_kwargs(client.connection_pool.connection_kwargs)
        else:
            self._url = None
            self._sync = client
            self._kwargs = _twin_kwargs(client.connection_pool.connection_kwargs)
        self._socket_timeout = socket_timeout
        self._aio: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self.retry_interval = retry_interval
        self._down_until = 0.0
        self._outage_logged = False

    @property
    def sync(self) -> redis.Redis:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self._make_sync()
        return self._sync

    def _make_sync(self) -> redis.Redis:
        if self._url is not None:
            return redis.Redis.from_url(
                self._url,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._socket_timeout,
            )
        return redis.Redis(**self._kwargs)

    @property
    def aio(self) -> redis.asyncio.Redis:
        """The asyncio client for the running loop (asyncio clients are bound to one loop)."""
        if self._async_given is not None:
            return self._async_given  # the caller's client, on the caller's loop
        loop = asyncio.get_running_loop()
        client = self._aio.get(loop)
        if client is None:
            if self._url is not None:
                client = redis.asyncio.Redis.from_url(
                    self._url,
                    socket_timeout=self._socket_timeout,
                    socket_connect_timeout=self._socket_timeout,
                )
            else:
                client = redis.asyncio.Redis(**self._kwargs)
            self._aio[loop] = client
        return client

    def close(self) -> None:
        """Close the clients this link made itself (a client the caller gave stays open)."""
        if self._sync is not None and (self._url is not None or self._async_given is not None):
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close the running loop's asyncio client, when this link made it."""
        loop = asyncio.get_running_loop()
        client = self._aio.pop(loop, None)
        if client is not None:
            await client.aclose()

    # -- fail-open bookkeeping -------------------------------------------------

    @property
    def available(self) -> bool:
        """False while a recent failure says Redis is down; True once the interval passed."""
        return time.monotonic() >= self._down_until

    def mark_down(self, exc: BaseException, what: str) -> None:
        self._down_until = time.monotonic() + self.retry_interval
        if not self._outage_logged:
            self._outage_logged = True
            log.warning(
                "redis unreachable; %s falls back to local state until it returns (%s)",
                what,
                type(exc).__name__,
            )

    def mark_up(self) -> None:
        if self._outage_logged:
            self._outage_logged = False
            log.warning("redis reachable again; shared state resumed")


class LuaScript:
    """A Lua script registered once per client and called by SHA (redis-py reloads on NOSCRIPT)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._by_client: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def _script(self, client: Any) -> Any:
        script = self._by_client.get(client)
        if script is None:
            script = client.register_script(self.source)
            self._by_client[client] = script
        return script

    def run(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self._script(client)(keys=list(keys), args=list(args))

    async def arun(
        self, client: redis.asyncio.Redis, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        return await self._script(client)(keys=list(keys), args=list(args))
