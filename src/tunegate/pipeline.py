"""The one request path every upstream call takes, for threads and for asyncio.

Stage order (``docs/pipeline.md`` says why)::

    fresh cache hit -> return at once
    single-flight: in this process (threads and tasks), then across processes (Redis lease)
    overall deadline starts
      per attempt: breaker.allow -> limiter token -> HTTP exchange -> classify
                   -> limiter.adjust_from_headers -> breaker.record_*
      retry policy: transient, within deadline and budget? sleep, next attempt
    cache write (positive, or negative for "not found")
    on final failure: stale-if-error, else the typed error

How sync and async share it: the path is written once, as a generator (:meth:`Pipeline.
_flow`) that *yields effects* (look up the cache, take a token, send, sleep...) and is sent
their results back, or has their exceptions thrown in. Every decision (what to do next,
what an outcome means, whether to retry, what to log and count) lives in that generator;
:meth:`Pipeline._drive` and :meth:`Pipeline._adrive` are ten-line loops that run each effect
with its blocking or its awaitable form. We chose this over generating the sync twin from
async code (httpcore's unasync) because there is then no second copy at all, generated or
not, and no build step to keep in step; and over running the sync path on an event loop
because callers' threads keep their own context (correlation id, spans) and no loop is
needed for a cache hit.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
import redis.asyncio
import redis.exceptions
from prometheus_client import CollectorRegistry

from tunegate._clock import Clock, SystemClock
from tunegate._http import HttpConfig, HttpPool, HttpRequest, HttpResponse, shared_pool
from tunegate._policy.breaker import Permit
from tunegate._policy.classify import (
    Expect,
    Kind,
    Outcome,
    ProviderHook,
    ResponseView,
    classify_response,
    kind_of,
)
from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import KeyScheme
from tunegate._policy.retry import GiveUp, RetryBudget, RetryPolicy
from tunegate._redis import REDIS_DOWN_ERRORS, LuaScript, RedisLink
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.cache.frozen import decode, encode, freeze
from tunegate.exceptions import (
    CircuitBreakerOpenError,
    ConfigurationError,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimitTimeout,
    TunegateError,
)
from tunegate.observability import (
    BREAKER_STATE_CODES,
    Metrics,
    Span,
    Stats,
    log_attempt,
    log_event,
    logger,
    start_span,
)
from tunegate.ratelimit import PROVIDER_DEFAULTS, RateLimiter
from tunegate.retry import budget_lock

__all__ = ["Pipeline", "RequestLike"]

Pairs = tuple[tuple[str, str], ...]
Flow = Generator["_Effect", Any, Any]


class RequestLike(Protocol):
    """What the pipeline reads of a request (``tunegate.providers._request.ApiRequest`` is
    one). ``secret_params`` names params, form fields or headers (case-insensitive) whose
    values must never reach a log, a key, a metric or an error message."""

    @property
    def provider(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def endpoint_template(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def params(self) -> Pairs: ...
    @property
    def data(self) -> Pairs: ...
    @property
    def headers(self) -> Pairs: ...
    @property
    def secret_params(self) -> frozenset[str]: ...
    @property
    def cache_kind(self) -> str | None: ...
    @property
    def cache_parts(self) -> tuple[str, ...]: ...


# -- effects: what the flow asks its driver to do ---------------------------------------------
# Each effect is one blocking call and its awaitable twin, and nothing else.


class _Effect:
    __slots__ = ()

    def run(self, p: Pipeline) -> Any:
        raise NotImplementedError

    async def arun(self, p: Pipeline) -> Any:
        raise NotImplementedError


@dataclass(slots=True)
class _CacheGet(_Effect):
    key: str

    def run(self, p: Pipeline) -> CacheEntry | None:
        assert p.cache is not None
        return p.cache.lookup(self.key)

    async def arun(self, p: Pipeline) -> CacheEntry | None:
        assert p.cache is not None
        return await p.cache.alookup(self.key)


@dataclass(slots=True)
class _CacheStore(_Effect):
    key: str
    value: Any
    ttl: float | None
    negative: bool

    def run(self, p: Pipeline) -> Any:
        assert p.cache is not None
        return p.cache.store(self.key, self.value, ttl=self.ttl, negative=self.negative)

    async def arun(self, p: Pipeline) -> Any:
        assert p.cache is not None
        return await p.cache.astore(self.key, self.value, ttl=self.ttl, negative=self.negative)


@dataclass(slots=True)
class _Allow(_Effect):
    def run(self, p: Pipeline) -> Permit:
        assert p.breaker is not None
        return p.breaker.allow()

    async def arun(self, p: Pipeline) -> Permit:
        assert p.breaker is not None
        return await p.breaker.aallow()


@dataclass(slots=True)
class _Record(_Effect):
    permit: Permit
    verdict: str  # "success", "failure", "ignored"

    def run(self, p: Pipeline) -> None:
        assert p.breaker is not None
        getattr(p.breaker, f"record_{self.verdict}")(self.permit)

    async def arun(self, p: Pipeline) -> None:
        assert p.breaker is not None
        await getattr(p.breaker, f"arecord_{self.verdict}")(self.permit)


@dataclass(slots=True)
class _Acquire(_Effect):
    timeout: float | None

    def run(self, p: Pipeline) -> float:
        assert p.limiter is not None
        return p.limiter.acquire(p.provider, self.timeout)

    async def arun(self, p: Pipeline) -> float:
        assert p.limiter is not None
        return await p.limiter.aacquire(p.provider, self.timeout)


@dataclass(slots=True)
class _Adjust(_Effect):
    response: HttpResponse

    def run(self, p: Pipeline) -> None:
        assert p.limiter is not None
        p.limiter.adjust_from_headers(p.provider, self.response.headers, self.response.status)

    async def arun(self, p: Pipeline) -> None:
        assert p.limiter is not None
        await p.limiter.aadjust_from_headers(
            p.provider, self.response.headers, self.response.status
        )


@dataclass(slots=True)
class _Send(_Effect):
    request: HttpRequest
    timeout: float | None

    def run(self, p: Pipeline) -> HttpResponse:
        return p.http.send(self.request, timeout=self.timeout)

    async def arun(self, p: Pipeline) -> HttpResponse:
        return await p.http.asend(self.request, timeout=self.timeout)


@dataclass(slots=True)
class _Sleep(_Effect):
    """A backoff sleep, on the pipeline's clock (a FakeClock in tests)."""

    seconds: float

    def run(self, p: Pipeline) -> None:
        p.clock.sleep(self.seconds)

    async def arun(self, p: Pipeline) -> None:
        await p.clock.asleep(self.seconds)


