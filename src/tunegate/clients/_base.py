"""What the three clients share: options, effects and their two drivers, the key-first
hit, stats.

Each cached client method is described once, as an :class:`Op`: how its arguments become a
validated request, how an answer is read, what the caller gets. A call first looks the
method's cache key up from its raw arguments (remembered once they validated) and answers a
fresh in-memory hit without building anything; only a miss runs the method's *flow*, a
generator that yields effects (make this pipeline call, look this key up, wait for that
refresh) and is sent their results or has their exceptions thrown in, as
:mod:`tunegate.pipeline` does one level down. The sync classes run a flow with
:func:`drive`, the async ones with :func:`adrive` (``_run``, the only code written twice),
so sync and async behave the same by construction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Literal,
    NamedTuple,
    Self,
    TypedDict,
    TypeVar,
    cast,
)
from urllib.parse import urlsplit

from tunegate._clock import Clock, SystemClock
from tunegate._drive import Effect, Flow, adrive, drive
from tunegate._http import HttpConfig, HttpPool
from tunegate._policy.classify import Expect, ProviderHook
from tunegate._policy.retry import RetryBudget, RetryPolicy
from tunegate._redis import RedisLike, RedisLink
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.cache.memory import MemoryBackend
from tunegate.clients._extra import design_stats
from tunegate.exceptions import ConfigurationError, NotFound, TunegateError
from tunegate.pipeline import MISS, Miss, Pipeline
from tunegate.providers import ApiRequest, Pairs
from tunegate.providers._request import amended
from tunegate.providers.spec import ProviderSpec
from tunegate.ratelimit import RateLimiter

if TYPE_CHECKING:
    from tunegate.observability import CollectorRegistry

__all__ = [
    "AsyncClientMixin",
    "Changes",
    "ClientBase",
    "ClientOptions",
    "Effect",
    "Flow",
    "Op",
    "RedisLike",
    "SyncClientMixin",
    "adrive",
    "cache_scope_for",
    "drive",
    "fetch",
    "not_found_value",
    "strip_suffix",
    "together",
]

T = TypeVar("T")
_MEMO_SIZE = 4096  # prepared requests remembered per client (started over when full)


# -- effects ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Gather(Effect):
    """``flows`` as asyncio tasks, at most ``limit`` at once; the first error wins and the
    flows still running are cancelled. From a thread it does nothing (None): there
    :func:`together` runs the flows one after another in the caller's own driver loop."""

    flows: Sequence[Flow[Any]]
    limit: int

    def run(self) -> None:
        return None

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


def together(flows: Sequence[Flow[Any]], limit: int = 8) -> Flow[list[Any]]:
    """The values of several flows, in order: one after another in a thread (inside the
    caller's one driver loop, no nested one), at most ``limit`` at once in asyncio (each
    its own task). The first error wins."""
    values: list[Any] | None = yield _Gather(flows, limit)
    if values is None:  # a thread: here, in this loop
        values = []
        for flow in flows:
            values.append((yield from flow))
    return values


# -- flows every client uses --------------------------------------------------------------


def not_found_value(request: ApiRequest) -> Any:
    """What a method returns when the provider says "no such thing": None or a new []."""
    return [] if request.not_found_result == "empty" else None


def fetch(
    pipeline: Pipeline,
    request: ApiRequest,
    parse: Callable[[Any], Any] | None = None,
    use_cache: bool = True,
    looked: Miss | None = None,
) -> Flow[Any]:
    """One pipeline call, in the caller's driver loop; "not found" (fresh or cached)
    becomes None or []."""
    try:
        return (yield from pipeline.flow(request, parse=parse, use_cache=use_cache, looked=looked))
    except NotFound:
        return not_found_value(request)


