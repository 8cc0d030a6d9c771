"""Our own Redis connections, the fail-open rule every shared piece obeys, and its drivers.

The cache, the limiter and the breaker all take a ``redis=`` argument: a sync
``redis.Redis`` (as the design's examples do), a ``redis.asyncio.Redis``, or a URL.
:class:`RedisLink` never sends our commands through the caller's client object: it reads
where and how to connect (host, port or unix socket, db, credentials, every ``ssl_*``
setting, the TLS or plain connection class) and opens its own connections with short socket
and connect timeouts (0.5 s by default) and no retries. The limiter and the breaker run
before a request's deadline starts, so a stalled Redis must cost them a bounded wait, not
the caller's "no timeout" client. One sync client serves every thread; asyncio clients are
bound to one event loop, so each loop gets its own, closed when the loop ends.

When Redis cannot serve us (:data:`REDIS_FAILURES`: unreachable, stalled, out of memory, a
read-only replica, MISCONF ...), callers fall back (cache miss, local limiter, local breaker).
:class:`RedisLink` remembers an outage for ``retry_interval`` seconds, so a dead Redis costs
one failed attempt per interval rather than one per call, and logs one warning per outage.
What is an outage: a refused, reset or closed connection, or a server state that refuses us
(out of memory, read-only...), at once; a command that timed out only once it is the
:data:`TIMEOUTS_TO_DOWN`-th stall in a row. One slow command (a long script, a big reply, a
pause of the server) times out the commands in flight with it, which fall back one by one,
and must not take every piece to local state: the commands in flight together during one
stall count as one, and any reply in between starts the count again. An error that is not
an outage (a bug in one of our scripts, a key of the wrong type) falls back the same way
and is logged once.

Every Redis command and every script call of tunegate is one effect, :class:`RedisCall`,
and its fail-open rule lives in one place (:meth:`RedisLink.execute`): the reply, or the
call's ``down`` value when Redis cannot serve. Every Lua script is a file in ``tunegate/_lua``,
made once per process by :func:`lua` and called by SHA (EVALSHA, loaded on NOSCRIPT).

Other modules name redis-py's clients through :data:`SyncRedis` and :data:`AsyncRedis`, and
decide who closes a link with :meth:`RedisLink.adopt` (through :class:`LinkOwner`).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeAlias

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.retry
import redis.backoff
import redis.connection
import redis.exceptions
import redis.retry

from tunegate._drive import Effect
from tunegate.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_SOCKET_TIMEOUT",
    "DOWN",
    "REDIS_DOWN_ERRORS",
    "REDIS_FAILURES",
    "TIMEOUTS_TO_DOWN",
    "AsyncRedis",
    "LinkOwner",
    "LuaScript",
    "RedisCall",
    "RedisLike",
    "RedisLink",
    "RedisTarget",
    "ScriptCall",
    "SyncRedis",
    "is_outage",
    "is_timeout",
    "load_lua",
    "lua",
]

#: redis-py's client types, for annotations elsewhere: only this module imports redis.
SyncRedis: TypeAlias = redis.Redis
AsyncRedis: TypeAlias = redis.asyncio.Redis
#: What ``redis=`` arguments take: a client of either form or a URL ...
RedisTarget: TypeAlias = "SyncRedis | AsyncRedis | str"
#: ... or a :class:`RedisLink` shared with other components.
RedisLike: TypeAlias = "RedisLink | SyncRedis | AsyncRedis | str"

log = logging.getLogger("tunegate.redis")
_WARN_EVERY = 60.0  # seconds between two "redis cannot serve" warnings


DEFAULT_SOCKET_TIMEOUT = 0.5

# Every error a Redis call can end with. Shared components fail open on all of them:
# outages (is_outage) mark the link down for retry_interval; anything else is a bug in what
# we sent (a script error, a key of the wrong type), logged once, and that call falls back.
# LuaScript answers NOSCRIPT itself (it loads the script and retries).
REDIS_FAILURES: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)

# What "Redis is not there" looks like (kept for compatibility; is_outage is the full rule).
REDIS_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)

# Server states in which Redis answers but cannot serve us: out of memory, a read-only
# replica after a failover, no permission, a cluster without this slot...
_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    *REDIS_DOWN_ERRORS,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,
)
# ... and the ones redis-py leaves as a plain ResponseError, by their error code.
_OUTAGE_CODES = ("MISCONF", "BUSY", "NOREPLICAS", "LOADING", "MASTERDOWN", "CLUSTERDOWN")


#: Stalls in a row (commands timing out with no reply in between; the commands in flight
#: together during one stall count once) after which the link is marked down.
TIMEOUTS_TO_DOWN = 3

# redis-py's own (read, write and connect timeouts) and the builtin one (socket.timeout,
# asyncio's): one slow answer, not yet a sign that Redis is gone.
_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (redis.exceptions.TimeoutError, TimeoutError)


def is_timeout(exc: BaseException) -> bool:
    """Did a command wait past the socket timeout (rather than find no server at all)?"""
    return isinstance(exc, _TIMEOUT_ERRORS)


def is_outage(exc: BaseException) -> bool:
    """Does ``exc`` say Redis cannot serve anyone right now (rather than a bug in our call)?"""
    if isinstance(exc, _OUTAGE_ERRORS):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(_OUTAGE_CODES)


def _bare_pool_get(pool: type[Any]) -> bool:
    """Does this redis-py's ``get_connection`` of ``pool`` take no command name? (5.3+;
    before that the name was required, and :func:`_send` keeps to ``execute_command``.)"""
    try:
        param = inspect.signature(pool.get_connection).parameters["command_name"]
    except (KeyError, TypeError, ValueError):
        return False
    return param.default is None


_BARE_POOL_GET = _bare_pool_get(redis.ConnectionPool)
_ABARE_POOL_GET = _bare_pool_get(redis.asyncio.ConnectionPool)


def _send(client: redis.Redis, args: tuple[Any, ...]) -> Any:
    """One command on one of ``client``'s pooled connections, its reply parsed as redis-py
    parses it, without ``execute_command``'s per-call hooks (metrics, events, retry
    bookkeeping): about 15 us of a 50-60 us GET here, on every command of the hit path. We
    retry nothing and count our own; redis-py's own metrics do not see these commands."""
    if not _BARE_POOL_GET:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command(*args)  # type: ignore[no-untyped-call]
        return client.parse_response(conn, args[0])  # type: ignore[no-untyped-call]
    except redis.exceptions.ResponseError:
        raise  # a whole error reply was read: the connection is still in step
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]  # a reply may be half read
        raise
    finally:
        pool.release(conn)


