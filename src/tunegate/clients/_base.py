"""What the three clients share: effects and their two drivers, component defaults, stats.

Each client method is written once, as a generator (a *flow*) that yields effects (make
this pipeline call, look this key up, wait for that refresh) and is sent their results or
has their exceptions thrown in, as :mod:`tunegate.pipeline` does one level down. The sync
classes run a flow with :func:`drive`, the async ones with :func:`adrive`; their public
methods are one-line wrappers, so sync and async behave the same by construction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio

from tunegate._clock import Clock, SystemClock
from tunegate._drive import Effect, Flow, adrive, drive
from tunegate._http import HttpConfig, HttpPool
from tunegate._policy.classify import ProviderHook
from tunegate._policy.retry import RetryBudget, RetryPolicy
from tunegate._redis import RedisLink
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.exceptions import ConfigurationError, NotFound, TunegateError
from tunegate.observability import Stats
from tunegate.pipeline import Miss, Pipeline
from tunegate.providers import ApiRequest
from tunegate.ratelimit import RateLimiter

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "AsyncClientMixin",
    "Call",
    "ClientBase",
    "Effect",
    "Flow",
    "Pause",
    "Profile",
    "RedisLike",
    "SyncClientMixin",
    "Together",
    "Wait",
    "adrive",
    "cache_scope_for",
    "drive",
    "fetch",
    "not_found_value",
    "strip_suffix",
]

T = TypeVar("T")
RedisLike = redis.Redis | redis.asyncio.Redis | str | RedisLink


# -- effects ------------------------------------------------------------------------------


@dataclass(slots=True)
class Call(Effect):
    """One request through the provider's pipeline (cache, breaker, limiter, HTTP, retry)."""

    pipeline: Pipeline
    request: ApiRequest
    parse: Callable[[Any], Any] | None = None
    use_cache: bool = True

    def run(self) -> Any:
        return self.pipeline.call(self.request, parse=self.parse, use_cache=self.use_cache)

    async def arun(self) -> Any:
        return await self.pipeline.acall(self.request, parse=self.parse, use_cache=self.use_cache)


@dataclass(slots=True)
class Pause(Effect):
    """A real-time pause while another process works (not the client's clock: that
    process's progress is measured in real time, whatever clock the client is given)."""

    seconds: float

    def run(self) -> None:
        time.sleep(self.seconds)

    async def arun(self) -> None:
        await asyncio.sleep(self.seconds)


@dataclass(slots=True)
class Wait(Effect):
    """Wait for a result another thread or task is producing."""

    future: concurrent.futures.Future[Any]
    timeout: float

    def run(self) -> Any:
        return self.future.result(self.timeout)

    async def arun(self) -> Any:
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
class Together(Effect):
    """Several flows: one after another in a thread, at most ``limit`` at once in asyncio.
    The first error wins; in asyncio the flows still running are cancelled."""

    flows: Sequence[Flow[Any]]
    limit: int = 8

    def run(self) -> list[Any]:
        return [drive(flow) for flow in self.flows]

    async def arun(self) -> list[Any]:
        gate = asyncio.Semaphore(self.limit)

        async def one(flow: Flow[Any]) -> Any:
            async with gate:
                return await adrive(flow)

        tasks = [asyncio.ensure_future(one(flow)) for flow in self.flows]
        try:
            return await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


# -- flows every client uses --------------------------------------------------------------


def not_found_value(request: ApiRequest) -> Any:
    """What a method returns when the provider says "no such thing": None or a new []."""
    return [] if request.not_found_result == "empty" else None


def fetch(
    pipeline: Pipeline,
    request: ApiRequest,
    parse: Callable[[Any], Any] | None = None,
    use_cache: bool = True,
) -> Flow[Any]:
    """One pipeline call; "not found" (fresh or cached) becomes None or []."""
    try:
        return (yield from pipeline.flow(request, parse=parse, use_cache=use_cache))
    except NotFound:
        return not_found_value(request)


# -- construction -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Profile:
    """A provider's defaults: the design's rate and breaker tables, its official host, the
    environment variable that overrides the host, and the API path suffix a base URL may
    carry (``https://api.spotify.com/v1`` works as well as ``https://api.spotify.com``)."""

    name: Literal["spotify", "musicbrainz", "lastfm"]
    rate: float
    capacity: int
    failure_threshold: int
    timeout: float
    official_url: str
    url_env: str
    suffix: str
    success_threshold: int = 2


def base_url_for(given: str | None, profile: Profile, env_name: str | None = None) -> str:
    """``given``, else ``$env_name`` (default: the profile's), else the official host; any
    trailing API path suffix (``/v1``, ``/ws/2``, ``/2.0/``) removed."""
    url = given or os.environ.get(env_name or profile.url_env) or profile.official_url
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"{profile.name}: base_url must start with http:// or https://")
    return strip_suffix(url, profile.suffix)


