"""Our own Redis connections, the fail-open rule every shared piece obeys, and its drivers.

The cache, the limiter and the breaker all take a ``redis=`` argument: a sync
``redis.Redis`` (as the design's examples do), a ``redis.asyncio.Redis``, or a URL.
:class:`RedisLink` never sends our commands through the caller's client object: it reads
where and how to connect (host, port or unix socket, db, credentials, every ``ssl_*``
setting, the TLS or plain connection class) and opens its own connections with short socket
and connect timeouts (0.5 s by default) and no retries. The limiter and the breaker run
before a request's deadline starts, so a stalled Redis must cost them a bounded wait, not
the caller's "no timeout" client. One sync client serves every thread; asyncio connections
are bound to one event loop, so each loop gets its own, closed when the loop ends.

Asyncio commands do not go through redis-py's asyncio pool: its get_connection/release (an
asyncio lock each) and per-command timeouts (a ``wait_for`` task per write, a timer per read)
cost about two thirds of a GET's CPU (bench/bench_redis_command.py: about 50 us of CPU per
GET through the pool, 18 us on our own connections with redis-py 8; about 40 us before 8,
whose idle check awaits a read). Each loop keeps its own few idle
connections (:class:`_LoopConns`: LIFO, at most :data:`IDLE_CAP` kept; in flight, one per
command awaiting Redis), made with the class and settings the loop's redis-py client
(:attr:`RedisLink.aio`) uses, and reads replies through that client's ``parse_response``, so
every reply is parsed as redis-py parses it. The timeout stays ours and still bounds every
command: redis-py's own per-read timeout is off on these connections only, and one sweeper
per loop (a single timer, armed only while commands are in flight) aborts the socket of a
command past ``socket_timeout``, which then fails with ``redis.exceptions.TimeoutError`` as
before. A connection that failed mid-command is closed, never reused. An idle connection
can be dead after a Redis restart and fail its first command: the command goes once more,
on a fresh connection, only if a second run changes nothing (:data:`RESENDABLE`, or a script
made with ``resend=True``); otherwise this call falls back (:class:`StaleConnection`) and
the link stays up. A forked child forgets the parent's connections (``os.register_at_fork``)
rather than read the parent's replies. Sync commands skip redis-py's pool too
(:class:`_SyncConns`: one LIFO for every thread, no lock; an idle connection is polled
before reuse, as that pool does, so after a restart it reconnects before the command goes;
the socket's own timeouts), which saves about 40% of a sync GET's CPU.

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
import functools
import hashlib
import inspect
import logging
import math
import os
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
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
    "IDLE_CAP",
    "REDIS_DOWN_ERRORS",
    "REDIS_FAILURES",
    "RESENDABLE",
    "TIMEOUTS_TO_DOWN",
    "AsyncRedis",
    "LinkOwner",
    "LuaScript",
    "RedisCall",
    "RedisLike",
    "RedisLink",
    "RedisTarget",
    "ScriptCall",
    "StaleConnection",
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


class StaleConnection(redis.exceptions.ConnectionError):
    """An idle asyncio connection failed a command that must not run twice: this call falls
    back, the link stays up (the loop's idle connections are dropped)."""


# -- the resend rule ------------------------------------------------------------------------
# An idle connection can be dead (a Redis restart) and fail its first command with
# ConnectionError. Nothing tells "the server never got it" from "it ran and the reply was
# lost", so a command goes again, on a fresh connection, only when a second run leaves Redis
# as one run left it, and answers alike (but for the counts of DEL and UNLINK, below).
# Everything else falls back for this call (StaleConnection): a token or a breaker failure
# must not count twice.

#: Commands sent again after an idle connection failed them, and why each may be:
RESENDABLE: frozenset[str] = frozenset(
    {
        # Read only: a second run reads what a first one read (or what changed since).
        "PING",
        "ECHO",
        "GET",
        "MGET",
        "EXISTS",
        "TTL",
        "PTTL",
        "SCAN",  # the cursor is the caller's; the server keeps no state between calls
        # The same text under the same SHA: loading it twice is loading it once.
        "SCRIPT LOAD",
        # The keys end absent either way. The reply (how many were deleted) can come out
        # lower when the first run did delete: the cache's invalidation count may then
        # undercount, which is better than leaving a stale entry in place.
        "DEL",
        "UNLINK",
    }
)
#: SET is resendable with these options only (each followed by this many arguments): the
#: same value again, the same absolute expiry or a relative one restarted a few ms later
#: (a write of another process between the two runs is overwritten, as if our one write had
#: come that much later: last writer wins, as for any cache write). NX, GET and the compare
#: forms (IFEQ...) would answer otherwise the second time.
_SET_OPTIONS: dict[str, int] = {"EX": 1, "PX": 1, "EXAT": 1, "PXAT": 1, "KEEPTTL": 0}


def _word(arg: object) -> str:
    return (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)).upper()