_RESENDABLE = frozenset({"GET", "PING"})


class StaleConnection(redis.exceptions.ConnectionError):
    """A pooled connection failed a command that must not run twice: this call falls back,
    the link stays up (the pool's idle connections are dropped)."""


async def _asend(client: redis.asyncio.Redis, args: tuple[Any, ...]) -> Any:
    """:func:`_send` on an asyncio client (about 15 us of a 100 us GET here). An error or a
    cancellation inside the command disconnects the connection in redis-py itself.

    A pooled connection whose server went away (a restart) is checked by redis-py only
    through its stream's state, which knows of the EOF once this loop has run the stream's
    callback: a connection idle since then fails its first command with ConnectionError
    (the sync pool polls the socket itself and never hands one out). That is no outage:
    the pool's other idle connections date from the same server, so they are dropped too
    and the command goes once more, on a connection made afresh. A timeout is not retried
    (a stalled Redis costs one bounded wait); a second failure is the caller's to handle."""
    if not _ABARE_POOL_GET:
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_command(*args)
        return await client.parse_response(conn, args[0])
    except redis.exceptions.ConnectionError:
        # Sent again only when a second run changes nothing: a reply lost after the server
        # ran the command looks the same, and a token or a breaker failure must not count
        # twice (those fall back for this call instead).
        if args[0] not in _RESENDABLE:
            await pool.disconnect(inuse_connections=False)
            raise StaleConnection("an idle connection failed; not sent twice") from None
    finally:
        await pool.release(conn)
    await pool.disconnect(inuse_connections=False)
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await conn.send_command(*args)
        return await client.parse_response(conn, args[0])
    finally:
        await pool.release(conn)