def strip_suffix(url: str, suffix: str) -> str:
    url = url.rstrip("/")
    return url[: -len(suffix)] if suffix and url.endswith(suffix) else url


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None, str]:
    """``url`` reduced to what names an origin: scheme, host, port (None for the scheme's
    default), path prefix; host and scheme lower-cased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"base_url has an invalid port: {url!r}") from None
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def cache_scope_for(base_url: str, profile: Profile) -> tuple[str, ...]:
    """The cache-key parts that keep answers of ``base_url`` to itself: ``()`` for the
    provider's official origin (http or https, default port, no path), so its keys are
    exactly the design's; else one part, ``"@"`` and 16 hex digits of a SHA-256 of the
    normalised origin. An emulator, a mirror or a proxy never serves another origin's
    answers, nor reads the official ones (keys differ, and so does single-flight)."""
    scheme, host, port, path = _origin(base_url)
    official = _origin(profile.official_url)
    if (host, port, path) == official[1:] and scheme in _DEFAULT_PORTS:
        return ()
    origin = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"
    return ("@" + hashlib.sha256(origin.encode()).hexdigest()[:16],)


def link_for(redis_target: RedisLike | None, cache: CacheManager | None) -> RedisLink | None:
    """The Redis to share state through: the one given, else the cache's own."""
    if isinstance(redis_target, RedisLink):
        return redis_target
    if redis_target is not None:
        return RedisLink(redis_target)
    link = getattr(cache.backend, "link", None) if cache is not None else None
    return link if isinstance(link, RedisLink) else None


RateCheck = Callable[[str, float, int], None]
"""Refuses (ConfigurationError) a rate and capacity the provider at a base URL forbids."""


def default_limiter(
    limiter: RateLimiter | None,
    profile: Profile,
    link: RedisLink | None,
    clock: Clock | None,
    rate: float | None,
    capacity: int | None,
    check: Callable[[float, int], None] | None = None,
) -> RateLimiter:
    """The given limiter or an embedded one, with ``profile``'s bucket ensured (an existing
    bucket is kept) or set to ``rate``/``capacity`` when given. ``check`` sees the rate and
    capacity asked for before the limiter is touched, then the bucket's own."""
    limiter = limiter if limiter is not None else RateLimiter(redis=link, clock=clock)
    if rate is not None:
        cap = capacity if capacity is not None else max(1, int(rate))
        if check is not None:
            check(rate, cap)  # before touching a limiter the caller shares
        limiter.configure_provider(profile.name, rate, cap)
    else:
        cap = capacity if capacity is not None else profile.capacity
        if check is not None and capacity is not None:
            check(profile.rate, cap)
        limiter.ensure_provider(profile.name, profile.rate, cap)
    if check is not None:
        bucket = limiter.buckets[profile.name]
        check(bucket.rate, bucket.capacity)  # a shared limiter may hold its own settings
    return limiter


def default_breaker(
    breaker: CircuitBreaker | None, profile: Profile, link: RedisLink | None, clock: Clock | None
) -> CircuitBreaker:
    if breaker is not None:
        return breaker
    return CircuitBreaker(
        profile.name,
        failure_threshold=profile.failure_threshold,
        timeout=profile.timeout,
        success_threshold=profile.success_threshold,
        redis=link,
        clock=clock,
    )


