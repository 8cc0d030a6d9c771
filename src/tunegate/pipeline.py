"""The one request path every upstream call takes, for threads and for asyncio.

Read it top down: a client method (``clients/spotify.py``) validates its arguments, builds
an ``ApiRequest`` (``providers/``) and ``yield from``s :meth:`Pipeline.flow`, which holds
the whole path of one call::

    CacheStep     fresh entry -> the value (no span, one counter); else a miss that keeps
                  the stale entry for stale-if-error (``CacheManager.lookup_flow``)
    SingleFlight  (``_coalesce``) in this process, then across processes (a Redis lease):
                  one caller leads, the others wait for its outcome
    Attempts      (``_attempts``) per attempt: breaker permit -> rate-limit token -> HTTP
                  exchange (``_effects.Send`` -> ``_http.HttpPool``, the socket) -> classify
                  -> limiter feedback -> breaker record; the retry policy decides: sleep
                  and go again, or stop
    CacheStep     write the value (or "not found"); on a failure: the stale entry for an
                  error that may be served stale, else the typed error, raised here

The parts are objects this class builds and holds, each with its own constructor and
state: :class:`tunegate._attempts.Attempts`, :class:`tunegate._coalesce.SingleFlight` and
:class:`CacheStep`; one :class:`~tunegate.observability.Recorder` receives what they report.
Each is a *flow*: a generator that yields effects (``tunegate._effects``: send, sleep, wait
for a flight; the breaker's, limiter's and Redis cache's own flows bring theirs) and is sent
their results. Flows compose with ``yield from``, so one public call runs one driver loop:
:func:`tunegate._drive.drive` from a thread, ``adrive`` from a task. Every decision is
written once, in the flows; the drivers only run effects. Deadlines and backoffs read the
one clock the pipeline is given.

With the cache in single-flight's Redis, the lookup and the lease claim are one script, and
the cache write rides the lease's release (``_coalesce.LOOKUP_CLAIM``, ``FINISH_STORE``): a
miss makes two Redis round trips before the upstream answer (that one, the rate-limit
token), and the caller waits for no other. What the answer leaves to do (a shared breaker's
success record in CLOSED, the write with the publish and the release) is the backlog's
(``_drive.BACKLOG``: one worker thread, in order, bounded; the caller runs it itself when
the backlog is full). A lookup of a key this process still owes a write waits for that
write first, so a caller reads what this process answered before; :meth:`Pipeline.flush`
waits for all of it, and closing a pipeline flushes.

The key-first hit: :meth:`Pipeline.look` (``alook`` for asyncio) answers a cache key from
any backend with the fresh value, or a :class:`Miss` carrying the stale entry (and the
claim); the caller then builds the full request and passes the miss to
:meth:`Pipeline.flow` (or ``call``), so the cache is not read twice. On a memory cache the
clients ask :meth:`Pipeline.warm` first: the hit there is a lock-free dict lookup, two
counters and the frozen value as stored (``cache/memory.py``); only its miss goes on to
``look``.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from tunegate._attempts import NO_ANSWER, Attempts, Call, Failed, RequestLike
from tunegate._clock import Clock, SystemClock
from tunegate._coalesce import AFTER_DEADLINE, ERROR_TTL, HIT, SingleFlight
from tunegate._drive import BACKLOG, Flow, adrive, drive
from tunegate._flight import PUBLISHED
from tunegate._http import HttpConfig, HttpPool, shared_pool
from tunegate._policy.classify import Expect, ProviderHook
from tunegate._policy.deadline import deadline_of
from tunegate._policy.errors import meaning
from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import KeyScheme
from tunegate._policy.retry import RetryBudget, RetryPolicy
from tunegate._redact import redact
from tunegate._redis import RedisLike, RedisLink
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.cache.frozen import freeze
from tunegate.cache.redisbackend import RedisBackend
from tunegate.exceptions import ConfigurationError, NotFound, TunegateError
from tunegate.observability import (
    HAVE_PROMETHEUS,
    Metrics,
    Observer,
    Recorder,
    Source,
    Stats,
)
from tunegate.providers.spec import CASE_SENSITIVE_KINDS
from tunegate.ratelimit import RateLimiter
from tunegate.retry import budget_lock

if TYPE_CHECKING:
    from tunegate.observability import CollectorRegistry

__all__ = ["MISS", "CacheStep", "Miss", "Pipeline", "RequestLike"]

MISS: Any = object()
"""What :meth:`Pipeline.warm` returns when it has no fresh in-memory answer."""

_KEY_MEMO_SIZE: Final = 4096
_NEGATIVE: Any = object()  # what call() asks look() to return for a fresh "not found"


class Miss:
    """A cache lookup that found no fresh entry: the stale one (or None), and the flights'
    generation read before the lookup. Pass it to :meth:`Pipeline.flow` / ``call`` as
    ``looked=`` so the call does not look the cache up again."""

    __slots__ = ("claimed", "generation", "stale")

    def __init__(self, stale: CacheEntry | None, generation: int, claimed: Any = None) -> None:
        self.stale = stale
        self.generation = generation
        self.claimed = claimed  # the single-flight claim made with the lookup, if any

    def __repr__(self) -> str:
        return f"<Miss stale={self.stale is not None}>"


def _settled(key: str) -> Flow[None]:
    """Wait for the cache write this process still owes ``key`` (the backlog's), if any:
    a lookup then sees it. Bounded by what a leader may need after its answer."""
    return BACKLOG.settled(key, AFTER_DEADLINE)


class CacheStep:
    """The one place the request path reads and writes the cache: lookups, writes
    (positive and "not found"), stale-if-error, all counted by the one recorder."""

    def __init__(
        self,
        provider: str,
        cache: CacheManager | None,
        recorder: Recorder,
        stale_if_error: bool,
        fold: bool = False,
    ) -> None:
        self.provider = provider
        self.cache = cache
        self.fold = fold  # the cache shares single-flight's Redis: writes ride its FINISH
        self.stale_if_error = stale_if_error
        self._rec = recorder

    def store(self, call: Call, value: Any) -> Flow[Any]:
        """Write ``value`` and return its frozen copy (what every caller gets). A leader
        holding a lease in the cache's own Redis leaves the write to the lease's FINISH
        script (one round trip for both)."""
        cache = self.cache
        if call.key is not None and cache is not None:
            try:
                if self.fold and call.lease is not None:
                    stored, packed, ttl_ms = cache.packed(call.key, value, ttl=call.ttl)
                    call.write = (packed, ttl_ms, functools.partial(cache.packed_failed, call.key))
                else:
                    stored = yield from cache.store_flow(call.key, value, ttl=call.ttl)
            except TypeError:  # parse gave something that is not JSON-like: serve, not cache
                self._rec.not_cacheable(call.request.endpoint_template)
                return value
            self._rec.count("cache_stores")
            return stored
        try:
            return freeze(value)  # coalesced callers share it: nobody may mutate it
        except TypeError:
            return value

    def store_not_found(self, call: Call) -> Flow[None]:
        cache, key = self.cache, call.key
        if key is not None and cache is not None:
            if self.fold and call.lease is not None:
                _, packed, ttl_ms = cache.packed(key, None, negative=True)
                call.write = (packed, ttl_ms, functools.partial(cache.packed_failed, key))
            else:
                yield from cache.store_flow(key, None, negative=True)
            self._rec.count("cache_stores")

    def recheck(self, call: Call) -> Flow[Any]:
        """A fresh answer another process's leader left (value, or a "not found"
        :class:`Failed`), else :data:`NO_ANSWER`."""
        if self.cache is None or call.key is None:
            return NO_ANSWER
        entry = yield from self.cache.lookup_flow(call.key)
        if entry is None or entry.stale:
            return NO_ANSWER
        if entry.negative:
            return Failed(_cached_not_found(self.provider, call.request), "not_found", 0)
        return entry.value

    def stale_answer(self, call: Call, failed: Failed) -> Any:
        """The stale entry's value for an outage-like failure (stale-if-error), else
        :data:`NO_ANSWER`. A stale "not found" raises :class:`NotFound`."""
        stale = call.stale
        if stale is None or not self.stale_if_error or not meaning(failed.error).may_serve_stale:
            return NO_ANSWER
        assert self.cache is not None
        assert call.key is not None
        self.cache.record_stale_served(call.key)
        call.cache_state = "stale_served"
        self._rec.stale_served(call.request.endpoint_template, failed.reason, failed.error)
        if stale.negative:
            raise _cached_not_found(self.provider, call.request)
        return stale.value

    def cached(
        self, key: str, endpoint: str, error: BaseException | None, not_found: Any
    ) -> Flow[Any]:
        """A fresh entry's value (``not_found`` for a negative one), or the stale value when
        ``error`` is outage-like and stale-if-error is on; else a :class:`Miss`."""
        cache = self.cache
        if cache is None:
            return Miss(None, 0)
        if BACKLOG.pending(key) is not None:
            yield from _settled(key)
        entry: CacheEntry | None = yield from cache.lookup_flow(key)
        if entry is not None and not entry.stale:
            self._rec.hit(endpoint, entry.negative)
            return not_found if entry.negative else entry.value
        self._rec.count("cache_misses")
        if (
            entry is not None
            and error is not None
            and self.stale_if_error
            and not entry.negative
            and meaning(error).may_serve_stale
        ):
            cache.record_stale_served(key)
            self._rec.stale_served(endpoint, "cached_read", error)
            return entry.value
        return Miss(entry, 0)


def _cached_not_found(provider: str, request: RequestLike) -> NotFound:
    return NotFound("not found (cached)", provider=provider, endpoint=request.endpoint_template)


class Pipeline:
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
        clock / rand: injected for tests (``tunegate.testing.FakeClock``); every deadline
            and backoff of the path reads this one clock.

    After the answer (``_drive.BACKLOG``, the process's one ``tunegate-after-answer``
    thread): a shared breaker's success record in CLOSED, and single-flight's publish
    with the Redis cache write and the lease release. In this process a lookup or a lead
    of a key (this pipeline's, ``CacheManager.lookup``/``get``, ``@cache.cached``) runs
    what is still owed on that key first; another process sees it once the backlog ran
    it. :meth:`close`/:meth:`aclose` flush it first and may block up to 10 s (a stalled
    Redis). The backlog is flushed at exit and by a ``multiprocessing`` child's exit
    finalizers; code that ends a process with ``os._exit`` (Celery/billiard workers ...)
    must call :meth:`flush` first.
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
        redis: RedisLike | None = None,
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
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._keys = (
            cache.key_scheme
            if cache is not None
            else KeyScheme("tunegate", case_sensitive_kinds=CASE_SENSITIVE_KINDS)
        )
        self._key_memo: dict[tuple[str, tuple[str, ...]], str] = {}

        link = redis if isinstance(redis, RedisLink) or redis is None else RedisLink(redis)
        if link is None and cache is not None:
            link = getattr(cache.backend, "link", None)
        self.redis_link: RedisLink | None = link

        self._stats = Stats()
        self._metrics = Metrics.for_registry(registry) if metrics and HAVE_PROMETHEUS else None
        if self._metrics is not None:
            self._registry = self._metrics.registry  # held here: Metrics holds it weakly
            source = Source(provider, self._stats, circuit_breaker, rate_limiter)
            self._metrics.live.track(self, source)
        self._rec = Recorder(provider, self._stats, self._metrics)

        total = self.http.config.total_timeout
        self._attempts = Attempts(
            provider,
            self.base_url,
            http=self.http,
            retry=self.retry,
            clock=self.clock,
            rand=rand if rand is not None else random.random,
            recorder=self._rec,
            breaker=circuit_breaker,
            limiter=rate_limiter,
            budget=retry_budget,
            classifier=classifier,
        )
        self._flight = SingleFlight(
            provider,
            clock=self.clock,
            recorder=self._rec,
            link=link,
            lease_ms=int(max(lease_ttl, total + 1.0) * 1000),
            publish_ms=int(publish_ttl * 1000),
            error_ms=int(min(publish_ttl, ERROR_TTL) * 1000),
            # Without a deadline, the longest a leader's attempts may take: the bound for waiting.
            attempts_bound=self.retry.max_attempts * (total + self.retry.cap),
            follow_slack=AFTER_DEADLINE,
        )
        self._flights = self._flight.flights  # its generation is read before each lookup
        # The cache in the same Redis as single-flight: a lookup claims the lease in the
        # same round trip (a miss then needs no round trip of its own for the claim).
        backend = None if cache is None else cache.backend
        self._fold = isinstance(backend, RedisBackend) and link is backend.link
        # A backend in this process (memory, SQLite) is looked up before any flow starts;
        # Redis by the flow itself, in the call's one driver loop.
        self._quick = cache is not None and not isinstance(backend, RedisBackend)
        self._cache = CacheStep(provider, cache, self._rec, stale_if_error, self._fold)

    # -- public API ------------------------------------------------------------------------

    def call(
        self,
        request: RequestLike,
        *,
        parse: Callable[[Any], Any] | None = None,
        expect: Expect = "json",
        use_cache: bool = True,
        ttl: float | None = None,
        looked: Miss | None = None,
    ) -> Any:
        """Make ``request`` (from a thread) and return its value.

        The value is ``parse(payload)`` (``payload`` the decoded body: JSON as Python
        objects, XML or text as ``str``, ``bytes`` as is) or the payload itself; when cached
        it comes back frozen (read-only dicts and lists), fresh or from the cache alike.
        ``parse`` may raise :class:`NotFound` (cached as a negative entry) or
        :class:`MalformedResponse`; other exceptions from it become ``MalformedResponse``.
        ``use_cache=False`` asks the provider itself: no cache lookup, no sharing of another
        caller's in-flight or just-published answer; the fresh answer is still written to
        the cache. ``ttl`` overrides the cache's TTL for this kind. ``looked``: the
        :class:`Miss` :meth:`look` returned for this request's key (no second lookup).

        Raises: :class:`NotFound` (also for a cached negative entry),
        :class:`CircuitBreakerOpenError`, :class:`RateLimitTimeout`, :class:`RateLimited`,
        :class:`AuthenticationError`, :class:`ProviderUnavailable`,
        :class:`MalformedResponse`, :class:`ProviderError` — unless a stale entry can be
        served instead (``stale_if_error``).
        """
        # A cache in this process answers before any flow starts (a Redis cache is looked
        # up by the flow itself, with single-flight's claim in the same script).
        if looked is None and use_cache and self._quick:
            key = self._key_of(request)
            if key is not None:
                found = self.look(key, request.endpoint_template, _NEGATIVE)
                if type(found) is not Miss:
                    if found is _NEGATIVE:
                        raise _cached_not_found(self.provider, request)
                    return found
                looked = found
        flow = self.flow(
            request, parse=parse, expect=expect, use_cache=use_cache, ttl=ttl, looked=looked
        )
        return drive(flow)

    async def acall(
        self,
        request: RequestLike,
        *,
        parse: Callable[[Any], Any] | None = None,
        expect: Expect = "json",
        use_cache: bool = True,
        ttl: float | None = None,
        looked: Miss | None = None,
    ) -> Any:
        """:meth:`call` for asyncio tasks."""
        # A cache in this process answers before any flow starts (a Redis cache is looked
        # up by the flow itself, with single-flight's claim in the same script).
        if looked is None and use_cache and self._quick:
            key = self._key_of(request)
            if key is not None:
                found = await self.alook(key, request.endpoint_template, _NEGATIVE)
                if type(found) is not Miss:
                    if found is _NEGATIVE:
                        raise _cached_not_found(self.provider, request)
                    return found
                looked = found
        flow = self.flow(
            request, parse=parse, expect=expect, use_cache=use_cache, ttl=ttl, looked=looked
        )
        return await adrive(flow)

    def flow(
        self,
        request: RequestLike,
        *,
        parse: Callable[[Any], Any] | None = None,
        expect: Expect = "json",
        use_cache: bool = True,
        ttl: float | None = None,
        looked: Miss | None = None,
    ) -> Flow[Any]:
        """:meth:`call` as a flow, for callers that are flows themselves (the clients):
        ``value = yield from pipeline.flow(request, parse=...)`` runs in the caller's driver
        loop. Its failures are raised here, where they are decided, with a fresh traceback
        (the low-level cause stays as ``__cause__``)."""
        key = self._key_of(request)
        endpoint = request.endpoint_template
        cache_step = self._cache
        stale: CacheEntry | None = None
        state = "bypass"
        claimed = None
        if looked is not None:
            generation, stale, claimed = looked.generation, looked.stale, looked.claimed
            state = "miss"
        else:
            generation = self._flights.generation
            if use_cache and key is not None and cache_step.cache is not None:
                entry, claimed = yield from self._lookup(cache_step.cache, key)
                if entry is not None and not entry.stale:
                    return self._hit(request, entry)
                stale, state = entry, "miss"
                self._rec.count("cache_misses")

        span = self._rec.span(endpoint)
        now = self.clock.monotonic()
        budget, patient = deadline_of(self.retry.deadline)  # a `with deadline():` wins
        deadline = None if budget is None else now + budget
        call = Call(request, key, parse, expect, ttl, span, generation, now, deadline, state, stale)
        call.claimed = claimed
        call.patient = patient
        error: BaseException | None = None
        try:
            lead = functools.partial(self._lead, call)
            if key is None or not use_cache:
                if key is not None and BACKLOG.pending(key) is not None:
                    # An earlier answer's write of key still queued would land after
                    # (over) this call's own write: it goes first.
                    yield from _settled(key)
                outcome = yield from lead()
            else:
                recheck = functools.partial(cache_step.recheck, call)
                outcome = yield from self._flight.run(call, key, lead, recheck)
            if not isinstance(outcome, Failed):
                self._rec.answered()
                return outcome
            failure = outcome.error
            if isinstance(failure, NotFound):
                self._rec.answered()
            else:
                value = cache_step.stale_answer(call, outcome)
                if value is not NO_ANSWER:
                    return value
                self._rec.gave_up(endpoint, outcome.attempts, outcome.reason, failure)
            error = _scrubbed(call, failure)
            raise error.with_traceback(None)  # decided here: the attempts' frames are history
        except BaseException as exc:
            error = exc
            raise
        finally:
            if span is not None:
                span.finish(call.cache_state, error)

    # -- key-first ---------------------------------------------------------------------------

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

    def look(self, key: str, endpoint: str = "", not_found: Any = None) -> Any:
        """The fresh answer under ``key``, from any backend (``not_found`` for a fresh "not
        found" entry), counted as a hit; else a :class:`Miss` (counted as a miss) to pass
        to :meth:`call`/:meth:`flow` as ``looked=``. ``endpoint`` names the endpoint in the
        DEBUG record of a hit."""
        generation = self._flights.generation
        cache = self.cache
        entry, claimed = None, None
        if cache is None:
            pass
        elif self._fold:  # one round trip: the lookup and the single-flight claim
            entry, claimed = drive(self._lookup(cache, key))
        else:
            entry = cache.lookup(key)
        if entry is not None and not entry.stale:
            self._rec.hit(endpoint, entry.negative)
            return not_found if entry.negative else entry.value
        self._rec.count("cache_misses")
        return Miss(entry, generation, claimed)

    async def alook(self, key: str, endpoint: str = "", not_found: Any = None) -> Any:
        """:meth:`look` for asyncio tasks."""
        generation = self._flights.generation
        cache = self.cache
        entry, claimed = None, None
        if cache is None:
            pass
        elif self._fold:  # one round trip: the lookup and the single-flight claim
            entry, claimed = await adrive(self._lookup(cache, key))
        else:
            entry = await cache.alookup(key)
        if entry is not None and not entry.stale:
            self._rec.hit(endpoint, entry.negative)
            return not_found if entry.negative else entry.value
        self._rec.count("cache_misses")
        return Miss(entry, generation, claimed)

    def warm(self, key: str, endpoint: str, not_found: Any) -> Any:
        """The fresh in-memory answer under ``key`` (``not_found`` for a negative entry),
        counted as a hit; else :data:`MISS`, uncounted: the caller's :meth:`look` (or its
        own batch path) follows and counts it. The clients' first step on a memory cache:
        no flight generation read, no :class:`Miss` built, a frame fewer than ``look``."""
        cache = self.cache
        entry = None if cache is None else cache.fresh(key)
        if entry is None:
            return MISS
        self._rec.hit(endpoint, entry.negative)
        return not_found if entry.negative else entry.value

    def cached(
        self, request: RequestLike, error: BaseException | None = None, not_found: Any = None
    ) -> Flow[Any]:
        """A flow: the cached answer to ``request`` without calling the provider. The fresh
        value (``not_found`` for a fresh "not found"), or, when ``error`` (why the call
        cannot be made) is outage-like, the stale value; else a :class:`Miss`. Counted in
        this pipeline's stats like every other lookup."""
        key = self._key_of(request)
        if key is None:
            return Miss(None, 0)
        return (yield from self._cache.cached(key, request.endpoint_template, error, not_found))

    def store(self, request: RequestLike, value: Any, *, not_found: bool = False) -> Flow[Any]:
        """A flow: cache ``value`` as the answer to ``request`` (a "not found" entry when
        ``not_found``) and return its frozen copy. For answers a client got in a batch."""
        key = self._key_of(request)
        call = Call(request, key, None, "json", None, None, 0, 0.0, None)
        if not_found:
            yield from self._cache.store_not_found(call)
            return None
        return (yield from self._cache.store(call, value))

    # -- figures and lifetime ------------------------------------------------------------------

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer`` with every later :class:`~tunegate.observability.Event` of this
        pipeline (hits, attempts, retries, give-ups, stale answers), beside its stats, logs,
        metrics and spans; returns the function that unsubscribes it. An observer runs in
        the caller's thread or task and should be quick; its exceptions are logged, never
        raised into the call."""
        return self._rec.subscribe(observer)

    @property
    def recorder(self) -> Recorder:
        """This pipeline's one observer, for a component that runs calls beside it (the
        Spotify token's single-flight) and should count into the same stats and metrics."""
        return self._rec

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

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until the work calls left for after their answers is done (breaker success
        records, cache writes with single-flight's publish): True, or False after
        ``timeout`` seconds. The backlog is the process's: this waits for every
        pipeline's."""
        return BACKLOG.flush(timeout)

    async def aflush(self, bound: float | None = 10.0) -> bool:
        """:meth:`flush` for asyncio: the loop goes on while it waits."""
        return await BACKLOG.aflush(bound)

    def close(self) -> None:
        """Flush (:meth:`flush`: blocks until the work calls left for after their answers
        is done, at most 10 s), then close the sync connections (they reopen if the
        pipeline is used again)."""
        BACKLOG.flush()
        self.http.close()

    async def aclose(self) -> None:
        """Flush (:meth:`aflush`), then close the running loop's connections, HTTP and the
        Redis client single-flight used; call it before the loop ends (they reopen if the
        pipeline is used again)."""
        await BACKLOG.aflush()
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

    # -- helpers -------------------------------------------------------------------------------

    def _key_of(self, request: RequestLike) -> str | None:
        if request.provider != self.provider:
            raise ConfigurationError(
                f"a {request.provider} request sent through the {self.provider} pipeline"
            )
        return self.key(request)

    def _hit(self, request: RequestLike, entry: CacheEntry) -> Any:
        self._rec.hit(request.endpoint_template, entry.negative)
        if entry.negative:
            raise _cached_not_found(self.provider, request)
        return entry.value

    def _lookup(self, cache: CacheManager, key: str) -> Flow[tuple[CacheEntry | None, Any]]:
        """The entry under ``key`` and, when the cache shares single-flight's Redis, the
        lease claim made in the same script (None when there is none)."""
        if self._fold:
            if BACKLOG.pending(key) is not None:  # this process's answer, not written yet
                yield from _settled(key)
            entry = yield from cache.hit_flow(key)  # a key read fresh lately: a plain GET
            if entry is not None:
                return entry, None
            now = cache.now()
            claim = self._flight.claim(key, now)
            reply = None if claim is None else (yield claim)
            if reply is not None:
                state = int(reply[0])
                raw = reply[2] if state == PUBLISHED and len(reply) > 2 else reply[1]
                entry = cache.judge(key, raw or None, now)
                return entry, None if state == HIT else reply
        entry = yield from cache.lookup_flow(key)
        return entry, None

    def _lead(self, call: Call) -> Flow[Any]:
        """What the leader of a call does: the attempts, then the cache write."""
        outcome = yield from self._attempts.run(call)
        if not isinstance(outcome, Failed):
            return (yield from self._cache.store(call, outcome))
        if outcome.reason == "not_found":
            yield from self._cache.store_not_found(call)
        return outcome


def _scrubbed(call: Call, error: TunegateError) -> TunegateError:
    """Defence in depth: a message a provider hook built from a body could echo a key."""
    secrets_ = () if call.http is None else call.http.secrets
    text = " ".join(str(a) for a in error.args)
    safe = redact(text, secrets_)
    if safe != text:
        error.args = (safe,)
    return error