def load_lua(name: str) -> str:
    """Read a Lua script shipped as package data in ``tunegate/_lua``."""
    return resources.files("tunegate").joinpath("_lua", name).read_text(encoding="utf-8")


_SCRIPTS: dict[str, LuaScript] = {}
_SCRIPTS_LOCK = threading.Lock()


def lua(name: str) -> LuaScript:
    """The script ``tunegate/_lua/<name>``, made once per process (one SHA per file)."""
    script = _SCRIPTS.get(name)
    if script is None:
        with _SCRIPTS_LOCK:
            script = _SCRIPTS.get(name)
            if script is None:
                script = _SCRIPTS[name] = LuaScript(load_lua(name))
    return script


# -- connection settings ---------------------------------------------------------------------

# The same connection in redis-py's sync and asyncio forms.
_TWINS: tuple[tuple[type[Any], type[Any]], ...] = (
    (redis.connection.Connection, redis.asyncio.connection.Connection),
    (redis.connection.SSLConnection, redis.asyncio.connection.SSLConnection),
    (
        redis.connection.UnixDomainSocketConnection,
        redis.asyncio.connection.UnixDomainSocketConnection,
    ),
)
_SYNC_OF: dict[type[Any], type[Any]] = {a: s for s, a in _TWINS} | {s: s for s, _ in _TWINS}
_ASYNC_OF: dict[type[Any], type[Any]] = dict(_TWINS) | {a: a for _, a in _TWINS}

# Copied from the caller's client or URL: where, as whom, over what transport (every "ssl_*"
# setting too). Timeouts, retries and response decoding are ours: the cache stores bytes.
_COPIED = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "client_name",
        "socket_keepalive",
        "socket_keepalive_options",
    }
)


