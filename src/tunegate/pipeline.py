"""The one request path every upstream call takes, for threads and for asyncio.

Stage order (``docs/pipeline.md`` says why)::

    fresh cache hit -> return at once (no span, no flow, one counter)
    overall deadline starts
    single-flight: in this process (threads and tasks), then across processes (Redis lease);
      waiting for another caller's identical call counts against the deadline
      per attempt: breaker.allow -> limiter token -> HTTP exchange -> classify
                   -> limiter.adjust_from_headers -> breaker.record_*
      retry policy: transient, within deadline and budget? sleep, next attempt
    cache write (positive, or negative for "not found")
    on final failure: stale-if-error, else the typed error

How sync and async share it: after the cache lookup (the only step both drivers spell out,
so that a hit costs a dictionary look and a counter) the path is written once, as a
generator (:meth:`Pipeline._miss`) that *yields effects* (``tunegate._effects``: store,
take a token, send, sleep...) and is sent their results back, or has their exceptions
thrown in. Every decision lives in that generator; ``tunegate._redis.drive`` and ``adrive``
(the loops the limiter and the breaker use too) run each effect with its blocking or its
awaitable form. We chose this over generating the sync twin from async code (httpcore's
unasync) because there is then no second copy at all, generated or not, and no build step
to keep in step; and over running the sync path on an event loop because callers' threads
keep their own context (correlation id, spans) and no loop is needed for a cache hit.

The path is three layers, one module each: :class:`Pipeline` here (settings, public API,
the hit), :class:`tunegate._coalesce.SingleFlight` (who leads, who waits, for how long) and
:class:`tunegate._attempts.AttemptPath` (breaker, limiter, HTTP, retry, stale-if-error).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from tunegate._attempts import Call, Flow, RequestLike
from tunegate._clock import Clock, SystemClock
from tunegate._coalesce import AFTER_DEADLINE, ERROR_TTL, SingleFlight
from tunegate._flight import Flights
from tunegate._http import HttpConfig, HttpPool, shared_pool
from tunegate._policy.classify import Expect, Kind, ProviderHook
from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import KeyScheme
from tunegate._policy.retry import RetryBudget, RetryPolicy
from tunegate._redis import RedisLink, adrive, drive
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.exceptions import ConfigurationError, NotFound
from tunegate.observability import (
    HAVE_PROMETHEUS,
    Metrics,
    Source,
    Stats,
    log_event,
    logger,
    record_source,
    start_span,
)
from tunegate.ratelimit import RateLimiter
from tunegate.retry import budget_lock

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MISS", "Pipeline", "RequestLike"]

MISS: Any = object()
"""What :meth:`Pipeline.warm` returns when it has no fresh in-memory answer."""

_KEY_MEMO_SIZE = 4096


class Pipeline(SingleFlight):
    """Every upstream call of one provider: cache, single-flight, breaker, limiter, pooled
    HTTP, classification, retry, stale-if-error, with logs, stats and metrics.

    Args:
        provider: ``"spotify"``, ``"musicbrainz"``, ``"lastfm"`` (or any name a test uses).
        base_url: the provider's origin (``"https://api.spotify.com"``); request paths are
            appended to it.
        cache: the response cache; None disables caching (single-flight still works).
        rate_limiter: the limiter, holding a bucket for ``provider`` (the clients configure
            it from their provider spec). None: no limiting.
        circuit_breaker: this provider's breaker; None: no breaker.
        retry: the retry policy. Its ``deadline`` is the overall deadline of a call that
            missed the cache: waiting for another caller's identical call, and every
            attempt, fit in it.
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
        publish_ttl: seconds a leader's answer stays published for other processes (an
            outage-like failure: at most ``ERROR_TTL``).
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
        self._keys = cache.key_scheme if cache is not None else KeyScheme("tunegate")
        self._key_memo: dict[tuple[str, tuple[str, ...]], str] = {}

        link = redis if isinstance(redis, RedisLink) or redis is None else RedisLink(redis)
        if link is None and cache is not None:
            link = getattr(cache.backend, "link", None)
        self.redis_link: RedisLink | None = link
        total = self.http.config.total_timeout
        self._lease_ms = int(max(lease_ttl, total + 1.0) * 1000)
        self._publish_ms = int(publish_ttl * 1000)
        self._error_ms = int(min(publish_ttl, ERROR_TTL) * 1000)
        # Without a deadline, the longest a leader's attempts may take: the bound for waiting.
        self._attempts_bound = self.retry.max_attempts * (total + self.retry.cap)
        self._follow_slack = AFTER_DEADLINE

        self._flights = Flights()
        self._stats = Stats()
        self._metrics = Metrics.for_registry(registry) if metrics and HAVE_PROMETHEUS else None
        if self._metrics is not None:
            m = self._metrics
            self._registry = m.registry  # held here: Metrics holds it weakly
            self._m_calls = {k: m.api_calls.labels(provider, k.value) for k in Kind}
            m.live.track(self, Source(provider, self._stats, circuit_breaker, rate_limiter))

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
        ``use_cache=False`` asks the provider itself: no cache lookup, no sharing of another
        caller's in-flight or just-published answer; the fresh answer is still written to
        the cache. ``ttl`` overrides the cache's TTL for this kind.

        Raises: :class:`NotFound` (also for a cached negative entry),
        :class:`CircuitBreakerOpenError`, :class:`RateLimitTimeout`, :class:`RateLimited`,
        :class:`AuthenticationError`, :class:`ProviderUnavailable`,
        :class:`MalformedResponse`, :class:`ProviderError` — unless a stale entry can be
        served instead (``stale_if_error``).
        """
        key = self._key_of(request)
        looked_at = self._flights.generation
        cache = self.cache
        if not use_cache:
            return drive(
                self._miss(request, key, looked_at, False, None, parse, expect, ttl, False)
            )
        if key is None or cache is None:
            return drive(self._miss(request, key, looked_at, False, None, parse, expect, ttl))
        entry = cache.lookup(key)
        if entry is not None and not entry.stale:
            return self._hit(request, entry)
        return drive(self._miss(request, key, looked_at, True, entry, parse, expect, ttl))

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
        key = self._key_of(request)
        looked_at = self._flights.generation
        cache = self.cache
        if not use_cache:
            flow = self._miss(request, key, looked_at, False, None, parse, expect, ttl, False)
            return await adrive(flow)
        if key is None or cache is None:
            flow = self._miss(request, key, looked_at, False, None, parse, expect, ttl)
            return await adrive(flow)
        entry = await cache.alookup(key)
        if entry is not None and not entry.stale:
            return self._hit(request, entry)
        flow = self._miss(request, key, looked_at, True, entry, parse, expect, ttl)
        return await adrive(flow)

    def key(self, request: RequestLike) -> str | None:
        """The cache (and single-flight) key of ``request``; None when it is not cached."""
        kind = request.cache_kind
        if kind is None:
            return None
        # Remembered by content: the same request costs a dict look instead of normalising
        # and escaping every part again (a bounded memo, started over when full).
        memo = (kind, request.cache_parts)
        key = self._key_memo.get(memo)
        if key is None:
            key = self._keys.key(kind, *request.cache_parts)
            if len(self._key_memo) >= _KEY_MEMO_SIZE:
                self._key_memo.clear()
            self._key_memo[memo] = key
        return key

    def warm(self, key: str, endpoint: str, not_found: Any) -> Any:
        """The fresh in-memory answer under ``key`` (``not_found`` for a negative entry),
        counted as a hit; else :data:`MISS`, uncounted (the full :meth:`call` follows)."""
        cache = self.cache
        entry = None if cache is None else cache.fresh(key)
        if entry is None:
            return MISS
        record_source(self.provider, "cache")
        if entry.negative:
            self._stats.add("negative_hits")
            if logger.isEnabledFor(logging.DEBUG):
                log_event(logging.DEBUG, "cache hit", self.provider, endpoint, cache="negative_hit")
            return not_found
        self._stats.add("cache_hits")
        if logger.isEnabledFor(logging.DEBUG):
            log_event(logging.DEBUG, "cache hit", self.provider, endpoint, cache="hit")
        return entry.value

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
        """Close the running loop's connections, HTTP and the Redis client single-flight
        used; call it before the loop ends (they reopen if the pipeline is used again)."""
        await self.http.aclose()
        if self.redis_link is not None:
            await self.redis_link.aclose()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- a fresh hit -----------------------------------------------------------------------

    def _key_of(self, request: RequestLike) -> str | None:
        if request.provider != self.provider:
            raise ConfigurationError(
                f"a {request.provider} request sent through the {self.provider} pipeline"
            )
        return self.key(request)

    def _hit(self, request: RequestLike, entry: CacheEntry) -> Any:
        record_source(self.provider, "cache")
        if entry.negative:
            self._stats.add("negative_hits")
            self._log_hit(request, "negative_hit")
            return self._value_of(request, entry)  # raises NotFound
        self._stats.add("cache_hits")
        if logger.isEnabledFor(logging.DEBUG):
            self._log_hit(request, "hit")
        return entry.value

    def _log_hit(self, request: RequestLike, state: str) -> None:
        endpoint = request.endpoint_template
        log_event(logging.DEBUG, "cache hit", self.provider, endpoint, cache=state)

    # -- after a miss ------------------------------------------------------------------------

    def _miss(
        self,
        request: RequestLike,
        key: str | None,
        looked_at: int,
        looked: bool,
        entry: CacheEntry | None,
        parse: Callable[[Any], Any] | None,
        expect: Expect,
        ttl: float | None,
        coalesce: bool = True,
    ) -> Flow:
        span = start_span(self.provider, request.endpoint_template)
        call = Call(request, key, parse, expect, ttl, span, looked_at, time.monotonic())
        if looked:
            call.stale = entry
            call.cache_state = "miss"
            self._stats.add("cache_misses")
        error: BaseException | None = None
        try:
            if key is None or not coalesce:
                value = yield from self._attempts(call)
            else:
                value = yield from self._coalesce(call, key)
            stale = call.cache_state == "stale_served"
            record_source(self.provider, "stale" if stale else "api")
            return value
        except BaseException as exc:
            error = exc
            if isinstance(exc, NotFound):
                record_source(self.provider, "api")
            raise
        finally:
            if span is not None:
                span.finish(call.cache_state, error)