@dataclass(slots=True)
class _Poll(_Effect):
    """A real-time pause between two looks at another process's lease."""

    seconds: float

    def run(self, p: Pipeline) -> None:
        time.sleep(self.seconds)

    async def arun(self, p: Pipeline) -> None:
        await asyncio.sleep(self.seconds)


@dataclass(slots=True)
class _AwaitFlight(_Effect):
    """Wait for this process's leader of the same call."""

    future: concurrent.futures.Future[Any]
    timeout: float | None

    def run(self, p: Pipeline) -> Any:
        return self.future.result(self.timeout)

    async def arun(self, p: Pipeline) -> Any:
        # Not asyncio.wrap_future: cancelling one waiter would cancel the shared future.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()

        def relay(done: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the waiting loop is gone
                loop.call_soon_threadsafe(_settle, done, waiter)

        self.future.add_done_callback(relay)
        async with asyncio.timeout(self.timeout):
            return await waiter


def _settle(done: concurrent.futures.Future[Any], waiter: asyncio.Future[Any]) -> None:
    if waiter.done():
        return
    exc = done.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(done.result())


@dataclass(slots=True)
class _Shared(_Effect):
    """One single-flight script call on Redis; None when Redis is down (fail open)."""

    script: LuaScript
    keys: tuple[str, ...]
    args: tuple[Any, ...]

    def run(self, p: Pipeline) -> Any:
        link = p.redis_link
        assert link is not None
        try:
            reply = self.script.run(link.sync, self.keys, self.args)
        except _REDIS_FAILURES as exc:
            return _redis_failed(link, exc)
        link.mark_up()
        return reply

    async def arun(self, p: Pipeline) -> Any:
        link = p.redis_link
        assert link is not None
        try:
            reply = await self.script.arun(link.aio, self.keys, self.args)
        except _REDIS_FAILURES as exc:
            return _redis_failed(link, exc)
        link.mark_up()
        return reply


_REDIS_FAILURES: tuple[type[BaseException], ...] = (*REDIS_DOWN_ERRORS, redis.exceptions.RedisError)


def _redis_failed(link: RedisLink, exc: BaseException) -> None:
    if isinstance(exc, REDIS_DOWN_ERRORS):
        link.mark_down(exc, "request coalescing")
    else:
        logger.warning("single-flight script failed (%s); coalescing skipped", type(exc).__name__)


# -- single-flight within the process ------------------------------------------------------------


class _LeaderGone(Exception):
    """The leader was cancelled or interrupted: a follower should lead instead."""


class _Flights:
    """In-flight calls by key, shared by threads and tasks of every event loop.

    A finished call stays visible for ``linger`` seconds to callers whose cache lookup
    happened before it finished: they missed the cache only because the write came a hair
    late, and must not make a second upstream call for it.
    """

    def __init__(self, linger: float = 1.0) -> None:
        self.linger = linger
        self._lock = threading.Lock()
        self._live: dict[str, concurrent.futures.Future[Any]] = {}
        self._done: collections.OrderedDict[str, tuple[concurrent.futures.Future[Any], float]] = (
            collections.OrderedDict()
        )

    def join(self, key: str, looked_at: float) -> tuple[concurrent.futures.Future[Any], bool]:
        """``(future, True)`` when the caller leads, ``(future, False)`` when it follows."""
        with self._lock:
            future = self._live.get(key)
            if future is not None:
                return future, False
            done = self._done.get(key)
            if done is not None and done[1] >= looked_at:
                return done[0], False
            future = self._live[key] = concurrent.futures.Future()
            return future, True

    def finish(
        self,
        key: str,
        future: concurrent.futures.Future[Any],
        value: Any = None,
        error: BaseException | None = None,
    ) -> None:
        now = time.monotonic()
        with self._lock:
            if self._live.get(key) is future:
                del self._live[key]
            if not isinstance(error, _LeaderGone):
                self._done[key] = (future, now)
                self._done.move_to_end(key)
            horizon = now - self.linger
            while self._done and next(iter(self._done.values()))[1] < horizon:
                self._done.popitem(last=False)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def __len__(self) -> int:
        return len(self._live)


# -- single-flight across processes: a lease in Redis -------------------------------------------
# KEYS[1] the lease, KEYS[2] the published result. Replies: {1} lead, {0} follow,
# {2, payload} a result published within the last few seconds.
_CLAIM = LuaScript("""
local r = redis.call('GET', KEYS[2])
if r then return {2, r} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
return {0}
""")
# ARGV: token, lease ms. Extend our lease; 0 when another process holds it now.
_RENEW = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""")
# ARGV: token, payload ('' to publish nothing), result ms. Publish, then drop our lease.
_FINISH = LuaScript("""
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
""")
_NOT_FOUND_MARK = b"N"
_VALUE_MARK = b"V"


# -- the pipeline ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """The state of one call as it moves down the path."""

    request: RequestLike
    key: str | None
    parse: Callable[[Any], Any] | None
    expect: Expect
    ttl: float | None
    span: Span | None
    cache_state: str = "bypass"
    stale: CacheEntry | None = None
    lease: tuple[str, tuple[str, str]] | None = None  # (token, (lease key, result key))
    looked_at: float = field(default_factory=time.monotonic)
    http: HttpRequest | None = None  # built on the first attempt: a hit never needs it


_PARSE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def _stale_servable(error: TunegateError) -> bool:
    """Outage-like failures may be answered from a stale entry; "no such thing", refused
    credentials and a request the provider rejects may not."""
    if isinstance(error, CircuitBreakerOpenError | RateLimitTimeout | MalformedResponse):
        return True
    return isinstance(error, ProviderError) and kind_of(error) in (
        Kind.TRANSIENT,
        Kind.RATE_LIMITED,
    )


class Pipeline:
    """Every upstream call of one provider: cache, single-flight, breaker, limiter, pooled
    HTTP, classification, retry, stale-if-error, with logs, stats and metrics.

    Args:
        provider: ``"spotify"``, ``"musicbrainz"``, ``"lastfm"`` (or any name a test uses).
        base_url: the provider's origin (``"https://api.spotify.com"``); request paths are
            appended to it.
        cache: the response cache; None disables caching (single-flight still works).
        rate_limiter: the limiter; ``provider`` gets ``PROVIDER_DEFAULTS`` if it has no
            bucket yet. None: no limiting.
        circuit_breaker: this provider's breaker; None: no breaker.
        retry: the retry policy (its ``deadline`` is the overall deadline of a call).
        retry_budget: this provider's retry budget; None for no budget.
        http: pool settings (:class:`HttpConfig`: timeouts, pool size, body cap, app name
            for the User-Agent, TLS context), or a ready :class:`HttpPool`. Settings give the
            process-wide pool for this provider and settings.
        classifier: the provider's hook for reading answers (``_policy.classify``).
        redis: Redis for cross-process single-flight (a client, URL or ``RedisLink``);
            by default the cache's own Redis when the cache is Redis-backed.
        registry: the Prometheus registry for metrics (default: the global one);
            ``metrics=False`` turns metrics off.
        stale_if_error: serve a stale cache entry when the provider fails, the breaker is
            open, or the limiter cannot give a token within the deadline.
        lease_ttl: seconds a cross-process lease lasts before another process may take over
            the call (extended before each attempt); at least the HTTP total timeout + 1.
        clock / rand: injected for tests (``tunegate.testing.FakeClock``).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        cache: CacheManager | None = None,
        rate_limiter: RateLimiter | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        retry: RetryPolicy | None = None,
        retry_budget: RetryBudget | None = None,
        http: HttpConfig | HttpPool | None = None,
        classifier: ProviderHook | None = None,
        redis: redis.Redis | redis.asyncio.Redis | str | RedisLink | None = None,
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
        stale_if_error: bool = True,
        lease_ttl: float = 5.0,
        publish_ttl: float = 2.0,
        clock: Clock | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        if not provider or not isinstance(provider, str):
            raise ConfigurationError("provider must be a non-empty string")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"{provider}: base_url must start with http:// or https://")
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.cache = cache
        self.limiter = rate_limiter
        self.breaker = circuit_breaker
        self.retry = retry if retry is not None else RetryPolicy()
        self.budget = retry_budget
        self.http = http if isinstance(http, HttpPool) else shared_pool(provider, http)
        self.classifier = classifier
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._rand = rand if rand is not None else random.random
        self.stale_if_error = stale_if_error
        self._keys = KeyScheme(cache.namespace if cache is not None else "tunegate")
        if rate_limiter is not None and provider in PROVIDER_DEFAULTS:
            rate_limiter.ensure_provider(provider, *PROVIDER_DEFAULTS[provider])

        link = redis if isinstance(redis, RedisLink) or redis is None else RedisLink(redis)
        if link is None and cache is not None:
            link = getattr(cache.backend, "link", None)
        self.redis_link: RedisLink | None = link
        total = self.http.config.total_timeout
        self._lease_ms = int(max(lease_ttl, total + 1.0) * 1000)
        self._publish_ms = int(publish_ttl * 1000)
        deadline = self.retry.deadline
        if deadline is None:
            deadline = self.retry.max_attempts * (total + self.retry.cap)
        self._follow_timeout = deadline + total + 5.0  # a live leader always ends before this

        self._flights = _Flights()
        self._stats = Stats()
        self._metrics = Metrics.for_registry(registry) if metrics else None
        if self._metrics is not None:
            m = self._metrics
            self._m_cache = {r: m.cache_ops.labels(provider, r) for r in _CACHE_RESULTS}
            self._m_calls = {k: m.api_calls.labels(provider, k.value) for k in Kind}
            m.gauges.track(provider, self._gauge_values)

    # -- public API ------------------------------------------------------------------------

    def call(
        self,
        request: RequestLike,
        *,
        parse: Callable[[Any], Any] | None = None,
        expect: Expect = "json",
        use_cache: bool = True,
        ttl: float | None = None,
    ) -> Any:
        """Make ``request`` (from a thread) and return its value.

        The value is ``parse(payload)`` (``payload`` the decoded body: JSON as Python
        objects, XML or text as ``str``, ``bytes`` as is) or the payload itself; when cached
        it comes back frozen (read-only dicts and lists), fresh or from the cache alike.
        ``parse`` may raise :class:`NotFound` (cached as a negative entry) or
        :class:`MalformedResponse`; other exceptions from it become ``MalformedResponse``.
        ``use_cache=False`` skips the lookup but still writes the fresh answer. ``ttl``
        overrides the cache's TTL for this kind.

        Raises: :class:`NotFound` (also for a cached negative entry),
        :class:`CircuitBreakerOpenError`, :class:`RateLimitTimeout`, :class:`RateLimited`,
        :class:`AuthenticationError`, :class:`ProviderUnavailable`,
        :class:`MalformedResponse`, :class:`ProviderError` — unless a stale entry can be
        served instead (``stale_if_error``).
        """
        return self._drive(self._flow(request, parse, expect, use_cache, ttl))

    async def acall(
        self,
        request: RequestLike,
        *,
        parse: Callable[[Any], Any] | None = None,
        expect: Expect = "json",
        use_cache: bool = True,
        ttl: float | None = None,
    ) -> Any:
        """:meth:`call` for asyncio tasks."""
        return await self._adrive(self._flow(request, parse, expect, use_cache, ttl))

    def key(self, request: RequestLike) -> str | None:
        """The cache (and single-flight) key of ``request``; None when it is not cached."""
        if request.cache_kind is None:
            return None
        keys = self.cache if self.cache is not None else self._keys
        return keys.key(request.cache_kind, *request.cache_parts)

    def get_stats(self) -> dict[str, Any]:
        """Counters, hit ratio, latency percentiles (ms) of the last 1024 upstream attempts,
        and the breaker's, limiter's and retry budget's own stats for this provider."""
        stats = self._stats.snapshot()
        stats["provider"] = self.provider
        stats["in_flight"] = len(self._flights)
        stats["circuit_breaker"] = None if self.breaker is None else dict(self.breaker.get_stats())
        stats["rate_limiter"] = None
        if self.limiter is not None:
            bucket = self.limiter.get_stats().get(self.provider)
            stats["rate_limiter"] = None if bucket is None else dict(bucket)
        stats["retry_budget"] = None
        if self.budget is not None:
            with budget_lock(self.budget):
                stats["retry_budget"] = self.budget.stats(self.clock.monotonic())
        return stats

    def close(self) -> None:
        """Close the sync connections (they reopen if the pipeline is used again)."""
        self.http.close()

    async def aclose(self) -> None:
        """Close the running loop's connections; call it before the loop ends."""
        await self.http.aclose()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the drivers ---------------------------------------------------------------------

    def _drive(self, flow: Flow) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            value = error = None
            try:
                value = effect.run(self)
            except BaseException as exc:  # the flow decides; it re-raises what it does not handle
                error = exc

    async def _adrive(self, flow: Flow) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            value = error = None
            try:
                value = await effect.arun(self)
            except BaseException as exc:  # the flow decides; it re-raises what it does not handle
                error = exc

    # -- the flow ------------------------------------------------------------------------

    def _flow(
        self,
        request: RequestLike,
        parse: Callable[[Any], Any] | None,
        expect: Expect,
        use_cache: bool,
        ttl: float | None,
    ) -> Flow:
        if request.provider != self.provider:
            raise ConfigurationError(
                f"a {request.provider} request sent through the {self.provider} pipeline"
            )
        key = self.key(request)
        call = _Call(
            request,
            key,
            parse,
            expect,
            ttl,
            start_span(self.provider, request.endpoint_template),
        )
        error: BaseException | None = None
        try:
            if key is not None and use_cache and self.cache is not None:
                entry = yield _CacheGet(key)
                if entry is not None and not entry.stale:
                    return self._hit(call, entry)
                call.stale = entry
                call.cache_state = "miss"
                self._count("cache_misses", "miss")
            if key is None:
                return (yield from self._attempts(call))
            return (yield from self._coalesce(call, key))
        except BaseException as exc:
            error = exc
            raise
        finally:
            if call.span is not None:
                call.span.finish(call.cache_state, error)

    def _hit(self, call: _Call, entry: CacheEntry) -> Any:
        negative = entry.negative
        call.cache_state = "negative_hit" if negative else "hit"
        self._count("negative_hits" if negative else "cache_hits", call.cache_state)
        if logger.isEnabledFor(logging.DEBUG):
            log_event(
                logging.DEBUG,
                "cache hit",
                self.provider,
                call.request.endpoint_template,
                cache=call.cache_state,
            )
        return self._value_of(call, entry)

    def _value_of(self, call: _Call, entry: CacheEntry) -> Any:
        if entry.negative:
            raise NotFound(
                "not found (cached)",
                provider=self.provider,
                endpoint=call.request.endpoint_template,
            )
        return entry.value

    def _coalesce(self, call: _Call, key: str) -> Flow:
        future: concurrent.futures.Future[Any] | None = None
        for _ in range(3):  # a cancelled leader hands over to a follower; bounded
            future, leads = self._flights.join(key, call.looked_at)
            if leads:
                break
            self._count("coalesced", "coalesced")
            try:
                return (yield _AwaitFlight(future, self._follow_timeout))
            except _LeaderGone:
                future = None
            except TimeoutError as exc:
                raise ProviderUnavailable(
                    "timed out waiting for the same call in flight",
                    provider=self.provider,
                    endpoint=call.request.endpoint_template,
                ) from exc
        try:
            value = yield from self._lead_across_processes(call, key)
        except Exception as exc:
            if future is not None:
                self._flights.finish(key, future, error=exc)
            raise
        except BaseException:
            if future is not None:
                self._flights.finish(key, future, error=_LeaderGone())
            raise
        if future is not None:
            self._flights.finish(key, future, value=value)
        return value

    def _lead_across_processes(self, call: _Call, key: str) -> Flow:
        link = self.redis_link
        if link is None or not link.available:
            return (yield from self._attempts(call))
        token = secrets.token_hex(8)
        keys = (f"tunegate:sf:{{{key}}}", f"tunegate:sf:{{{key}}}:result")
        give_up_at = time.monotonic() + self._follow_timeout
        pause = 0.01
        waited = False
        while True:
            reply = yield _Shared(_CLAIM, keys, (token, self._lease_ms))
            if reply is None:  # Redis is down: lead alone
                return (yield from self._attempts(call))
            state = int(reply[0])
            if state == 1:
                break
            if state == 2:
                if not waited:
                    self._count("coalesced", "coalesced")
                return self._published(call, reply[1])
            if not waited:
                waited = True
                self._count("coalesced", "coalesced")
            if time.monotonic() >= give_up_at:  # a leader that never ends: go ourselves
                return (yield from self._attempts(call))
            yield _Poll(pause)
            pause = min(pause * 2, 0.2)
        call.lease = (token, keys)
        if waited and self.cache is not None:  # took over: the old leader may have cached it
            entry = yield _CacheGet(key)
            if entry is not None and not entry.stale:
                value = self._hit(call, entry)
                yield _Shared(_FINISH, keys, (token, "", 0))
                return value
        payload = b""
        try:
            value = yield from self._attempts(call)
        except NotFound:
            payload = _NOT_FOUND_MARK
            raise
        else:
            try:
                payload = _VALUE_MARK + encode(value)
            except TypeError:  # not JSON-like: followers will look for themselves
                payload = b""
            return value
        finally:
            yield _Shared(_FINISH, keys, (token, payload, self._publish_ms))

    def _published(self, call: _Call, payload: bytes | str) -> Any:
        call.cache_state = "coalesced"
        if isinstance(payload, str):  # a client made with decode_responses=True
            payload = payload.encode("utf-8")
        if payload[:1] == _NOT_FOUND_MARK:
            raise NotFound(
                "not found", provider=self.provider, endpoint=call.request.endpoint_template
            )
        return decode(memoryview(payload)[1:])

    def _attempts(self, call: _Call) -> Flow:
        policy = self.retry
        endpoint = call.request.endpoint_template
        start = self.clock.monotonic()
        deadline = None if policy.deadline is None else start + policy.deadline
        if self.budget is not None:
            with budget_lock(self.budget):
                self.budget.record_call(start)
        call.http = self._http_request(call.request)
        attempt = 0
        previous_delay = 0.0
        while True:
            attempt += 1
            permit: Permit | None = None
            if self.breaker is not None:
                try:
                    permit = yield _Allow()
                except CircuitBreakerOpenError as exc:
                    self._stats.add("breaker_rejections")
                    return self._give_up(call, exc, attempt - 1, "circuit_open")
            response: HttpResponse | None = None
            try:
                waited = 0.0
                if self.limiter is not None:
                    waited = yield _Acquire(self._left(deadline))
                if call.lease is not None and (attempt > 1 or waited > 1.0):
                    yield _Shared(_RENEW, call.lease[1], (call.lease[0], self._lease_ms))
                began = time.perf_counter()
                try:
                    response = yield _Send(call.http, self._left(deadline))
                except ProviderError as exc:
                    outcome = Outcome.failure(exc)
                else:
                    outcome = self._read(call, response)
                latency = time.perf_counter() - began
            except RateLimitTimeout as exc:
                if permit is not None:
                    yield _Record(permit, "ignored")
                return self._give_up(call, exc, attempt - 1, "rate_limit_timeout")
            except BaseException:
                if permit is not None:
                    yield _Record(permit, "ignored")
                raise
            if response is not None and self.limiter is not None:
                yield _Adjust(response)
            if permit is not None:
                yield _Record(permit, self._verdict(outcome))
            status = None if response is None else response.status
            self._observe(call, attempt, status, outcome, latency)

            if outcome.kind is Kind.SUCCESS:
                return (yield from self._store(call, outcome.payload))
            error = outcome.error
            assert error is not None
            error.attempts = attempt
            if outcome.kind is Kind.NOT_FOUND:
                if call.key is not None and self.cache is not None:
                    yield _CacheStore(call.key, None, None, True)
                    self._count_store()
                raise self._scrubbed(call, error)
            now = self.clock.monotonic()
            decision = policy.decide(
                attempt=attempt,
                error=error,
                elapsed=now - start,
                previous_delay=previous_delay,
                rand=self._rand,
                budget_ok=functools.partial(self._spend, now) if self.budget is not None else True,
            )
            if isinstance(decision, GiveUp):
                return self._give_up(call, error, attempt, decision.reason)
            self._stats.add("retries")
            if self._metrics is not None:
                self._metrics.retries.labels(self.provider, decision.reason).inc()
            log_event(
                logging.INFO,
                "retrying",
                self.provider,
                endpoint,
                attempt=attempt,
                reason=decision.reason,
                delay=round(decision.delay, 3),
            )
            if call.lease is not None:
                lease_ms = self._lease_ms + int(decision.delay * 1000)
                yield _Shared(_RENEW, call.lease[1], (call.lease[0], lease_ms))
            yield _Sleep(decision.delay)
            previous_delay = decision.delay

    def _read(self, call: _Call, response: HttpResponse) -> Outcome:
        """Classify the answer, then let ``parse`` read a successful payload."""
        view = ResponseView(
            self.provider,
            call.request.endpoint_template,
            response.status,
            response.headers,
            response.body,
            call.expect,
            self.clock.time(),
        )
        outcome = classify_response(view, self.classifier)
        if outcome.kind is not Kind.SUCCESS or call.parse is None:
            return outcome
        try:
            return Outcome.success(call.parse(outcome.payload))
        except ProviderError as exc:
            exc.provider = exc.provider or self.provider
            exc.endpoint = exc.endpoint or call.request.endpoint_template
            return Outcome.failure(exc)
        except _PARSE_ERRORS as exc:
            err = MalformedResponse(
                f"unexpected body shape ({type(exc).__name__})",
                provider=self.provider,
                endpoint=call.request.endpoint_template,
                status=response.status,
                code="shape",
            )
            err.__cause__ = exc
            return Outcome.failure(err)

    def _store(self, call: _Call, value: Any) -> Flow:
        if call.key is not None and self.cache is not None:
            try:
                stored = yield _CacheStore(call.key, value, call.ttl, False)
            except TypeError:  # parse gave something that is not JSON-like: serve, not cache
                endpoint = call.request.endpoint_template
                log_event(logging.WARNING, "value not cacheable", self.provider, endpoint)
                return value
            self._count_store()
            return stored
        try:
            return freeze(value)  # coalesced callers share it: nobody may mutate it
        except TypeError:
            return value

    def _give_up(self, call: _Call, error: TunegateError, attempts: int, reason: str) -> Any:
        """Serve a stale entry for an outage-like failure, else raise ``error``."""
        stale = call.stale
        if stale is not None and self.stale_if_error and _stale_servable(error):
            assert self.cache is not None
            assert call.key is not None
            self.cache.record_stale_served(call.key)
            call.cache_state = "stale_served"
            self._count("stale_served", "stale_served")
            log_event(
                logging.WARNING,
                "served stale entry",
                self.provider,
                call.request.endpoint_template,
                cache="stale_served",
                reason=reason,
                error=type(error).__name__,
            )
            return self._value_of(call, stale)
        log_event(
            logging.WARNING,
            "giving up",
            self.provider,
            call.request.endpoint_template,
            attempt=attempts,
            reason=reason,
            error=type(error).__name__,
        )
        raise self._scrubbed(call, error)

    # -- helpers ---------------------------------------------------------------------------

    def _http_request(self, request: RequestLike) -> HttpRequest:
        names = {n.lower() for n in request.secret_params}
        values = tuple(
            v
            for k, v in (*request.params, *request.data, *request.headers)
            if k.lower() in names and v
        )
        return HttpRequest(
            request.method,
            self.base_url + request.path,
            self.provider,
            request.endpoint_template,
            params=tuple(request.params),
            data=tuple(request.data),
            headers=tuple(request.headers),
            secrets=values,
        )

    @staticmethod
    def _scrubbed(call: _Call, error: TunegateError) -> TunegateError:
        """Defence in depth: a message a provider hook built from a body could echo a key."""
        secrets = () if call.http is None else call.http.secrets
        text = " ".join(str(a) for a in error.args)
        if any(s in text for s in secrets):
            for s in secrets:
                text = text.replace(s, "***")
            error.args = (text,)
        return error

    def _left(self, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        return max(0.0, deadline - self.clock.monotonic())

    def _spend(self, now: float) -> bool:
        assert self.budget is not None
        with budget_lock(self.budget):
            return self.budget.try_spend(now)

    def _verdict(self, outcome: Outcome) -> str:
        if outcome.kind in (Kind.SUCCESS, Kind.NOT_FOUND):
            return "success"
        assert self.breaker is not None
        assert outcome.error is not None
        return "failure" if self.breaker.is_failure(outcome.error) else "ignored"

    def _count_store(self) -> None:
        if self._metrics is not None:
            self._m_cache["store"].inc()

    def _count(self, stat: str, cache_result: str) -> None:
        self._stats.add(stat)
        if self._metrics is not None:
            self._m_cache[cache_result].inc()

    def _observe(
        self, call: _Call, attempt: int, status: int | None, outcome: Outcome, latency: float
    ) -> None:
        kind = outcome.kind
        self._stats.add("api_calls")
        if kind not in (Kind.SUCCESS, Kind.NOT_FOUND):
            self._stats.add("api_errors")
        self._stats.observe(latency)
        endpoint = call.request.endpoint_template
        if self._metrics is not None:
            self._m_calls[kind].inc()
            self._metrics.latency.labels(self.provider, endpoint).observe(latency)
        log_attempt(
            provider=self.provider,
            endpoint=endpoint,
            status=status,
            attempt=attempt,
            latency_ms=latency * 1000.0,
            cache=call.cache_state,
            outcome=kind.value,
        )
        if call.span is not None:
            call.span.attempt(attempt, status, kind.value, latency * 1000.0)

    def _gauge_values(self) -> dict[str, float | None]:
        """Read at scrape time by the Prometheus collector."""
        state = None
        if self.breaker is not None:
            state = float(BREAKER_STATE_CODES.get(str(self.breaker.state), 0))
        tokens = None
        if self.limiter is not None and self.provider in self.limiter.buckets:
            tokens = self.limiter.buckets[self.provider].stats()["available_tokens"]
        return {
            "breaker_state": state,
            "cache_hit_ratio": self._stats.snapshot()["cache_hit_ratio"],
            "tokens": tokens,
        }


_CACHE_RESULTS = ("hit", "negative_hit", "miss", "stale_served", "bypass", "coalesced", "store")