def _init_params(cls: type[Any]) -> frozenset[str]:
    """The keyword arguments a connection class (or any class it extends) takes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names.update(inspect.signature(init).parameters)
    return frozenset(names)


_ACCEPTED: dict[type[Any], frozenset[str]] = {c: _init_params(c) for pair in _TWINS for c in pair}


def _fit(settings: Mapping[str, Any], cls: type[Any]) -> dict[str, Any]:
    """``settings`` as ``cls`` takes them; a setting in force that it cannot take is an error.

    Unset ones (None, False) are dropped: the sync TLS connection has OCSP options that the
    asyncio one lacks, and silently losing one that is set would weaken the connection.
    """
    accepted = _ACCEPTED[cls]
    fitted: dict[str, Any] = {}
    for name, value in settings.items():
        if name in accepted:
            fitted[name] = value
        elif value is not None and value is not False:
            raise ConfigurationError(
                f"tunegate cannot open a {cls.__module__}.{cls.__name__} with the setting"
                f" {name!r} of your Redis client (redis-py has no such option there); give a"
                " redis:// or rediss:// URL with the settings both forms support"
            )
    return fitted


def _settings(client: object) -> tuple[type[Any], type[Any], dict[str, Any]]:
    """The sync and asyncio connection classes and the copied settings of ``client``."""
    if isinstance(client, str):
        try:
            kwargs: dict[str, Any] = redis.connection.parse_url(client)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL: {exc}") from None
        cls: type[Any] = kwargs.pop("connection_class", redis.connection.Connection)
    elif isinstance(client, redis.Redis | redis.asyncio.Redis):
        pool = client.connection_pool
        cls, kwargs = pool.connection_class, dict(pool.connection_kwargs)
    else:
        raise ConfigurationError(
            "redis= takes a redis.Redis, a redis.asyncio.Redis, a URL or a RedisLink,"
            f" not {type(client).__name__}"
        )
    if cls not in _SYNC_OF:
        raise ConfigurationError(
            f"tunegate opens its own Redis connections from your client's settings and knows"
            f" plain, TLS and unix-socket connections, not {cls.__name__}; give a redis://,"
            " rediss:// or unix:// URL instead"
        )
    copied = {k: v for k, v in kwargs.items() if k in _COPIED or k.startswith("ssl_")}
    if not isinstance(copied.get("socket_keepalive_options"), Mapping):
        copied.pop("socket_keepalive_options", None)  # redis-py's "unset" marker
    return _SYNC_OF[cls], _ASYNC_OF[cls], copied


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be seconds, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


# -- per-loop asyncio clients ---------------------------------------------------------------


async def _close_with_loop(client: redis.asyncio.Redis) -> AsyncGenerator[None, None]:
    # asyncio.run() and asyncio.Runner finalize every live async generator of their loop
    # (loop.shutdown_asyncgens) before closing it. That is the one hook into a loop's end,
    # so this generator, parked at its yield, closes the loop's client while it can still run.
    try:
        yield
    finally:
        await client.aclose()


def _start(closer: AsyncGenerator[None, None]) -> None:
    """Run ``closer`` to its yield now; that also registers it with the running loop."""
    step = closer.asend(None)
    try:
        step.send(None)  # nothing before the yield awaits, so one step reaches it
    except StopIteration:
        return
    step.close()
    raise RuntimeError("the loop-end closer awaited before its yield")


@dataclass(frozen=True, slots=True)
class _LoopClient:
    client: redis.asyncio.Redis
    closer: AsyncGenerator[None, None]


class RedisLink:
    """Our sync client, our per-event-loop asyncio clients, and the shared up/down state.

    Args:
        client: a ``redis.Redis``, a ``redis.asyncio.Redis`` or a URL. Only its connection
            settings are used; the object itself is never called, closed or changed.
        retry_interval: seconds to leave Redis alone after it failed to serve us.
        socket_timeout: seconds any one read or write may take on our connections.
        socket_connect_timeout: seconds a connect may take (default: ``socket_timeout``).
    """

    def __init__(
        self,
        client: RedisTarget,
        *,
        retry_interval: float = 1.0,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        socket_connect_timeout: float | None = None,
    ) -> None:
        self._sync_class, self._async_class, self._settings = _settings(client)
        self._socket_timeout = _positive("socket_timeout", socket_timeout)
        self._connect_timeout = (
            self._socket_timeout
            if socket_connect_timeout is None
            else _positive("socket_connect_timeout", socket_connect_timeout)
        )
        self._sync: redis.Redis | None = None
        self._aio: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._lock = threading.Lock()
        self.retry_interval = retry_interval
        self._down_until = 0.0
        # Stalls in a row (reset by any reply) and the number of the latest: a command
        # that sees a later number on timing out was in flight during a stall counted.
        self._timeouts = 0
        self._stall = 0
        self._outage_logged = False
        self._last_warning = float("-inf")
        self._bugs_logged: set[str] = set()

    @classmethod
    def adopt(cls, target: RedisLike | None) -> tuple[RedisLink | None, bool]:
        """The link for ``target`` and whether the adopter owns it, the one rule for who
        closes a link: a link made here from a client or a URL is the adopter's to close; a
        RedisLink handed in belongs to whoever made it (others may share it)."""
        if target is None or isinstance(target, RedisLink):
            return target, False
        return cls(target), True

    def __repr__(self) -> str:
        where = self._settings.get("path") or (
            f"{self._settings.get('host', 'localhost')}:{self._settings.get('port', 6379)}"
        )
        return f"<RedisLink {self._sync_class.__name__} {where} db={self._settings.get('db', 0)}>"

    @property
    def socket_timeout(self) -> float:
        """Seconds one read or write may take on our connections."""
        return self._socket_timeout

    def _kwargs(self, cls: type[Any], retry: Any) -> dict[str, Any]:
        ours = {
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._connect_timeout,
            "retry": retry,  # no retries: a failed call falls back at once
        }
        return _fit(self._settings, cls) | {k: v for k, v in ours.items() if k in _ACCEPTED[cls]}

    @property
    def sync(self) -> redis.Redis:
        """Our sync client (thread-safe; made on first use)."""
        client = self._sync
        if client is None:
            with self._lock:
                client = self._sync
                if client is None:
                    retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
                    pool = redis.ConnectionPool(
                        connection_class=self._sync_class, **self._kwargs(self._sync_class, retry)
                    )
                    client = self._sync = redis.Redis.from_pool(pool)
        return client

    @property
    def aio(self) -> redis.asyncio.Redis:
        """Our asyncio client for the running loop (asyncio clients are bound to one loop).

        It is closed when the loop ends through ``asyncio.run`` or ``asyncio.Runner``, or by
        :meth:`aclose`.
        """
        loop = asyncio.get_running_loop()
        entry = self._aio.get(loop)
        if entry is None:
            entry = self._new_loop_client(loop)
        return entry.client

    def _new_loop_client(self, loop: asyncio.AbstractEventLoop) -> _LoopClient:
        retry = redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0)
        pool = redis.asyncio.ConnectionPool(
            connection_class=self._async_class, **self._kwargs(self._async_class, retry)
        )
        client = redis.asyncio.Redis.from_pool(pool)
        closer = _close_with_loop(client)
        _start(closer)
        entry = _LoopClient(client, closer)
        with self._lock:
            self._forget_closed_loops()
            self._aio[loop] = entry
        return entry

    def _forget_closed_loops(self) -> None:
        # Their loops ran each closer at shutdown; what is left is an entry to drop.
        for loop in [loop for loop in self._aio if loop.is_closed()]:
            del self._aio[loop]

    def close(self) -> None:
        """Close our sync client (made again if used again) and forget closed loops' clients."""
        with self._lock:
            client, self._sync = self._sync, None
            self._forget_closed_loops()
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close our asyncio client of the running loop (made again if used again)."""
        loop = asyncio.get_running_loop()
        with self._lock:  # another thread may be iterating the dict to forget closed loops
            entry = self._aio.pop(loop, None)
        if entry is not None:
            await entry.closer.aclose()  # its ``finally`` closes the client

    # -- running commands and scripts, failing open: the one place ---------------------

    def execute(self, call: RedisCall) -> Any:
        """``call``'s reply, or ``call.down`` when Redis cannot serve it now."""
        if not self.available:
            return call.down
        stall = self._stall
        try:
            if call.script is not None:
                reply = call.script.run(self.sync, call.keys, call.args)
            else:
                reply = _send(self.sync, call.command)
        except REDIS_FAILURES as exc:
            self.failed(exc, call.what, stall)
            return call.down
        self.mark_up()
        return reply

    async def aexecute(self, call: RedisCall) -> Any:
        """The asyncio form of :meth:`execute`, on the running loop's client."""
        if not self.available:
            return call.down
        stall = self._stall
        try:
            if call.script is not None:
                reply = await call.script.arun(self.aio, call.keys, call.args)
            else:
                reply = await _asend(self.aio, call.command)
        except REDIS_FAILURES as exc:
            self.failed(exc, call.what, stall)
            return call.down
        self.mark_up()
        return reply

    def run_script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[Any], what: str
    ) -> Any:
        """``script``'s reply, or None when Redis cannot serve it now (``what`` falls back)."""
        return self.execute(ScriptCall(self, script, keys, args, what))

    async def arun_script(
        self, script: LuaScript, keys: Sequence[str], args: Sequence[Any], what: str
    ) -> Any:
        """The asyncio form of :meth:`run_script`."""
        return await self.aexecute(ScriptCall(self, script, keys, args, what))

    # -- fail-open bookkeeping -------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while a recent outage says Redis cannot serve; True once the interval passed."""
        return time.monotonic() >= self._down_until

    def failed(self, exc: BaseException, what: str, stall: int | None = None) -> None:
        """Account for ``exc`` (one of :data:`REDIS_FAILURES`), after which ``what`` fell back.

        A timeout is one more stall in a row, unless ``stall`` (:attr:`_stall` when the
        command was sent) says a stall it was in flight during was counted already; the
        :data:`TIMEOUTS_TO_DOWN`-th marks the link down. Any other outage marks it down at
        once (one warning per outage); any other error is a bug in what we sent, logged
        once per ``what`` and not held against Redis.
        """
        if isinstance(exc, StaleConnection):
            log.debug("a pooled redis connection failed for %s, which falls back once", what)
        elif is_timeout(exc):
            if stall is None or stall == self._stall:  # a new stall (threads: roughly)
                self._stall += 1
                self._timeouts += 1
            if self._timeouts >= TIMEOUTS_TO_DOWN:
                self.mark_down(exc, what)
            else:
                log.debug("redis timed out for %s, which falls back for this call", what)
        elif is_outage(exc):
            self.mark_down(exc, what)
        elif what not in self._bugs_logged:
            self._bugs_logged.add(what)
            log.error(
                "redis refused a command of %s, which falls back to local state for it"
                " (%s: %s); this is a bug, please report it",
                what,
                type(exc).__name__,
                exc,
            )

    def mark_down(self, exc: BaseException, what: str) -> None:
        now = time.monotonic()
        self._down_until = now + self.retry_interval
        if self._outage_logged:
            return
        self._outage_logged = True
        # A flapping Redis (out of memory: reads work, writes fail) must not log twice a
        # second: one warning per outage, and at most one a minute.
        level = logging.WARNING if now - self._last_warning >= _WARN_EVERY else logging.DEBUG
        if level == logging.WARNING:
            self._last_warning = now
        log.log(
            level,
            "redis unreachable or unable to serve; %s falls back to local state until it"
            " recovers (%s)",
            what,
            type(exc).__name__,
        )

    def mark_up(self) -> None:
        if self._timeouts:  # a reply: the stalls before it were not in a row
            self._timeouts = 0
        if self._outage_logged:
            self._outage_logged = False
            log.info("redis reachable again; shared state resumed")