def _resendable(args: tuple[Any, ...]) -> bool:
    """Does a second run of the command ``args`` change nothing (see :data:`RESENDABLE`)?
    Evaluated only after a failure, never on the command path."""
    name = _word(args[0])
    if name in RESENDABLE:
        return True
    if name != "SET":
        return False
    options, i = args[3:], 0  # SET key value [options]
    while i < len(options):
        width = _SET_OPTIONS.get(_word(options[i]))
        if width is None:
            return False
        i += 1 + width
    return True


# Scripts that declare themselves resendable (lua() sets LuaScript.resend): each is keyed by
# a lease token of ours, so a second run finds what the first left and does nothing more.
# Not token_bucket.lua (a second acquire takes a second token), breaker.lua (a failure or a
# success would count twice), singleflight_claim.lua (the second run finds our own lease and
# answers "follow": we would wait on ourselves).
_RESENDABLE_SCRIPTS = frozenset(
    {
        # Drops the lease only while it holds our tag; a second run finds it gone (0).
        "lease_release.lua",
        # PEXPIREs our lease again if still ours: the same deadline, a few ms later.
        "singleflight_renew.lua",
        # The same outcome (and cache entry) SET again; our lease is gone by then, and a
        # new leader's holds another token, which the GET-compare leaves alone. Replies 1.
        "singleflight_finish.lua",
        "singleflight_finish_store.lua",
        # Reads, then SET NX of our lease; when the lease is already ours it answers "lead"
        # again (written for exactly this), so a second run gives the same reply.
        "singleflight_lookup_claim.lua",
    }
)


# -- our own command connections: sync (every thread), asyncio (per loop, one sweeper) -----

#: Idle connections one loop (or the sync side) keeps. In-flight ones are bounded by the
#: callers' concurrency (one per command awaiting Redis, as redis-py's own pool does); when
#: a burst ends, those past this cap are closed as they come back.
IDLE_CAP = 32


def _transport(conn: redis.asyncio.Connection) -> asyncio.WriteTransport | None:
    """The transport under ``conn``, which the sweeper aborts to end a command that ran past
    its deadline. redis-py has no public synchronous way to cut a connection (its
    ``disconnect()`` is a coroutine and closes, which first flushes what a stalled server
    does not read), so this reads its private ``_writer`` (the asyncio StreamWriter it
    opened): the one private attribute of redis-py used here, checked by
    tests/test_redis_commands.py. None if redis-py keeps it elsewhere: such a connection
    then times its own reads (see :meth:`_LoopConns._run`)."""
    writer = getattr(conn, "_writer", None)
    return writer.transport if isinstance(writer, asyncio.StreamWriter) else None


# Connections a forked child inherited are the parent's sockets: a child still on the
# parent's loop object (get_event_loop(), a loop passed across the fork) must not read the
# parent's replies. Counted at fork rather than checking os.getpid() on every command.
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)

# A redis-py that keeps no ``_writer`` gives the sweeper nothing to cut: its own
# connections then time their reads and connect, set before connecting.
_CUTTABLE = hasattr(redis.asyncio.Connection(), "_writer")

# "Is there anything to read?" (EOF included): ``can_read`` since redis-py 8 (which warns on
# the older name), ``can_read_destructive`` before.
_CAN_READ = (
    "can_read"
    if hasattr(redis.asyncio.connection.AbstractConnection, "can_read")
    else "can_read_destructive"
)


def _should_reconnect(conn: object) -> bool:
    check = getattr(conn, "should_reconnect", None)  # redis-py 8: maintenance notices
    return bool(check()) if check is not None else False