@dataclass(frozen=True, slots=True, eq=False)  # eq=False: hashed by identity, in memo keys
class Op(Generic[T]):
    """One cached client method, described once for the hit and the miss.

    ``build(client, *args)`` validates the arguments and returns the provider's request
    (raising InvalidInput for bad input); ``parse(args, payload)`` reads an answer on a
    miss (None: the payload as is); ``finish(value)`` turns the cached or fetched value (or
    the method's "not found" value) into what the caller gets (None: as is).
    """

    build: Callable[..., ApiRequest]
    parse: Callable[[tuple[Any, ...], Any], Any] | None = None
    finish: Callable[[Any], T] | None = None


class Prepared(NamedTuple):
    """A method's request as this client sends it (cache scope in front of the key parts,
    the client's own headers added; no credentials that change), and its cache key."""

    request: ApiRequest
    key: str | None


_NEGATIVE: Any = object()  # Pipeline.warm's answer for a cached "not found"


# -- options --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """Everything a client takes besides its credentials; one frozen value, shared freely.

    Every field is also a keyword of the clients' constructors and of
    :meth:`ClientBase.with_options`. Omitted components are embedded, from the provider's
    spec (:mod:`tunegate.providers.spec`). A built client's :attr:`~ClientBase.options`
    holds the components it actually uses, so that ``with_options`` shares them.

    Attributes:
        cache_manager, rate_limiter, circuit_breaker: shared components (default: an
            in-memory cache; the spec's bucket and breaker).
        base_url: the API origin (default: the spec's ``url_env`` variable, else the
            official host).
        redis: share state (the Spotify token, embedded components) with every worker: a
            client, a URL or a ``RedisLink``; default: the cache's Redis, when it has one.
        http: pool and timeout settings, or a ready pool.
        retry: the retry policy.
        retry_budget: retries at most a share of calls (default ``RetryBudget()``: 20%
            over 10 s, at least 1 a second); False: no budget.
        rate, capacity: set this provider's bucket in the limiter (default: the spec's,
            unless the limiter holds one already).
        stale_if_error: serve an expired cached answer when the provider is down.
        registry, metrics: Prometheus registry (default: the global one), metrics switch.
        clock: the clock, for tests (``tunegate.testing.FakeClock``).
    """

    cache_manager: CacheManager | None = None
    rate_limiter: RateLimiter | None = None
    circuit_breaker: CircuitBreaker | None = None
    base_url: str | None = None
    redis: RedisLike | None = None
    http: HttpConfig | HttpPool | None = None
    retry: RetryPolicy | None = None
    retry_budget: RetryBudget | Literal[False] | None = None
    rate: float | None = None
    capacity: int | None = None
    stale_if_error: bool = True
    registry: CollectorRegistry | None = None
    metrics: bool = True
    clock: Clock | None = None


class Changes(TypedDict, total=False):
    """:class:`ClientOptions`'s fields as keywords (constructors, ``with_options``)."""

    cache_manager: CacheManager | None
    rate_limiter: RateLimiter | None
    circuit_breaker: CircuitBreaker | None
    base_url: str | None
    redis: RedisLike | None
    http: HttpConfig | HttpPool | None
    retry: RetryPolicy | None
    retry_budget: RetryBudget | Literal[False] | None
    rate: float | None
    capacity: int | None
    stale_if_error: bool
    registry: CollectorRegistry | None
    metrics: bool
    clock: Clock | None


OptionsT = TypeVar("OptionsT", bound=ClientOptions)


def options_of(
    kind: type[OptionsT], options: ClientOptions | None, changes: Mapping[str, Any]
) -> OptionsT:
    """``options`` (default: all defaults) as a ``kind``, with ``changes`` applied. A plain
    :class:`ClientOptions` is accepted by every client; an unknown keyword is a TypeError."""
    if options is None:
        return kind(**changes)
    if not isinstance(options, kind):
        fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
        return kind(**(fields | dict(changes)))
    return dataclasses.replace(options, **changes) if changes else options


# -- construction -------------------------------------------------------------------------


