"""The one module that knows the HTTP library: pooled aiohttp sessions, limits, timeouts,
the body cap, and the mapping of every transport failure onto ``tunegate.exceptions``.

Why aiohttp for both drivers (``bench/bench_http.py``, figures in ``docs/pipeline.md``): it
is the fastest async client here by 2-9x, and driving it from sync code through one private
event-loop thread per process costs about as much as the fastest sync client at one thread
and beats every sync client under thread concurrency. One library also means one exchange
coroutine (:func:`_exchange`): the timeouts, the cap, the decompression and the error
mapping exist once, for threads and for asyncio alike.

Sessions: one per provider per process for sync callers (living on the private loop), and
one per provider per event loop for async callers (aiohttp sessions are bound to a loop).
``await pool.aclose()`` closes the running loop's session; a closed session is reopened
on next use, so closing is never fatal to another user of the same pool. A session left
behind on a loop that has since closed is dropped when the next new loop asks for one.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import os
import ssl
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, NamedTuple, NoReturn, TypeVar

import aiohttp
from aiohttp import http_exceptions
from aiohttp.client_proto import ResponseHandler

from tunegate._policy.retry import TRUNCATED
from tunegate._redact import redact
from tunegate.exceptions import (
    ConfigurationError,
    MalformedResponse,
    ProviderError,
    ProviderUnavailable,
)

__all__ = [
    "BAD_ENCODING",
    "TOO_LARGE",
    "HttpConfig",
    "HttpPool",
    "HttpRequest",
    "HttpResponse",
    "Pairs",
    "shared_pool",
    "user_agent",
]

T = TypeVar("T")
Pairs = tuple[tuple[str, str], ...]

#: The ``code`` on a :class:`MalformedResponse` whose body went over ``max_body_bytes``.
TOO_LARGE = "too_large"
#: The ``code`` on a :class:`MalformedResponse` whose body could not be decoded (a gzip or
#: deflate body that does not inflate): permanent, unlike a body cut short (``truncated``).
BAD_ENCODING = "bad_encoding"
_CHUNK = 64 * 1024
# Content-Encoding values whose body is as long as Content-Length says (no inflation).
_IDENTITY = frozenset({"", "identity"})


@functools.cache  # importlib.metadata reads files: milliseconds, once per process is enough
def _version() -> str:
    try:
        return metadata.version("tunegate")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def user_agent(app: str | None = None) -> str:
    """``"{app} tunegate/{version}"``: the caller's app first, as MusicBrainz asks
    (``"MyApp/1.0 ( contact@example.com )"``), then this library."""
    ours = f"tunegate/{_version()}"
    return f"{app.strip()} {ours}" if app and app.strip() else ours


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """Pool and timeout settings for one provider. Immutable and hashable (the shared-pool
    key). Timeouts in seconds: ``connect`` to open a connection, ``read`` between two reads
    of the socket, ``total`` for the whole exchange including the body (a body that drips
    slowly is cut off by ``total``). ``max_body_bytes`` caps the decompressed body."""

    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    total_timeout: float = 15.0
    # Open connections per host. Sized for the concurrency callers use (enrich's 8 workers,
    # a service's in-flight requests, 16-way fan-outs): a smaller pool queues the extra
    # callers for a connection while the provider sits idle (issue 12, figure 4). They are
    # opened on demand only; the rate limiter, not the pool, is what paces a provider.
    pool_size: int = 32
    keepalive: float = 30.0  # seconds an idle connection is kept
    max_body_bytes: int = 8 * 1024 * 1024
    app: str | None = None  # the caller's app, named in the User-Agent
    ssl_context: ssl.SSLContext | None = None  # e.g. trusting the emulator's CA
    trust_env: bool = False  # read HTTP(S)_PROXY and .netrc from the environment

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "total_timeout", "keepalive"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0):
                raise ConfigurationError(f"{name} must be a number of seconds > 0")
        if self.pool_size < 1:
            raise ConfigurationError("pool_size must be at least 1")
        if self.max_body_bytes < 1:
            raise ConfigurationError("max_body_bytes must be at least 1")

    @property
    def user_agent(self) -> str:
        return user_agent(self.app)


class HttpRequest(NamedTuple):
    """One exchange. ``url`` has no query string: ``params`` go apart, so that the address
    the library logs nowhere and we never log carries no secret. ``secrets`` are the secret
    values inside params, data or headers: any foreign error text containing one is
    replaced before it can reach a traceback. ``provider`` and ``endpoint`` (templated)
    are what error messages say instead of the URL.

    Immutable, equal and hashable by value. A named tuple, not a frozen dataclass: one is
    built per upstream call, and a frozen dataclass's ``__init__`` (an
    ``object.__setattr__`` per field) cost ~1.1 us to the tuple's ~0.4 us."""

    method: str
    url: str
    provider: str
    endpoint: str
    params: Pairs = ()
    data: Pairs = ()
    headers: Pairs = ()
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # Hand-written so that printing a request shows no header, parameter or secret.
        return f"HttpRequest({self.method} {self.provider} {self.endpoint})"