class _SyncConns:
    """Our sync command connections, shared by every thread: a LIFO of idle ones, taken and
    given back with ``list.pop``/``append`` (atomic under the GIL, so no lock; a thread
    holds a connection alone while its command runs). Not redis-py's pool: its
    get_connection/release (a lock, a pid check and, since redis-py 8, metrics recorders
    each) cost about 40% of a GET's CPU here (5.4 of 13.8 us). As that pool does, an idle
    connection is polled before reuse: one that sees an EOF (a restarted server) or stray
    bytes is reconnected before the command goes, so nothing is sent twice. Timeouts are
    the socket's own (set once per connection). A forked child forgets the parent's."""

    __slots__ = ("_class", "_client", "_forks", "_idle", "_kwargs", "closed")

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        self._client = client  # for parse_response (its response callbacks) only
        self._class = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)  # a copy: that pool may change its own
        self._idle: list[redis.connection.AbstractConnection] = []
        self._forks = _forks
        self.closed = False

    def send(self, args: tuple[Any, ...], resend: bool = False) -> Any:
        """``args``'s reply (``resend`` is the asyncio form's; never needed here)."""
        if self._forks != _forks:
            self._forks = _forks
            self._idle = []  # the parent's sockets: forgotten, not closed
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._class(**self._kwargs)  # connects on its first send
        else:
            try:
                dirty = conn.can_read()  # EOF seen, stray bytes: out of step
            except (redis.exceptions.RedisError, OSError):
                dirty = True
            if dirty:
                conn.disconnect()  # type: ignore[no-untyped-call]  # reconnects on send
        try:
            conn.send_command(*args)  # type: ignore[no-untyped-call]
            reply = self._client.parse_response(conn, args[0])  # type: ignore[no-untyped-call]
        except redis.exceptions.ResponseError:
            self._keep(conn)  # a whole error reply was read: in step
            raise
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]  # a reply may be half read
            raise
        self._keep(conn)
        return reply

    def _keep(self, conn: redis.connection.AbstractConnection) -> None:
        idle = self._idle
        # Not one redis-py disconnected (an error reply in its handshake: a bad db) nor one
        # a server maintenance notice asked to move (redis-py 8's pool checks the same).
        if (
            not self.closed
            and len(idle) < IDLE_CAP
            and getattr(conn, "_sock", None) is not None
            and not _should_reconnect(conn)
        ):
            idle.append(conn)
        else:
            conn.disconnect()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()  # type: ignore[no-untyped-call]