def base_url_for(given: str | None, spec: ProviderSpec, env_name: str | None = None) -> str:
    """``given``, else ``$env_name`` (default: the spec's), else the official host; any
    trailing API path suffix (``/v1``, ``/ws/2``, ``/2.0/``) removed."""
    url = given or os.environ.get(env_name or spec.url_env) or spec.base_url
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"{spec.name}: base_url must start with http:// or https://")
    return strip_suffix(url, spec.suffix)


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


def cache_scope_for(base_url: str, spec: ProviderSpec) -> tuple[str, ...]:
    """The cache-key parts that keep answers of ``base_url`` to itself: ``()`` for the
    provider's official origin (http or https, default port, no path), so its keys are
    exactly the design's; else one part, ``"@"`` and 16 hex digits of a SHA-256 of the
    normalised origin. An emulator, a mirror or a proxy never serves another origin's
    answers, nor reads the official ones (keys differ, and so does single-flight)."""
    scheme, host, port, path = _origin(base_url)
    official = _origin(spec.base_url)
    if (host, port, path) == official[1:] and scheme in _DEFAULT_PORTS:
        return ()
    origin = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"
    return ("@" + hashlib.sha256(origin.encode()).hexdigest()[:16],)


def link_for(
    redis_target: RedisLike | None, cache: CacheManager | None
) -> tuple[RedisLink | None, bool]:
    """The Redis to share state through (the one given, else the cache's own) and whether
    the client owns it (:meth:`RedisLink.adopt`'s rule: a link made from a client or a URL)."""
    if redis_target is not None:
        return RedisLink.adopt(redis_target)
    link = getattr(cache.backend, "link", None) if cache is not None else None
    return (link, False) if isinstance(link, RedisLink) else (None, False)


RateCheck = Callable[[float, int], None]
"""Refuses (ConfigurationError) a rate and capacity the provider at this base URL forbids."""


def default_limiter(
    limiter: RateLimiter | None,
    spec: ProviderSpec,
    link: RedisLink | None,
    clock: Clock | None,
    rate: float | None,
    capacity: int | None,
    check: RateCheck | None = None,
) -> RateLimiter:
    """The given limiter or an embedded one, with ``spec``'s bucket ensured (an existing
    bucket is kept) or set to ``rate``/``capacity`` when given. ``check`` sees the rate and
    capacity asked for before the limiter is touched, then the bucket's own."""
    limiter = limiter if limiter is not None else RateLimiter(redis=link, clock=clock)
    if rate is not None:
        cap = capacity if capacity is not None else max(1, int(rate))
        if check is not None:
            check(rate, cap)  # before touching a limiter the caller shares
        limiter.configure_provider(spec.name, rate, cap)
    else:
        cap = capacity if capacity is not None else spec.capacity
        if check is not None and capacity is not None:
            check(spec.rate, cap)
        limiter.ensure_provider(spec.name, spec.rate, cap)
    if check is not None:
        bucket = limiter.buckets[spec.name]
        check(bucket.rate, bucket.capacity)  # a shared limiter may hold its own settings
    return limiter


def spec_breaker(
    name: str, spec: ProviderSpec, link: RedisLink | None, clock: Clock | None
) -> CircuitBreaker:
    """A breaker named ``name`` with the spec's thresholds."""
    return CircuitBreaker(
        name,
        failure_threshold=spec.failure_threshold,
        timeout=spec.breaker_timeout,
        success_threshold=spec.success_threshold,
        redis=link,
        clock=clock,
    )


def spec_http(spec: ProviderSpec) -> HttpConfig:
    """The provider's default timeouts (the rest of :class:`HttpConfig`'s defaults)."""
    return HttpConfig(read_timeout=spec.read_timeout, total_timeout=spec.total_timeout)