class ClientBase:
    """Constructor plumbing, stats and lifetime shared by every client, sync or async."""

    profile: ClassVar[Profile]
    _classifier: ClassVar[ProviderHook]

    def __init__(
        self,
        *,
        cache_manager: CacheManager | None,
        rate_limiter: RateLimiter | None,
        circuit_breaker: CircuitBreaker | None,
        base_url: str | None,
        redis: RedisLike | None,
        http: HttpConfig | HttpPool | None,
        retry: RetryPolicy | None,
        retry_budget: RetryBudget | Literal[False] | None,
        rate: float | None,
        capacity: int | None,
        stale_if_error: bool,
        registry: CollectorRegistry | None,
        metrics: bool,
        clock: Clock | None,
        check_rate: RateCheck | None = None,
        before_pipeline: Callable[[], None] | None = None,
    ) -> None:
        profile = self.profile
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._base_url = base_url_for(base_url, profile)
        self._cache_scope = cache_scope_for(self._base_url, profile)
        self._cache = cache_manager if cache_manager is not None else CacheManager(clock=clock)
        self._owns_link = redis is not None and not isinstance(redis, RedisLink)
        self._link = link_for(redis, self._cache)
        url = self._base_url
        check = None if check_rate is None else lambda r, c: check_rate(url, r, c)
        self._limiter = default_limiter(
            rate_limiter, profile, self._link, clock, rate, capacity, check
        )
        self._breaker = default_breaker(circuit_breaker, profile, self._link, clock)
        self._stale_if_error = stale_if_error
        # Hits and misses found by this client's own cache reads (batch lookups, the cached
        # answer served when a Spotify token cannot be had); the pipeline counts the rest.
        self._own = Stats(window=1)
        self._http = http
        self._retry = retry
        self._registry = registry
        self._metrics = metrics
        if before_pipeline is not None:
            before_pipeline()  # e.g. the token pipeline, whose gauges the main one overrides
        self._pipeline = Pipeline(
            profile.name,
            self._base_url,
            cache=self._cache,
            rate_limiter=self._limiter,
            circuit_breaker=self._breaker,
            retry=retry,
            # On by default: an outage must not multiply the load by max_attempts.
            retry_budget=RetryBudget() if retry_budget is None else retry_budget or None,
            http=http,
            classifier=type(self)._classifier,
            redis=self._link,
            registry=registry,
            metrics=metrics,
            stale_if_error=stale_if_error,
            clock=clock,
        )

    # -- the components, for the design's monitoring and troubleshooting ------------------

    @property
    def base_url(self) -> str:
        """The origin requests go to (official host, mirror, proxy or emulator)."""
        return self._base_url

    @property
    def cache_scope(self) -> tuple[str, ...]:
        """The cache-key parts this client puts before a request's own: ``()`` against the
        provider's official host (the design's keys), else one part naming the origin
        (``"@"`` + 16 hex digits), so that an emulator's or a mirror's answers are never
        served for another origin. ``cache.invalidate(kind, *client.cache_scope, *parts)``
        forgets one of this client's answers whatever its origin."""
        return self._cache_scope

    @property
    def cache_manager(self) -> CacheManager:
        return self._cache

    @property
    def rate_limiter(self) -> RateLimiter:
        return self._limiter

    @property
    def circuit_breaker(self) -> CircuitBreaker:
        return self._breaker

    @property
    def pipeline(self) -> Pipeline:
        """The request pipeline every call of this client goes through."""
        return self._pipeline

    def get_stats(self) -> dict[str, Any]:
        """This client's figures: ``cache_hits``, ``cache_misses``, ``negative_hits``,
        ``cache_hit_ratio``, ``stale_served``, ``api_calls``, ``api_errors``, ``retries``,
        ``coalesced``, ``breaker_rejections``, ``latency_ms`` (p50/p95/p99 of recent
        attempts), ``circuit_breaker`` (its state and counters), ``rate_limiter`` (this
        provider's bucket), ``retry_budget``, ``provider``, ``base_url``."""
        stats = self._pipeline.get_stats()
        own = self._own.snapshot()
        for name in ("cache_hits", "cache_misses", "negative_hits", "stale_served"):
            stats[name] += own[name]
        hits = stats["cache_hits"] + stats["negative_hits"]
        looked = hits + stats["cache_misses"]
        stats["cache_hit_ratio"] = hits / looked if looked else 0.0
        stats["base_url"] = self._base_url
        return stats

    # -- requests ---------------------------------------------------------------------------

    def _scoped(self, request: ApiRequest) -> ApiRequest:
        """``request`` with this client's cache scope in front of its key parts (every
        request a client sends or looks up goes through here exactly once)."""
        if not self._cache_scope or request.cache_kind is None:
            return request
        return dataclasses.replace(request, cache_parts=(*self._cache_scope, *request.cache_parts))

    # -- reading the cache directly ---------------------------------------------------------

    def _from_cache(
        self, request: ApiRequest, error: TunegateError | None = None
    ) -> Flow[tuple[bool, Any]]:
        """``(True, value)`` for a fresh cached answer to ``request`` (counted as a hit), or
        for a stale one when ``error`` is outage-like and stale-if-error is on; else
        ``(False, None)`` (counted as a miss). The pipeline reads and counts it."""
        found = yield from self._pipeline.cached(request, error, not_found_value(request))
        return (False, None) if isinstance(found, Miss) else (True, found)

    # -- lifetime ---------------------------------------------------------------------------

    def _close_sync(self) -> None:
        self._pipeline.close()
        if self._owns_link and self._link is not None:
            self._link.close()

    async def _close_async(self) -> None:
        await self._pipeline.aclose()
        if self._owns_link and self._link is not None:
            await self._link.aclose()


class SyncClientMixin(ClientBase):
    """``close()`` and ``with client:`` for the blocking clients."""

    def close(self) -> None:
        """Close this client's pooled connections (they reopen if the client is used again)."""
        self._close_sync()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClientMixin(ClientBase):
    """``await aclose()`` and ``async with client:`` for the asyncio clients."""

    async def aclose(self) -> None:
        """Close the running loop's connections; call it before the loop ends."""
        await self._close_async()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