class LinkOwner:
    """The optional RedisLink of a component (limiter, breaker, registry, Redis cache),
    adopted by :meth:`RedisLink.adopt`: closed by the component only when it made it."""

    _link: RedisLink | None
    _owns_link: bool

    def _adopt(self, redis: RedisLike | None) -> None:
        self._link, self._owns_link = RedisLink.adopt(redis)

    def close(self) -> None:
        """Close the Redis connections this object opened (a RedisLink you gave stays
        open). The object stays usable: it connects again when next used."""
        if self._owns_link and self._link is not None:
            self._link.close()

    async def aclose(self) -> None:
        """Close the Redis connections this object opened, the running loop's included."""
        if self._owns_link and self._link is not None:
            await self._link.aclose()
            self._link.close()


class LuaScript:
    """A Lua script called by SHA on any client, loaded (``SCRIPT LOAD``) when Redis
    answers NOSCRIPT, as redis-py's ``Script`` does. Bound to no client, so nothing here
    keeps a client or its connections alive. ``EVALSHA`` is sent as a plain command
    (:func:`_send`, :func:`_asend`): ``Script.__call__`` costs a few microseconds a call in
    argument checks, and scripts sit on the hit path."""

    __slots__ = ("_encoded", "sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._encoded = source.encode("utf-8")
        self.sha = hashlib.sha1(self._encoded).hexdigest()  # the id Redis gives the script

    def run(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        call = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return _send(client, call)
        except redis.exceptions.NoScriptError:  # a new or flushed server
            _send(client, ("SCRIPT LOAD", self._encoded))
            return _send(client, call)

    async def arun(
        self, client: redis.asyncio.Redis, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        call = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return await _asend(client, call)
        except redis.exceptions.NoScriptError:
            await _asend(client, ("SCRIPT LOAD", self._encoded))
            return await _asend(client, call)


# -- the one Redis effect ---------------------------------------------------------------


class _Down:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DOWN"


#: The ``down`` value of a call whose caller must tell "Redis cannot serve" from a None reply.
DOWN: Any = _Down()


@dataclass(frozen=True, slots=True)
class RedisCall(Effect):
    """One command (``command=("GET", key)``) or one script (``script``, ``keys``,
    ``args``) on the link, failing open: its reply, or ``down`` when Redis cannot serve it.
    ``what`` names the caller in the one log line an outage or a refused command costs."""

    link: RedisLink
    what: str
    command: tuple[Any, ...] = ()
    script: LuaScript | None = None
    keys: Sequence[str] = ()
    args: Sequence[Any] = ()
    down: Any = None

    def run(self) -> Any:
        return self.link.execute(self)

    async def arun(self) -> Any:
        return await self.link.aexecute(self)


class ScriptCall(RedisCall):
    """A :class:`RedisCall` of a script, built positionally; its reply is None when Redis
    cannot serve it (scripts never reply nil). Not another effect: the same run, the same
    fail-open rule."""

    __slots__ = ()

    def __init__(
        self,
        link: RedisLink,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[Any],
        what: str,
    ) -> None:
        RedisCall.__init__(self, link, what, script=script, keys=keys, args=args)