class ClientBase:
    """Construction from :class:`ClientOptions`, the key-first hit, stats and lifetime,
    shared by every client, sync or async."""

    spec: ClassVar[ProviderSpec]
    _classifier: ClassVar[ProviderHook]
    #: Headers every request of this client carries (MusicBrainz's User-Agent).
    _headers: Pairs = ()

    def __init__(self, options: ClientOptions, check_rate: RateCheck | None = None) -> None:
        spec, o, clock = self.spec, options, options.clock
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._base_url = base_url_for(o.base_url, spec)
        self._cache_scope = cache_scope_for(self._base_url, spec)
        self._cache = o.cache_manager if o.cache_manager is not None else CacheManager(clock=clock)
        self._link, self._owns_link = link_for(o.redis, self._cache)
        self._in_memory = type(self._cache.backend) is MemoryBackend
        self._limiter = default_limiter(
            o.rate_limiter, spec, self._link, clock, o.rate, o.capacity, check_rate
        )
        self._breaker = o.circuit_breaker or spec_breaker(spec.name, spec, self._link, clock)
        self._prepared: dict[tuple[Op[Any], tuple[Any, ...]], Prepared] = {}
        self._before_pipeline(o)
        # On by default: an outage must not multiply the load by max_attempts.
        budget = RetryBudget() if o.retry_budget is None else o.retry_budget or None
        self._pipeline = Pipeline(
            spec.name,
            self._base_url,
            cache=self._cache,
            rate_limiter=self._limiter,
            circuit_breaker=self._breaker,
            retry=o.retry if o.retry is not None else RetryPolicy(deadline=spec.deadline),
            retry_budget=budget,
            http=o.http if o.http is not None else spec_http(spec),
            classifier=type(self)._classifier,
            redis=self._link,
            registry=o.registry,
            metrics=o.metrics,
            stale_if_error=o.stale_if_error,
            clock=clock,
        )
        self._options = dataclasses.replace(o, **self._built(o))

    def _before_pipeline(self, options: ClientOptions) -> None:
        """Built before the pipeline (Spotify's token pipeline, whose gauges it overrides)."""

    def _built(self, options: ClientOptions) -> dict[str, Any]:
        """The components this client built or took, for :attr:`options`: a client made
        by :meth:`with_options` shares them (rate and capacity are in the limiter now)."""
        budget = self._pipeline.budget
        return {
            "cache_manager": self._cache,
            "rate_limiter": self._limiter,
            "circuit_breaker": self._breaker,
            "base_url": self._base_url,
            "redis": self._link,
            "http": self._pipeline.http,
            "retry": self._pipeline.retry,
            "retry_budget": budget if budget is not None else False,
            "rate": None,
            "capacity": None,
            "clock": self._clock,
        }

    def _credentials(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _with(self, changes: Mapping[str, Any]) -> Self:
        make: Any = type(self)  # a provider class: (credentials, *, options, **changes)
        return cast(Self, make(*self._credentials(), options=self._options, **changes))

    # -- the components, for the design's monitoring and troubleshooting ------------------

    @property
    def options(self) -> ClientOptions:
        """The options this client runs with, its components filled in (see
        ``with_options``)."""
        return self._options

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
        hits = stats["cache_hits"] + stats["negative_hits"]
        looked = hits + stats["cache_misses"]
        stats["cache_hit_ratio"] = hits / looked if looked else 0.0
        stats["base_url"] = self._base_url
        stats.update(design_stats(stats, self._breaker.openings))  # the design's names too
        return stats

    # -- a method call: key first, the request only on a miss ------------------------------

    def _prepare(self, op: Op[Any], args: tuple[Any, ...]) -> Prepared:
        """``op``'s request for ``args`` and its key, remembered by the raw arguments once
        they validated: a warm hit then costs a dict look here and one in the cache."""
        memo = (op, args)
        try:
            found = self._prepared.get(memo)
        except TypeError:  # unhashable arguments (an ``inc`` list): built every time
            return self._build(op, args)
        if found is None:
            found = self._build(op, args)
            if len(self._prepared) >= _MEMO_SIZE:
                self._prepared.clear()
            self._prepared[memo] = found
        return found

    def _build(self, op: Op[Any], args: tuple[Any, ...]) -> Prepared:
        return self._as_sent(op.build(self, *args))

    def _as_sent(self, request: ApiRequest) -> Prepared:
        """``request`` with this client's cache scope and headers, and its key."""
        scope = self._cache_scope if request.cache_kind is not None else ()
        if scope or self._headers:  # once per distinct input, never per call
            request = amended(
                request,
                cache_parts=(*scope, *request.cache_parts),
                headers=(*request.headers, *self._headers),
                secret_params=request.secret_params,
            )
        return Prepared(request, self._pipeline.key(request))

    def _warm(self, op: Op[T], args: tuple[Any, ...]) -> T | Any:
        """The in-memory answer to ``op(args)`` with nothing built past the memo, else
        :data:`MISS`: for methods whose miss takes another path than :meth:`_run`'s."""
        if not self._in_memory:
            return MISS
        request, key = self._prepare(op, args)
        if key is None:
            return MISS
        found = self._pipeline.warm(key, request.endpoint_template, _NEGATIVE)
        return found if found is MISS else self._answer(op, request, found)

    @staticmethod
    def _answer(op: Op[T], request: ApiRequest, value: Any) -> T:
        """What the caller gets for a cached value."""
        if value is _NEGATIVE:
            value = not_found_value(request)
        finish = op.finish
        return value if finish is None else finish(value)

    def _flow(
        self, op: Op[T], args: tuple[Any, ...], use_cache: bool, looked: Miss | None = None
    ) -> Flow[T]:
        """The method's call after a miss (``looked``: the lookup's :class:`Miss`, so the
        pipeline does not look again), or with ``use_cache=False``."""
        prepared = self._prepare(op, args)
        parse = None if op.parse is None else functools.partial(op.parse, args)
        value = yield from self._send(prepared, parse, use_cache, looked)
        return value if op.finish is None else op.finish(value)

    def _send(
        self,
        prepared: Prepared,
        parse: Callable[[Any], Any] | None,
        use_cache: bool,
        looked: Miss | None = None,
    ) -> Flow[Any]:
        """One pipeline call; "not found" becomes None or []."""
        return (yield from fetch(self._pipeline, prepared.request, parse, use_cache, looked))

    def _raw(self, request: ApiRequest, expect: Expect, use_cache: bool) -> Flow[Any]:
        """``send_raw``'s flow: ``request`` as this client sends it, "not found" raised."""
        sent = self._as_sent(request).request
        return (yield from self._pipeline.flow(sent, expect=expect, use_cache=use_cache))

    def _raw_hit(self, request: ApiRequest, use_cache: bool) -> Any:
        """``send_raw``'s fresh in-memory answer, with no flow (a cached "not found" is
        raised, as the flow would), else :data:`MISS`, uncounted: the flow looks and counts.
        The service's pass-through hits take this path, as the typed methods' hits do."""
        if not (use_cache and self._in_memory) or request.provider != self._pipeline.provider:
            return MISS  # (another provider's request: the flow refuses it)
        sent, key = self._as_sent(request)
        if key is None:
            return MISS
        found = self._pipeline.warm(key, sent.endpoint_template, _NEGATIVE)
        if found is _NEGATIVE:
            provider, endpoint = self._pipeline.provider, sent.endpoint_template
            raise NotFound("not found (cached)", provider=provider, endpoint=endpoint)
        return found

    # -- reading the cache directly ---------------------------------------------------------

    def _from_cache(
        self, sent: Prepared | ApiRequest, error: TunegateError | None = None
    ) -> Flow[tuple[bool, Any]]:
        """``(True, value)`` for a fresh cached answer to a request as sent, or for a stale
        one when ``error`` is one a stale entry may answer (an outage: the pipeline's rule)
        and stale-if-error is on; else ``(False, None)``. The pipeline reads and counts it."""
        request = sent if isinstance(sent, ApiRequest) else sent.request
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
            self._link.close()  # the backlog's worker sends through the link's sync client


class SyncClientMixin(ClientBase):
    """The blocking driver of a method, ``close()`` and ``with client:``."""

    def _run(self, op: Op[T], args: tuple[Any, ...], use_cache: bool) -> T:
        # The hit is written out here, not in helpers: on a warm in-memory hit each Python
        # frame costs about as much as the lookup itself (bench/bench_hit.py).
        looked = None
        if use_cache:
            try:
                request, key = self._prepared[op, args]
            except (KeyError, TypeError):  # not built yet, or unhashable arguments
                request, key = self._prepare(op, args)
            if key is not None:
                endpoint, pipeline = request.endpoint_template, self._pipeline
                found = pipeline.warm(key, endpoint, _NEGATIVE) if self._in_memory else MISS
                if found is MISS:  # counted, and the Miss keeps the stale entry for the flow
                    found = pipeline.look(key, endpoint, _NEGATIVE)
                if type(found) is not Miss:
                    if found is _NEGATIVE:
                        found = not_found_value(request)
                    return found if op.finish is None else op.finish(found)
                looked = found  # the flow will not look again
        return drive(self._flow(op, args, use_cache, looked))

    def send_raw(
        self, request: ApiRequest, *, expect: Expect = "json", use_cache: bool = True
    ) -> Any:
        """Send a request of your own through this client's whole path, and return the
        decoded answer (JSON as Python values, XML or text as ``str``) unparsed.

        This is the entry for what the typed methods do not cover (the service's
        pass-through): ``request`` goes out as this client's own requests do, with its
        cache scope put before ``request.cache_parts`` (leave the scope out), its own
        headers (MusicBrainz's User-Agent) and, on Spotify, its bearer token (a 401
        refreshes the token once); then cache, single-flight, limiter, breaker and retry
        as for any call (``use_cache=False`` skips the cache). Credentials that are query
        parameters (Last.fm's ``api_key``) are the caller's to add, named in
        ``secret_params``. The provider's "no such thing" is raised as
        :class:`~tunegate.exceptions.NotFound`; every other failure as from the typed
        methods."""
        found = self._raw_hit(request, use_cache)
        if found is not MISS:
            return found
        return drive(self._raw(request, expect, use_cache))

    def close(self) -> None:
        """Close this client's pooled connections (they reopen if the client is used again)."""
        self._close_sync()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClientMixin(ClientBase):
    """The asyncio driver of a method, ``await aclose()`` and ``async with client:``."""

    async def _run(self, op: Op[T], args: tuple[Any, ...], use_cache: bool) -> T:
        # SyncClientMixin._run with an awaited look outside memory (memory never blocks:
        # its look runs here, with no coroutine of its own).
        looked = None
        if use_cache:
            try:
                request, key = self._prepared[op, args]
            except (KeyError, TypeError):  # not built yet, or unhashable arguments
                request, key = self._prepare(op, args)
            if key is not None:
                endpoint, pipeline = request.endpoint_template, self._pipeline
                if self._in_memory:
                    found = pipeline.warm(key, endpoint, _NEGATIVE)
                    if found is MISS:  # counted, and the Miss keeps the stale entry
                        found = pipeline.look(key, endpoint, _NEGATIVE)
                else:
                    found = await pipeline.alook(key, endpoint, _NEGATIVE)
                if type(found) is not Miss:
                    if found is _NEGATIVE:
                        found = not_found_value(request)
                    return found if op.finish is None else op.finish(found)
                looked = found  # the flow will not look again
        return await adrive(self._flow(op, args, use_cache, looked))

    async def send_raw(
        self, request: ApiRequest, *, expect: Expect = "json", use_cache: bool = True
    ) -> Any:
        """:meth:`SyncClientMixin.send_raw`, awaited: a request of your own through this
        client's whole path, its decoded answer unparsed, "not found" raised."""
        found = self._raw_hit(request, use_cache)
        if found is not MISS:
            return found
        return await adrive(self._raw(request, expect, use_cache))

    async def aclose(self) -> None:
        """Close the running loop's connections; call it before the loop ends."""
        await self._close_async()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