class HttpResponse(NamedTuple):
    """A complete answer: status, headers (case-insensitive), the decompressed body, and
    the seconds the exchange took. A named tuple for :class:`HttpRequest`'s reason (one
    a response: ~0.5 us as a frozen dataclass, ~0.25 us as this)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float


# -- the read timeout, on one loop timer per connection --------------------------------------

# A timer may run up to the clock's resolution before its time: not "early" for the check below.
_CLOCK_SLACK = time.get_clock_info("monotonic").resolution


class _ReadTimeoutProtocol(ResponseHandler):
    """aiohttp's connection protocol with the same ``sock_read`` timeout (no data for that
    many seconds while a response is awaited or read) on fewer loop timers: aiohttp cancels
    and schedules a timer when a response is awaited, at each read of the socket and at its
    end (2 a request, beside the total timeout's 1, the only one bare aiohttp sets). Here
    those only move or clear a deadline; the connection's one timer, when it fires before
    the deadline, is set again for it, and when none is armed, ends."""

    _read_deadline: float | None = None  # when sock_read runs out; None: not armed

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._read_deadline = None
            return
        self._read_deadline = deadline = self._loop.time() + timeout
        handle = self._read_timeout_handle
        # Set again only for an earlier deadline (a request with a shorter sock_read on a
        # reused connection); a later one is the firing timer's to find.
        if handle is None or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._read_timeout_handle = self._loop.call_at(deadline, self._on_read_timer)

    def _drop_timeout(self) -> None:
        self._read_deadline = None  # the timer, if any, finds nothing to do

    def _on_read_timer(self) -> None:
        self._read_timeout_handle = None
        deadline = self._read_deadline
        if deadline is None:
            return
        if self._loop.time() + _CLOCK_SLACK < deadline:  # data came since: wait on
            self._read_timeout_handle = self._loop.call_at(deadline, self._on_read_timer)
            return
        self._read_deadline = None
        self._on_read_timeout()

    def _stop_timer(self) -> None:
        self._read_deadline = None
        if self._read_timeout_handle is not None:  # the connection is done: let it go now
            self._read_timeout_handle.cancel()
            self._read_timeout_handle = None

    def close(self) -> None:
        super().close()
        self._stop_timer()

    def abort(self) -> None:
        super().abort()
        self._stop_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._stop_timer()


# Private aiohttp names the protocol above relies on; without one of them, aiohttp's own.
_LAZY_READ_TIMER = all(
    hasattr(ResponseHandler, name)
    for name in ("_reschedule_timeout", "_drop_timeout", "_on_read_timeout", "start_timeout")
)


# -- the exchange: the only code that touches aiohttp's request API --------------------------


async def _exchange(
    session: aiohttp.ClientSession,
    request: HttpRequest,
    limits: aiohttp.ClientTimeout,
    max_body: int,
) -> HttpResponse:
    start = time.perf_counter()
    try:
        async with session.request(
            request.method,
            request.url,
            params=request.params or None,
            data=request.data or None,
            headers=request.headers,
            allow_redirects=False,  # a redirect could carry a secret query to another host
            timeout=limits,
        ) as resp:
            length = resp.content_length
            if length is not None and length > max_body:
                _too_large(request, resp.status, max_body)
            if length is not None and resp.headers.get("Content-Encoding", "") in _IDENTITY:
                # Announced and not compressed: the body cannot outgrow its length, so one
                # read() instead of a chunk loop (a body cut short still raises there).
                body = await resp.read()
                return HttpResponse(resp.status, resp.headers, body, time.perf_counter() - start)
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > max_body:
                    _too_large(request, resp.status, max_body)
                chunks.append(chunk)
            return HttpResponse(
                resp.status, resp.headers, b"".join(chunks), time.perf_counter() - start
            )
    except ProviderError:
        raise
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        _raise_mapped(request, exc)


def _too_large(request: HttpRequest, status: int, max_body: int) -> NoReturn:
    raise MalformedResponse(
        f"response body over {max_body} bytes",
        provider=request.provider,
        endpoint=request.endpoint,
        status=status,
        code=TOO_LARGE,
    )


def _raise_mapped(request: HttpRequest, exc: BaseException) -> NoReturn:
    """Raise the typed error for a foreign one, ``from`` it (or from a redacted stand-in
    when its text carries a secret). Messages name the exception type, never its text."""
    name = type(exc).__name__
    where: dict[str, Any] = {"provider": request.provider, "endpoint": request.endpoint}
    err: Exception
    if isinstance(exc, aiohttp.InvalidURL):
        err = ConfigurationError(f"{request.provider}: invalid base URL ({name})")
    elif isinstance(exc, ValueError):  # e.g. a header value with a line break: our caller's bug
        err = ConfigurationError(f"{request.provider} {request.endpoint}: invalid request ({name})")
    elif isinstance(exc, TimeoutError):
        err = ProviderUnavailable(f"timed out ({name})", **where)
    elif isinstance(exc, aiohttp.ClientPayloadError) and _cut_short(exc):
        err = MalformedResponse(f"body cut short ({name})", code=TRUNCATED, **where)
    elif isinstance(exc, aiohttp.ClientPayloadError):
        err = MalformedResponse(f"body cannot be decoded ({name})", code=BAD_ENCODING, **where)
    elif isinstance(exc, aiohttp.ClientResponseError):
        err = MalformedResponse(f"invalid HTTP response ({name})", **where)
    else:
        err = ProviderUnavailable(f"connection failed ({name})", **where)
    raise err from _redacted(exc, request.secrets)


# Why a body failed: these causes mean it stopped early (worth another attempt); any other
# (a gzip body that does not inflate, ContentEncodingError) will fail the same way again.
_CUT_SHORT = (http_exceptions.ContentLengthError, http_exceptions.TransferEncodingError, OSError)


def _cut_short(exc: aiohttp.ClientPayloadError) -> bool:
    return isinstance(exc.__cause__, _CUT_SHORT)


class RedactedError(Exception):
    """Stands in for a foreign exception whose text held a URL query string or a secret."""


class RedactedTimeoutError(RedactedError, TimeoutError):
    """A redacted stand-in for a timeout (still a ``TimeoutError`` to the retry policy)."""


class RedactedConnectionError(RedactedError, ConnectionError):
    """A redacted stand-in for a connection error (still a ``ConnectionError``)."""


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(out) < 8 and link not in out:
        out.append(link)
        link = link.__cause__ or link.__context__
    return out


def _redacted(exc: BaseException, secrets: tuple[str, ...]) -> BaseException:
    """``exc`` itself when nothing in its chain's text needs redacting, else a stand-in that
    carries its type name and its redacted text, and no chain."""
    texts = [t for e in _chain(exc) for t in (str(e), repr(e))]
    if all(redact(t, secrets) == t for t in texts):
        return exc
    kind: type[RedactedError] = RedactedError
    if isinstance(exc, TimeoutError):
        kind = RedactedTimeoutError
    elif isinstance(exc, ConnectionError):
        kind = RedactedConnectionError
    stand_in = kind(f"{type(exc).__name__}: {redact(str(exc), secrets)}")
    stand_in.__cause__ = None
    stand_in.__suppress_context__ = True
    return stand_in


# -- the private event loop that serves sync callers -----------------------------------------


class _Bridge:
    """A daemon thread running an event loop, for this process (rebuilt after a fork).

    Callers hand their exchanges over and wait. Running the loop in the calling thread
    instead while no other thread needs it (no hand-off there and back) was tried: no
    faster per sync exchange on this machine, wall or CPU, in separate-process A/B runs."""

    def __init__(self) -> None:
        self.forks = _forks
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="tunegate-http", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """``coro``'s result or its very exception, run as a task on the bridge loop while
        this thread waits on a plain lock the task's last step releases
        (``concurrent.futures.TimeoutError`` after ``timeout``; the task is cancelled then,
        and on an interrupt). Not ``asyncio.run_coroutine_threadsafe``: its chained
        ``concurrent.futures.Future`` made the hand-off ~1.5x as dear (figure 3a); not a
        done callback either: one more loop iteration before the caller wakes."""
        loop = self.loop
        finished = threading.Lock()
        finished.acquire()
        outcome: list[Any] = []  # [True, value] or [False, exception]
        tasks: list[asyncio.Task[None]] = []

        async def wrapped() -> None:
            try:
                outcome[:] = (True, await coro)
            except BaseException as exc:  # a cancellation too: the task itself ends quietly
                outcome[:] = (False, exc)
            finally:
                finished.release()

        def start() -> None:
            tasks.append(loop.create_task(wrapped()))

        loop.call_soon_threadsafe(start)
        done = False
        try:
            done = finished.acquire(timeout=-1 if timeout is None else timeout)
        finally:
            if not done:  # our timeout or an interrupt: stop the exchange too
                loop.call_soon_threadsafe(_cancel, tasks, coro)
        if not done:
            raise concurrent.futures.TimeoutError
        ok, value = outcome
        outcome.clear()  # no cycle through this frame when it holds an exception
        if ok:
            result: T = value
            return result
        raise value

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


def _cancel(tasks: list[asyncio.Task[Any]], coro: Coroutine[Any, Any, Any]) -> None:
    # On the bridge loop, after the start that made the task (callbacks run in order).
    for task in tasks:
        task.cancel()
        # Cancelled before its first step, the wrapper never awaits ``coro``: close it then
        # (a no-op once it ran), or Python warns it was never awaited.
        task.add_done_callback(lambda _: coro.close())


# Forks into this process's line so far: a child's count differs from its parent's, so the
# objects its parent made (sessions, sockets, the bridge) are told apart with an int compare
# per request instead of an os.getpid() system call. Bumped by os.fork()'s own hook (and
# multiprocessing's, which uses it).
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)

_bridge: _Bridge | None = None
_bridge_lock = threading.Lock()
_forked_leftovers: list[object] = []  # a parent's objects after fork: kept, never finalised


def _get_bridge() -> _Bridge:
    global _bridge
    bridge = _bridge
    if bridge is not None and bridge.forks == _forks:
        return bridge
    with _bridge_lock:
        if _bridge is None or _bridge.forks != _forks:
            if _bridge is not None:
                _forked_leftovers.append(_bridge)
            _bridge = _Bridge()
        return _bridge


# -- pools -------------------------------------------------------------------------------------


class HttpPool:
    """Pooled keep-alive connections to one provider: :meth:`send` for threads, :meth:`asend`
    for asyncio tasks. Both raise only :mod:`tunegate.exceptions` errors."""

    def __init__(self, provider: str, config: HttpConfig | None = None) -> None:
        self.provider = provider
        self.config = config or HttpConfig()
        self._headers = {"User-Agent": self.config.user_agent}
        self._default = self._limits(None, False)
        self._patient = self._limits(None, True)
        self._lock = threading.Lock()
        self._forks = _forks
        self._sync: aiohttp.ClientSession | None = None  # lives on the bridge loop
        # Not a WeakKeyDictionary: a session refers to its loop, so neither would ever go.
        self._by_loop: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def _timeout(self, cap: float | None, patient: bool = False) -> aiohttp.ClientTimeout:
        if cap is None:  # no deadline: the two fixed timeouts, built once
            return self._patient if patient else self._default
        if not patient and cap >= self.config.total_timeout:  # the deadline is further off
            return self._default  # than the total timeout (the usual call): the same limits
        return self._limits(cap, patient)

    def _limits(self, cap: float | None, patient: bool) -> aiohttp.ClientTimeout:
        c = self.config
        total = c.total_timeout if cap is None else max(0.001, min(c.total_timeout, cap))
        if patient:  # the caller set its own deadline: the attempt may use all that is left
            if cap is None:
                return aiohttp.ClientTimeout(
                    sock_connect=c.connect_timeout, sock_read=c.read_timeout
                )
            total = max(0.001, cap)
        return aiohttp.ClientTimeout(
            total=total, sock_connect=min(c.connect_timeout, total), sock_read=c.read_timeout
        )

    def _new_session(self) -> aiohttp.ClientSession:
        c = self.config
        connector = aiohttp.TCPConnector(
            limit=c.pool_size * 4,
            limit_per_host=c.pool_size,
            keepalive_timeout=c.keepalive,
            ssl=c.ssl_context if c.ssl_context is not None else True,
            ttl_dns_cache=300,
        )
        if _LAZY_READ_TIMER and hasattr(connector, "_factory"):
            factory: Any = functools.partial(_ReadTimeoutProtocol, loop=connector._loop)
            connector._factory = factory  # a subclass of what aiohttp builds there
        return aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            trust_env=c.trust_env,
            auto_decompress=True,  # gzip and deflate, announced by aiohttp's Accept-Encoding
            cookie_jar=aiohttp.DummyCookieJar(),  # an API gateway carries no cookies between calls
            raise_for_status=False,
        )

    def _check_fork(self) -> None:
        if self._forks != _forks:  # sessions and sockets belong to the parent
            with self._lock:
                if self._forks != _forks:
                    _forked_leftovers.append((self._sync, dict(self._by_loop)))
                    self._sync = None
                    self._by_loop = {}
                    self._forks = _forks

    # -- async ---------------------------------------------------------------------------

    def _session_here(self) -> aiohttp.ClientSession:
        self._check_fork()
        loop = asyncio.get_running_loop()
        session = self._by_loop.get(loop)
        if session is None or session.closed:
            with self._lock:
                # Sessions of loops that ended without aclose(): drop them, so their
                # connections go with them (aiohttp warns "Unclosed client session").
                for old in [lp for lp in self._by_loop if lp.is_closed()]:
                    del self._by_loop[old]
                session = self._by_loop[loop] = self._new_session()
        return session

    async def asend(
        self,
        request: HttpRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        patient: bool = False,
    ) -> HttpResponse:
        """One exchange on the running loop; ``timeout`` caps the total timeout (the
        pipeline passes what is left of its deadline); with ``patient`` it replaces it."""
        session = self._session_here()
        limits = self._timeout(timeout, patient)
        return await _exchange(session, request, limits, self.config.max_body_bytes)

    async def aclose(self) -> None:
        """Close the running loop's session (call before the loop ends)."""
        session = self._by_loop.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    # -- sync ----------------------------------------------------------------------------

    async def _bridge_exchange(self, request: HttpRequest, limits: aiohttp.ClientTimeout) -> Any:
        # Runs on the bridge loop, the only thread that touches self._sync.
        if self._sync is None or self._sync.closed:
            self._sync = self._new_session()
        return await _exchange(self._sync, request, limits, self.config.max_body_bytes)

    def send(
        self, request: HttpRequest, *, timeout: float | None = None, patient: bool = False
    ) -> HttpResponse:
        """One exchange from any thread, through the process's private loop."""
        self._check_fork()
        client_timeout = self._timeout(timeout, patient)
        try:
            result: HttpResponse = _get_bridge().run(
                self._bridge_exchange(request, client_timeout),
                None if client_timeout.total is None else client_timeout.total + 1.0,
            )
        except concurrent.futures.TimeoutError as exc:  # the loop did not answer in time
            _raise_mapped(request, exc)
        return result

    async def _close_sync(self) -> None:
        if self._sync is not None:
            session, self._sync = self._sync, None
            await session.close()

    def close(self) -> None:
        """Close the sync session (its connections); it reopens if used again."""
        self._check_fork()
        if self._sync is not None and _bridge is not None and _bridge.forks == _forks:
            _bridge.run(self._close_sync(), 5.0)


_shared: dict[tuple[str, HttpConfig], HttpPool] = {}
_shared_lock = threading.Lock()


def shared_pool(provider: str, config: HttpConfig | None = None) -> HttpPool:
    """The process's pool for ``provider`` with ``config``: one per provider per process,
    shared by every pipeline that asks for the same settings."""
    key = (provider, config or HttpConfig())
    with _shared_lock:
        pool = _shared.get(key)
        if pool is None:
            pool = _shared[key] = HttpPool(provider, key[1])
        return pool


@atexit.register
def _shutdown() -> None:
    # Close the sync sessions cleanly so interpreter exit prints no "Unclosed" warnings.
    bridge = _bridge
    if bridge is None or bridge.forks != _forks:
        return
    for pool in list(_shared.values()):
        with contextlib.suppress(Exception):  # best effort at exit
            pool.close()
    bridge.stop()