class _LoopConns:
    """One event loop's command connections: idle ones (LIFO), the commands in flight with
    their deadlines, and the one sweeper timer that ends those past it.

    Only the loop's own thread touches it. A command takes the newest idle connection (or
    makes one), sends, reads the reply through the loop client's ``parse_response`` (so
    replies are parsed exactly as redis-py parses them), and puts it back. redis-py's
    per-read and per-write timeouts are off on these connections (each costs a timer or a
    task per command); instead each command in flight has a deadline, and a single
    ``call_at`` timer per loop, armed only while commands are in flight, aborts the
    transport of any command past it, so its read fails and the caller gets
    ``redis.exceptions.TimeoutError``, as from redis-py's own timeout. The TCP connect keeps
    redis-py's own connect timeout; the handshake after it is under the sweeper too."""

    __slots__ = (
        "_aborted",
        "_class",
        "_client",
        "_connect_timeout",
        "_flights",
        "_forks",
        "_idle",
        "_kwargs",
        "_loop",
        "_sweeper",
        "_timeout",
        "closed",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: redis.asyncio.Redis,
        cls: type[Any],
        kwargs: dict[str, Any],
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self._loop = loop
        self._client = client  # for parse_response (its response callbacks) only
        self._class = cls
        self._kwargs = kwargs
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._idle: list[redis.asyncio.Connection] = []
        self._flights: dict[redis.asyncio.Connection, float] = {}  # -> deadline, loop.time()
        self._aborted: set[redis.asyncio.Connection] = set()  # cut by the sweeper
        self._sweeper: asyncio.TimerHandle | None = None
        self._forks = _forks
        self.closed = False

    async def send(self, args: tuple[Any, ...], resend: bool = False) -> Any:
        """``args``'s reply. ``resend``: the caller (a script) declares a second run
        harmless; commands are judged by :data:`RESENDABLE`."""
        if self._forks != _forks:
            self._after_fork()
        idle = self._idle  # the same list for the loop's life: emptied, never replaced
        while idle:
            conn = idle.pop()
            try:
                dirty = await getattr(conn, _CAN_READ)()  # EOF seen, stray bytes: out of step
            except (redis.exceptions.RedisError, OSError):  # redis-py 5's parser: RedisError
                dirty = True
            except BaseException:  # cancelled while checking (redis-py < 8 awaits there)
                await self._drop(conn)
                raise
            if dirty:
                await self._drop(conn)
                continue
            try:
                return await self._run(conn, args, False)
            except redis.exceptions.ConnectionError:
                # Idle since a server that is gone (a restart the loop has not seen yet):
                # so are the other idle ones. Not an outage; see "the resend rule".
                await self.drop_idle()
                if not (resend or _resendable(args)):
                    raise StaleConnection("an idle connection failed; not sent twice") from None
            break
        return await self._run(self._class(**self._kwargs), args, True)

    async def _run(self, conn: redis.asyncio.Connection, args: tuple[Any, ...], new: bool) -> Any:
        loop = self._loop
        flights = self._flights
        deadline = loop.time() + (self._connect_timeout + self._timeout if new else self._timeout)
        flights[conn] = deadline
        sweeper = self._sweeper
        # Re-armed only for an earlier deadline: one comparison a command in the steady
        # state, where deadlines only grow (a new connection's is later than the next).
        if sweeper is None or sweeper.when() > deadline:
            if sweeper is not None:
                sweeper.cancel()
            self._sweeper = loop.call_at(deadline, self._sweep)
        kept = False
        try:
            if new:
                if not _CUTTABLE:  # cannot be cut: redis-py times its reads
                    conn.socket_timeout = self._timeout
                await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command(*args)
            reply = await self._client.parse_response(conn, args[0])
            kept = True
        except redis.exceptions.ResponseError:
            # A whole error reply was read: in step, unless it came in a new connection's
            # handshake (a bad db, NOPERM), after which redis-py has disconnected it.
            kept = conn.is_connected
            raise
        except BaseException as exc:
            if conn in self._aborted and not isinstance(exc, asyncio.CancelledError):
                raise redis.exceptions.TimeoutError(
                    f"redis did not answer within {self._timeout:g} s"
                ) from None
            raise
        finally:
            flights.pop(conn, None)  # gone already in a forked child (_after_fork)
            if self._aborted and conn in self._aborted:
                self._aborted.discard(conn)
                kept = False  # cut, even if its reply had arrived
            if kept and not self.closed and len(self._idle) < IDLE_CAP:
                self._idle.append(conn)
            else:
                await self._drop(conn)
        return reply

    def _sweep(self) -> None:
        """End the commands past their deadline; re-arm for the next one, if any."""
        self._sweeper = None
        flights = self._flights
        if not flights:
            return  # idle: no timer is left behind
        now = self._loop.time()
        due = math.inf
        for conn, deadline in flights.items():
            if deadline > now:
                due = min(due, deadline)
            elif conn not in self._aborted:
                transport = _transport(conn)
                if transport is None:  # still connecting, under its own connect timeout
                    due = min(due, now + self._timeout / 4)  # look again soon
                else:
                    self._aborted.add(conn)
                    transport.abort()  # the pending read or write fails at once
        if due < math.inf:
            self._sweeper = self._loop.call_at(due, self._sweep)

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's connections without closing them (their
        sockets are the parent's too; closing the child's copies would be harmless, but a
        transport's close may write)."""
        self._forks = _forks
        self._idle.clear()
        self._flights.clear()
        self._aborted.clear()

    @staticmethod
    async def _drop(conn: redis.asyncio.Connection) -> None:
        if conn.is_connected:
            await conn.disconnect(nowait=True)

    async def drop_idle(self) -> None:
        idle = self._idle[:]
        self._idle.clear()  # at once: another command must not take one while we close
        for conn in idle:
            await self._drop(conn)

    async def aclose(self) -> None:
        """Close the idle connections; the ones in flight close as they come back."""
        self.closed = True
        if self._sweeper is not None and not self._flights:
            self._sweeper.cancel()
            self._sweeper = None
        idle = self._idle[:]
        self._idle.clear()
        for conn in idle:
            await conn.disconnect()


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
                resend = name in _RESENDABLE_SCRIPTS
                script = _SCRIPTS[name] = LuaScript(load_lua(name), resend=resend)
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


async def _close_with_loop(
    client: redis.asyncio.Redis, conns: _LoopConns
) -> AsyncGenerator[None, None]:
    # asyncio.run() and asyncio.Runner finalize every live async generator of their loop
    # (loop.shutdown_asyncgens) before closing it. That is the one hook into a loop's end,
    # so this generator, parked at its yield, closes the loop's client and command
    # connections while it can still run.
    try:
        yield
    finally:
        try:
            await conns.aclose()
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
    client: redis.asyncio.Redis  # RedisLink.aio: for callers; our commands use conns
    conns: _LoopConns
    closer: AsyncGenerator[None, None]


class RedisLink:
    """Our sync client, our per-event-loop asyncio clients, and the shared up/down state.

    Args:
        client: a ``redis.Redis``, a ``redis.asyncio.Redis`` or a URL. Only its connection
            settings are used; the object itself is never called, closed or changed.
        retry_interval: seconds to leave Redis alone after it failed to serve us.
        socket_timeout: seconds any one read or write (sync), or any one command (asyncio),
            may take on our connections.
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
        self._sync_conns: _SyncConns | None = None
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
        """Seconds one read or write (sync) or one command (asyncio) may take on our
        connections."""
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
        """Our redis-py asyncio client for the running loop (asyncio clients are bound to one
        loop), for callers that want one (a readiness PING). The link's own commands do not
        use it (only its ``parse_response``): they run on the loop's command connections.

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
        # The command connections: the same class and settings, but no per-read or
        # per-write timeout of redis-py's (the loop's sweeper bounds each command).
        kwargs = dict(pool.connection_kwargs, socket_timeout=None)
        conns = _LoopConns(
            loop, client, self._async_class, kwargs, self._socket_timeout, self._connect_timeout
        )
        closer = _close_with_loop(client, conns)
        _start(closer)
        entry = _LoopClient(client, conns, closer)
        with self._lock:
            self._forget_closed_loops()
            self._aio[loop] = entry
        return entry

    def _forget_closed_loops(self) -> None:
        # Their loops ran each closer at shutdown; what is left is an entry to drop.
        for loop in [loop for loop in self._aio if loop.is_closed()]:
            del self._aio[loop]

    def _conns(self) -> _SyncConns:
        conns = self._sync_conns
        if conns is None:
            client = self.sync
            with self._lock:
                conns = self._sync_conns
                if conns is None:
                    conns = self._sync_conns = _SyncConns(client)
        return conns

    def close(self) -> None:
        """Close our sync client and connections (made again if used again) and forget
        closed loops' clients."""
        with self._lock:
            client, self._sync = self._sync, None
            conns, self._sync_conns = self._sync_conns, None
            self._forget_closed_loops()
        if conns is not None:
            conns.close()
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close our asyncio client and connections of the running loop (made again if used
        again)."""
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
            conns = self._conns()
            if call.script is not None:
                reply = call.script.run(conns, call.keys, call.args)
            else:
                reply = conns.send(call.command)
        except REDIS_FAILURES as exc:
            self.failed(exc, call.what, stall)
            return call.down
        self.mark_up()
        return reply

    def _loop_conns(self) -> _LoopConns:
        loop = asyncio.get_running_loop()
        entry = self._aio.get(loop)
        if entry is None:
            entry = self._new_loop_client(loop)
        return entry.conns

    async def aexecute(self, call: RedisCall) -> Any:
        """The asyncio form of :meth:`execute`, on the running loop's own connections."""
        if not self.available:
            return call.down
        stall = self._stall
        try:
            conns = self._loop_conns()
            if call.script is not None:
                reply = await call.script.arun(conns, call.keys, call.args)
            else:
                reply = await conns.send(call.command)
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
    (:func:`_send`, :meth:`_LoopConns.send`): ``Script.__call__`` costs a few microseconds a
    call in argument checks, and scripts sit on the hit path.

    ``resend=True`` declares that a second run changes nothing (a lease-keyed script), so
    after an idle asyncio connection failed it the script is sent once more (see "the resend
    rule"); :func:`lua` sets it for tunegate's own scripts."""

    __slots__ = ("_encoded", "resend", "sha", "source")

    def __init__(self, source: str, *, resend: bool = False) -> None:
        self.source = source
        self.resend = resend
        self._encoded = source.encode("utf-8")
        self.sha = hashlib.sha1(self._encoded).hexdigest()  # the id Redis gives the script

    def run(
        self, client: redis.Redis | _SyncConns, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """On a link's sync connections (:meth:`RedisLink.execute`) or any sync client."""
        send = client.send if isinstance(client, _SyncConns) else functools.partial(_send, client)
        call = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return send(call)
        except redis.exceptions.NoScriptError:  # a new or flushed server
            send(("SCRIPT LOAD", self._encoded))
            return send(call)

    async def arun(
        self, client: redis.asyncio.Redis | _LoopConns, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """On a link's loop connections (:meth:`RedisLink.aexecute`) or any asyncio client
        (through its ``execute_command``)."""
        send: Callable[..., Awaitable[Any]]
        if isinstance(client, _LoopConns):
            send = client.send
        else:
            send = functools.partial(_execute, client)
        call = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return await send(call, self.resend)
        except redis.exceptions.NoScriptError:
            await send(("SCRIPT LOAD", self._encoded))
            return await send(call, self.resend)


async def _execute(client: redis.asyncio.Redis, command: tuple[Any, ...], _: bool = False) -> Any:
    return await client.execute_command(*command)  # type: ignore[no-untyped-call]


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
