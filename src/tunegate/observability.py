"""Logs, stats, Prometheus metrics and OpenTelemetry spans for the request pipeline.

The request path reports to one :class:`Recorder` per pipeline (a hit, an attempt, a retry,
a give-up, a stale answer), which counts in :class:`Stats`, logs, and records metrics and
span events; the path itself calls none of them. ``prometheus_client`` is imported here
only. Counters are lock-free (:class:`Tally`), so a cache hit takes no lock for them.

Logs go through stdlib ``logging`` (logger ``tunegate.pipeline``) with the structured
fields as record attributes (``provider``, ``endpoint``, ``status``, ``attempt``,
``latency_ms``, ``cache``, ``outcome``, ``correlation_id``); :class:`JsonFormatter` prints
them as one JSON object a line, and structlog's ``ProcessorFormatter`` reads them as they
are. The library never configures logging: the application (or ``tunegate``'s CLI) does.

Every upstream attempt logs at INFO (a failed one at WARNING). A cache hit logs at DEBUG
only, and builds no record at all unless DEBUG is enabled for the logger.

Metrics live on a registry the caller passes (default: prometheus-client's global one),
created once per registry; they need ``prometheus-client`` (the ``metrics`` extra), and
without it a pipeline records none (stats and logs are the same). Labels are bounded:
provider names, templated endpoints, and fixed outcome words; never user data or a URL.
Cache counters and the gauges (breaker state, hit ratio, tokens) are read from the live
pipelines when the registry is scraped; a scrape never makes a Redis round trip.

OpenTelemetry: a span per pipeline call that misses the cache, when ``opentelemetry-api``
is importable and a tracer provider is set; nothing otherwise (a fresh hit makes no span).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import itertools
import json
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

try:  # the `metrics` extra; without it pipelines keep stats and logs but record no metrics
    from prometheus_client import REGISTRY as REGISTRY  # the default one, for the service
    from prometheus_client import CollectorRegistry as CollectorRegistry  # for type hints
    from prometheus_client import Counter, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_PROMETHEUS = False
else:
    HAVE_PROMETHEUS = True

if TYPE_CHECKING:
    from tunegate.breaker import CircuitBreaker
    from tunegate.ratelimit import RateLimiter, TokenBucket

__all__ = [
    "CACHE_RESULTS",
    "Event",
    "JsonFormatter",
    "Metrics",
    "Observer",
    "Recorder",
    "Source",
    "Sources",
    "Stats",
    "Tally",
    "correlation_id",
    "current_correlation_id",
    "exposition",
    "http_server_metrics",
    "library_logger",
    "logger",
    "new_registry",
    "record_source",
    "track_sources",
]

logger = logging.getLogger("tunegate.pipeline")  # given the filter below

# -- the service's Prometheus pieces (prometheus_client is imported in this module only) ---

#: Latency buckets of the service's HTTP answers, seconds.
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


def new_registry() -> CollectorRegistry | None:
    """A fresh registry, or None without the ``metrics`` extra."""
    return CollectorRegistry() if HAVE_PROMETHEUS else None


def http_server_metrics(registry: CollectorRegistry | None) -> tuple[Any, Any] | None:
    """The service's ``http_requests`` counter and ``http_request_duration_seconds``
    histogram in ``registry`` (None: the default one); None without the extra."""
    if not HAVE_PROMETHEUS:
        return None
    target = registry if registry is not None else REGISTRY
    requests = Counter(
        "http_requests",
        "HTTP requests answered by the service.",
        ("route", "method", "status"),
        registry=target,
    )
    latency = Histogram(
        "http_request_duration_seconds",
        "Time to answer an HTTP request, by route.",
        ("route",),
        registry=target,
        buckets=HTTP_BUCKETS,
    )
    return requests, latency


def exposition(registry: CollectorRegistry | None) -> tuple[bytes, str]:
    """``registry`` (None: the default one) in Prometheus' text format, and its media type."""
    if not HAVE_PROMETHEUS:
        return b"", "text/plain; version=0.0.4; charset=utf-8"
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry if registry is not None else REGISTRY), CONTENT_TYPE_LATEST


# -- correlation id ---------------------------------------------------------------------

_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tunegate_correlation_id", default=None
)


@contextlib.contextmanager
def correlation_id(value: str | None = None) -> Iterator[str]:
    """Tag every log line and span inside the block with ``value`` (a fresh random id when
    None). Works across threads' own contexts and asyncio tasks (a ``ContextVar``)."""
    cid = value if value else os.urandom(8).hex()  # 16 hex digits, as uuid4's were
    token = _correlation.set(cid)
    try:
        yield cid
    finally:
        _correlation.reset(token)


def current_correlation_id() -> str | None:
    return _correlation.get()


# -- where answers came from ------------------------------------------------------------


class Sources:
    """Where each answer inside a :func:`track_sources` block came from, per provider:
    ``"cache"`` (a fresh or negative cache entry), ``"api"`` (this call or an identical
    one it shared asked the provider), ``"stale"`` (a stale entry served for a failure).
    ``last`` is the latest; ``by_provider`` keeps the latest per provider."""

    __slots__ = ("by_provider", "last")

    def __init__(self) -> None:
        self.by_provider: dict[str, str] = {}
        self.last: str | None = None

    def record(self, provider: str, source: str) -> None:
        self.by_provider[provider] = source
        self.last = source


# A mutable holder in a ContextVar: tasks spawned inside the block copy the context but
# share the holder, so their answers are seen by the block's owner.
_sources: contextvars.ContextVar[Sources | None] = contextvars.ContextVar(
    "tunegate_sources", default=None
)


@contextlib.contextmanager
def track_sources() -> Iterator[Sources]:
    """Record where every pipeline answer in the block (this thread or task, and tasks it
    starts) came from::

        with track_sources() as sources:
            client.search_track("Daft Punk", "One More Time")
        sources.by_provider  # {"spotify": "cache"}
    """
    holder = Sources()
    token = _sources.set(holder)
    try:
        yield holder
    finally:
        _sources.reset(token)


def record_source(provider: str, source: str) -> None:
    """Called by the pipeline for every answer; one ContextVar read when nobody tracks."""
    holder = _sources.get()
    if holder is not None:
        holder.record(provider, source)


# -- logs -------------------------------------------------------------------------------


class CorrelationFilter(logging.Filter):
    """Puts the caller's correlation id on every record of a library logger that does not
    carry one yet (the pipeline's own records set it themselves)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = _correlation.get()
        return True


_CORRELATION_FILTER = CorrelationFilter()

#: The library's loggers. A filter applies only to records of the logger it is on (not to
#: its children's), so each one gets it; a module with a new logger name should take its
#: logger from :func:`library_logger`.
LIBRARY_LOGGERS = (
    "tunegate",
    "tunegate.breaker",
    "tunegate.cache",
    "tunegate.clients",
    "tunegate.enrich",
    "tunegate.pipeline",
    "tunegate.ratelimit",
    "tunegate.redis",
    "tunegate.retry",
)


def library_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` whose records carry the correlation id."""
    log = logging.getLogger(name)
    if _CORRELATION_FILTER not in log.filters:
        log.addFilter(_CORRELATION_FILTER)
    return log


for _name in LIBRARY_LOGGERS:
    library_logger(_name)


#: The structured fields the pipeline puts on its records.
FIELDS = (
    "provider",
    "endpoint",
    "status",
    "attempt",
    "latency_ms",
    "cache",
    "outcome",
    "correlation_id",
)


_ANSWERED = frozenset({"success", "not_found"})  # attempt outcomes logged at INFO


def log_attempt(
    *,
    provider: str,
    endpoint: str,
    status: int | None,
    attempt: int,
    latency_ms: float,
    cache: str,
    outcome: str,
) -> None:
    """One upstream attempt: INFO when it succeeded or found nothing, WARNING otherwise."""
    level = logging.INFO if outcome in _ANSWERED else logging.WARNING
    if not logger.isEnabledFor(level):
        return
    fields = {
        "provider": provider,
        "endpoint": endpoint,
        "status": status,
        "attempt": attempt,
        "latency_ms": round(latency_ms, 3),
        "cache": cache,
        "outcome": outcome,
        "correlation_id": _correlation.get(),
    }
    logger.log(
        level,
        "%s %s -> %s (%s) attempt %d in %.1f ms",
        provider,
        endpoint,
        status,
        outcome,
        attempt,
        latency_ms,
        extra=fields,
    )


def log_event(level: int, message: str, provider: str, endpoint: str, **fields: Any) -> None:
    """Any other pipeline event (cache hit, coalesced wait, stale served, retry, give-up).
    ``message`` is a fixed string: fields go into the record, never into the text."""
    if not logger.isEnabledFor(level):
        return
    extra = {"provider": provider, "endpoint": endpoint, "correlation_id": _correlation.get()}
    extra.update(fields)
    logger.log(level, "%s %s: %s", provider, endpoint, message, extra=extra)


class JsonFormatter(logging.Formatter):
    """One JSON object a line with the pipeline's fields. For applications to install;
    the library installs nothing."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        for name in ("reason", "delay", "retry_after", "error"):
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


# -- stats ------------------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    # Nearest rank: an observed value, no interpolation between two calls.
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class Tally:
    """A counter threads bump without a lock: ``next()`` on an ``itertools.count`` is one
    C call, atomic under the GIL, so a hit pays no lock for its counters. Reading costs one
    step of the count, so reads are counted too (under a lock: reads are rare)."""

    __slots__ = ("_count", "_reads", "bump")
    _read_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._count = itertools.count()
        self._reads = 0
        self.bump = functools.partial(next, self._count)  # the hot path: one C call

    def read(self) -> int:
        with self._read_lock:
            value = next(self._count) - self._reads
            self._reads += 1
        return value


class Stats:
    """Counters of one pipeline, safe across threads without a lock (:class:`Tally`), and
    the latencies of the last ``window`` upstream attempts for percentiles.

    They are the one count of each event: ``cache_operations_total`` and the
    ``cache_hit_ratio`` gauge are derived from them when the registry is scraped, so a cache
    hit costs one C call here and nothing in prometheus-client."""

    COUNTERS = (
        "cache_hits",
        "cache_misses",
        "negative_hits",
        "stale_served",
        "api_calls",
        "api_errors",
        "retries",
        "coalesced",
        "breaker_rejections",
        "cache_stores",
    )

    def __init__(self, window: int = 1024) -> None:
        self._lock = threading.Lock()
        self.tallies = {name: Tally() for name in self.COUNTERS}
        self._latencies: deque[float] = deque(maxlen=window)

    def add(self, name: str) -> None:
        self.tallies[name].bump()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._latencies.append(seconds)

    def counts(self) -> dict[str, int]:
        """The counters alone (a copy)."""
        return {name: tally.read() for name, tally in self.tallies.items()}

    def snapshot(self) -> dict[str, Any]:
        counts = self.counts()
        with self._lock:
            latencies = sorted(self._latencies)
        counts_any: dict[str, Any] = dict(counts)
        counts_any["cache_hit_ratio"] = _hit_ratio(counts)
        counts_any["latency_ms"] = {
            "p50": _percentile(latencies, 0.50) * 1000.0,
            "p95": _percentile(latencies, 0.95) * 1000.0,
            "p99": _percentile(latencies, 0.99) * 1000.0,
            "count": len(latencies),
        }
        return counts_any


def _hit_ratio(counts: dict[str, int]) -> float:
    hits = counts["cache_hits"] + counts["negative_hits"]
    looked = hits + counts["cache_misses"]
    return hits / looked if looked else 0.0


# -- Prometheus ---------------------------------------------------------------------------

# Seconds; upstream calls run from a few ms (a mirror on the LAN) to the 15 s total timeout.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_STATE_CODES = {"closed": 0, "open": 1, "half_open": 2}
_SEVERITY = {0: 0, 2: 1, 1: 2}  # closed < half-open < open: a provider shows its worst breaker

#: ``result`` label of ``cache_operations_total`` -> the :class:`Stats` counter behind it.
CACHE_RESULTS = {
    "hit": "cache_hits",
    "negative_hit": "negative_hits",
    "miss": "cache_misses",
    "stale_served": "stale_served",
    "coalesced": "coalesced",
    "store": "cache_stores",
}


@dataclass(frozen=True, eq=False)
class Source:
    """What one pipeline shows on a registry: its counters and the breaker and limiter it
    uses. Held by the collector while the pipeline lives."""

    provider: str
    stats: Stats
    breaker: CircuitBreaker | None
    limiter: RateLimiter | None


class _Readings:
    """Values that cost a Redis round trip (a shared breaker's state, a shared bucket's
    tokens), read on a helper thread: a scrape gets the last reading at once and never waits
    for Redis; a reading older than ``max_age`` seconds is refreshed after the scrape that
    saw it. The first reading is taken when the component is first shown (``prime``), and
    a scrape that comes before it waits for it at most ``first_wait`` seconds, so the first
    scrape already has the gauges. Written by hand: a one-shot daemon thread is all it
    takes, and an executor would outlive forks and interpreter shutdown less gracefully."""

    def __init__(self, max_age: float = 5.0, first_wait: float = 0.5) -> None:
        self.max_age = max_age
        self.first_wait = first_wait
        self._lock = threading.Condition(threading.Lock())
        self._values: weakref.WeakKeyDictionary[object, tuple[_Reading | None, float]] = (
            weakref.WeakKeyDictionary()
        )
        self._queue: dict[int, tuple[object, Callable[[], _Reading | None]]] = {}
        self._worker: threading.Thread | None = None

    def prime(self, owner: object, read: Callable[[], _Reading | None]) -> None:
        """Take the first reading for ``owner`` now, in the background."""
        with self._lock:
            if self._values.get(owner) is None:
                self._enqueue(owner, read)

    def get(self, owner: object, read: Callable[[], _Reading | None]) -> _Reading | None:
        """The last reading for ``owner`` (None before the first), refreshing it when old."""
        now = time.monotonic()
        with self._lock:
            got = self._values.get(owner)
            if got is None or now - got[1] >= self.max_age:
                self._enqueue(owner, read)
            if got is None:  # the first scrape: wait a little for the first reading
                self._lock.wait_for(lambda: self._values.get(owner) is not None, self.first_wait)
                got = self._values.get(owner)
        return None if got is None else got[0]

    def _enqueue(self, owner: object, read: Callable[[], _Reading | None]) -> None:
        self._queue[id(owner)] = (owner, read)
        # A thread inherited through fork() is not alive in the child.
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="tunegate-metrics", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                _, (owner, read) = self._queue.popitem()
            value: _Reading | None
            try:
                value = read()
            except Exception as exc:  # best effort: the next scrape asks again
                logger.debug("metrics reading failed (%s)", type(exc).__name__)
                value = None
            with self._lock:
                self._values[owner] = (value, time.monotonic())
                self._lock.notify_all()


def _state_code(breaker: CircuitBreaker) -> float:
    return float(BREAKER_STATE_CODES.get(str(breaker.state), 0))


class _BucketFigures(NamedTuple):
    """One bucket's gauges, from one read of :meth:`RateLimiter.stats_for` (the consumption
    figures are :mod:`tunegate._consumption`'s)."""

    tokens: float
    fill_ratio: float
    consumption_rate: float | None
    seconds_to_exhaustion: float | None


_Reading = float | _BucketFigures


def _bucket_figures(limiter: RateLimiter, provider: str) -> _BucketFigures:
    stats = limiter.stats_for(provider)
    return _BucketFigures(
        float(stats["available_tokens"]),
        stats["fill_ratio"],
        stats["consumption_rate"],
        stats["seconds_to_exhaustion"],
    )


class _Live:
    """A collector reading every live pipeline of a registry at scrape time.

    ``cache_operations_total`` is derived from the pipelines' :class:`Stats` (summed per
    provider, plus what pipelines that are gone had counted, so the counter never goes
    down). Gauges, per provider over all its pipelines: ``cache_hit_ratio`` from the summed
    counters, ``circuit_breaker_state`` the worst of the distinct breakers, and
    ``rate_limit_tokens_available`` the fewest tokens of the distinct buckets, and from the
    same reading ``rate_limit_fill_ratio`` (the lowest), ``rate_limit_consumption_rate``
    (tokens per second, summed over the limiters: each counts its own takings) and
    ``rate_limit_seconds_to_exhaustion`` (the soonest; +Inf when consumption is known and
    does not outpace the refill; absent while no consumption is known). A local
    breaker or bucket is read in place (no I/O); a shared one through :class:`_Readings`.
    """

    def __init__(self) -> None:
        # Re-entrant: a pipeline's finaliser may run (garbage collection) while we hold it.
        self._lock = threading.RLock()
        self._sources: dict[str, list[Source]] = {}
        self._retired: dict[str, dict[str, int]] = {}
        self.readings = _Readings()

    def track(self, owner: object, source: Source) -> None:
        """Show ``source`` until ``owner`` (the pipeline) is garbage collected."""
        with self._lock:
            self._sources.setdefault(source.provider, []).append(source)
        weakref.finalize(owner, self._retire, source)
        breaker, limiter = source.breaker, source.limiter
        if breaker is not None and breaker.shared:
            self.readings.prime(breaker, functools.partial(_state_code, breaker))
        bucket = None if limiter is None else limiter.buckets.get(source.provider)
        if limiter is not None and bucket is not None and bucket.shared:
            read = functools.partial(_bucket_figures, limiter, source.provider)
            self.readings.prime(bucket, read)

    def _retire(self, source: Source) -> None:
        counts = source.stats.counts()
        with self._lock:
            sources = self._sources.get(source.provider, [])
            if source in sources:
                sources.remove(source)
            if not sources:
                self._sources.pop(source.provider, None)
            total = self._retired.setdefault(source.provider, dict.fromkeys(Stats.COUNTERS, 0))
            for name, n in counts.items():
                total[name] += n

    def describe(self) -> Iterable[Metric]:
        ops, gauges = self._families()
        return [ops, *gauges]

    def _families(self) -> tuple[CounterMetricFamily, list[GaugeMetricFamily]]:
        return (
            CounterMetricFamily(
                "cache_operations",
                "Cache lookups and writes by result.",
                labels=["provider", "result"],
            ),
            [
                GaugeMetricFamily(
                    "circuit_breaker_state",
                    "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
                    labels=["provider"],
                ),
                GaugeMetricFamily(
                    "cache_hit_ratio", "Cache hits over cache lookups.", labels=["provider"]
                ),
                GaugeMetricFamily(
                    "rate_limit_tokens_available",
                    "Tokens in the provider's rate-limit bucket.",
                    labels=["provider"],
                ),
                GaugeMetricFamily(
                    "rate_limit_consumption_rate",
                    "Tokens per second taken from the provider's bucket, over about a minute.",
                    labels=["provider"],
                ),
                GaugeMetricFamily(
                    "rate_limit_fill_ratio",
                    "Available tokens over the bucket's capacity, 0 to 1.",
                    labels=["provider"],
                ),
                GaugeMetricFamily(
                    "rate_limit_seconds_to_exhaustion",
                    "Seconds until the bucket is empty at the current consumption rate.",
                    labels=["provider"],
                ),
            ],
        )

    def collect(self) -> Iterable[Metric]:
        ops, gauges = self._families()
        state, ratio, tokens, consumption, fill, exhaustion = gauges
        with self._lock:
            live = {p: list(s) for p, s in self._sources.items()}
            retired = {p: dict(c) for p, c in self._retired.items()}
        for provider in sorted(live.keys() | retired.keys()):
            totals = retired.get(provider) or dict.fromkeys(Stats.COUNTERS, 0)
            breakers: dict[int, CircuitBreaker] = {}
            buckets: dict[int, tuple[TokenBucket, RateLimiter]] = {}
            for source in live.get(provider, ()):
                for name, n in source.stats.counts().items():
                    totals[name] += n
                if source.breaker is not None:
                    breakers[id(source.breaker)] = source.breaker
                limiter = source.limiter
                bucket = None if limiter is None else limiter.buckets.get(provider)
                if limiter is not None and bucket is not None:
                    buckets[id(bucket)] = (bucket, limiter)
            for result, counter in CACHE_RESULTS.items():
                ops.add_metric([provider, result], totals[counter])
            ratio.add_metric([provider], _hit_ratio(totals))
            codes = [c for c in map(self._breaker_code, breakers.values()) if c is not None]
            if codes:
                state.add_metric([provider], max(codes, key=lambda c: _SEVERITY[int(c)]))
            read = [self._figures(provider, *pair) for pair in buckets.values()]
            figures = [f for f in read if f is not None]
            if figures:
                tokens.add_metric([provider], min(f.tokens for f in figures))
                fill.add_metric([provider], min(f.fill_ratio for f in figures))
                rates = [f.consumption_rate for f in figures if f.consumption_rate is not None]
                if rates:
                    consumption.add_metric([provider], sum(rates))
                    soonest = [
                        f.seconds_to_exhaustion
                        for f in figures
                        if f.seconds_to_exhaustion is not None
                    ]
                    exhaustion.add_metric([provider], min(soonest, default=math.inf))
        return [ops, *gauges]

    def _breaker_code(self, breaker: CircuitBreaker) -> float | None:
        if breaker.shared:
            got = self.readings.get(breaker, functools.partial(_state_code, breaker))
            return got if isinstance(got, float) else None
        return _state_code(breaker)  # the local machine: no I/O

    def _figures(
        self, provider: str, bucket: TokenBucket, limiter: RateLimiter
    ) -> _BucketFigures | None:
        read = functools.partial(_bucket_figures, limiter, provider)
        got = self.readings.get(bucket, read) if bucket.shared else read()
        return got if isinstance(got, _BucketFigures) else None


class Metrics:
    """The pipeline's Prometheus metrics on one registry. Use :meth:`for_registry`: metric
    names can be registered only once per registry.

    - ``api_calls_total{provider,status}``: upstream attempts by outcome (``success``,
      ``not_found``, ``rate_limited``, ``transient``, ``permanent``, ``authentication``);
    - ``api_request_duration_seconds{provider,endpoint}``: attempt latency histogram;
    - ``retries_total{provider,reason}``: retries by the retry policy's reason;
    - ``cache_operations_total{provider,result}``: ``hit``, ``negative_hit``, ``miss``,
      ``stale_served``, ``coalesced``, ``store``, derived from the pipelines' stats;
    - gauges ``circuit_breaker_state{provider}``, ``cache_hit_ratio{provider}``,
      ``rate_limit_tokens_available{provider}``, ``rate_limit_consumption_rate{provider}``,
      ``rate_limit_fill_ratio{provider}``, ``rate_limit_seconds_to_exhaustion{provider}``,
      read at scrape time (see :class:`_Live`).
    """

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, Metrics]] = (
        weakref.WeakKeyDictionary()
    )
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        # A weak reference: _by_registry is keyed by the registry, and a value holding its
        # key would keep both forever. The pipelines using it hold it instead.
        self._registry = weakref.ref(registry)
        self.api_calls = Counter(
            "api_calls",
            "Upstream API attempts by outcome.",
            ["provider", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "api_request_duration_seconds",
            "Upstream attempt latency.",
            ["provider", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "retries", "Retries after a failed attempt.", ["provider", "reason"], registry=registry
        )
        self.live = _Live()
        registry.register(self.live)

    @property
    def registry(self) -> CollectorRegistry:
        """The registry these metrics live on (ReferenceError once it is gone)."""
        registry = self._registry()
        if registry is None:
            raise ReferenceError("the metrics' registry has been garbage collected")
        return registry

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """The one :class:`Metrics` of ``registry`` (prometheus-client's global by default)."""
        reg = REGISTRY if registry is None else registry
        with cls._guard:
            metrics = cls._by_registry.get(reg)
            if metrics is None:
                metrics = cls._by_registry[reg] = cls(reg)
            return metrics


# -- the request path's one observer -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a pipeline's request path reported, as subscribers receive it
    (:meth:`tunegate.pipeline.Pipeline.subscribe`). Never a secret: the provider, the
    templated endpoint, fixed words, numbers and an error's type name.

    ``kind``: ``hit``, ``negative_hit``, ``attempt`` (``attempt``, ``status``, ``outcome``,
    ``latency_ms``), ``retry`` (``attempt``, ``reason``, ``delay``), ``gave_up``
    (``attempt``, ``reason``, ``error``) or ``stale_served`` (``reason``, ``error``)."""

    kind: str
    provider: str
    endpoint: str
    attempt: int | None = None
    status: int | None = None
    outcome: str | None = None
    reason: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    delay: float | None = None
    correlation_id: str | None = None


Observer = Callable[[Event], None]


class Recorder:
    """Where one pipeline's request path reports what happened: its :class:`Stats`, its
    Prometheus metrics, its log records and its span. The path calls one method per event
    (a hit, an attempt, a retry, a give-up, a stale answer) and never reaches stats, logs or
    metrics itself, so what is recorded for an event is decided here, once. Other observers
    subscribe (:meth:`subscribe`) and get each event as an :class:`Event`; none is built
    while nobody subscribes."""

    __slots__ = (
        "_api_calls",
        "_api_errors",
        "_hits",
        "_m_calls",
        "_m_latency",
        "_negative_hits",
        "_observers",
        "metrics",
        "provider",
        "stats",
    )

    def __init__(self, provider: str, stats: Stats, metrics: Metrics | None) -> None:
        self.provider = provider
        self.stats = stats
        self._hits = stats.tallies["cache_hits"].bump
        self._negative_hits = stats.tallies["negative_hits"].bump
        self._api_calls = stats.tallies["api_calls"].bump
        self._api_errors = stats.tallies["api_errors"].bump
        self._observers: tuple[Observer, ...] = ()
        self.metrics = metrics
        # Children looked up once (labels() takes the metric's lock and builds a key each
        # time): by outcome, and by templated endpoint (bounded, like the labels).
        self._m_calls: dict[str, Any] = {}
        self._m_latency: dict[str, Any] = {}
        if metrics is not None:
            outcomes = ("success", "not_found", "rate_limited", "transient", "permanent")
            for outcome in (*outcomes, "authentication"):
                self._m_calls[outcome] = metrics.api_calls.labels(provider, outcome)

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Send every later event to ``observer`` too; returns the unsubscribe function."""
        self._observers = (*self._observers, observer)

        def unsubscribe() -> None:
            self._observers = tuple(o for o in self._observers if o is not observer)

        return unsubscribe

    def _emit(self, kind: str, endpoint: str, **fields: Any) -> None:
        event = Event(kind, self.provider, endpoint, correlation_id=_correlation.get(), **fields)
        for observer in self._observers:
            try:
                observer(event)
            except Exception as exc:  # an observer's bug must not fail the call
                logger.warning("an observer failed (%s)", type(exc).__name__)

    def count(self, name: str) -> None:
        self.stats.add(name)

    def hit(self, endpoint: str, negative: bool) -> None:
        """A fresh answer from the cache (no log record is built unless DEBUG is on)."""
        holder = _sources.get()  # record_source, inlined: the hit path's one ContextVar read
        if holder is not None:
            holder.record(self.provider, "cache")
        if negative:
            self._negative_hits()
        else:
            self._hits()
        if logger.isEnabledFor(logging.DEBUG):
            state = "negative_hit" if negative else "hit"
            log_event(logging.DEBUG, "cache hit", self.provider, endpoint, cache=state)
        if self._observers:
            self._emit("negative_hit" if negative else "hit", endpoint)

    def attempt(
        self,
        endpoint: str,
        attempt: int,
        status: int | None,
        outcome: str,
        latency: float,
        cache: str,
        span: Span | None,
    ) -> None:
        """One upstream exchange and its outcome (``Kind`` value)."""
        answered = outcome in _ANSWERED
        self._api_calls()
        if not answered:
            self._api_errors()
        self.stats.observe(latency)
        metrics = self.metrics
        if metrics is not None:
            counter = self._m_calls.get(outcome)
            if counter is None:
                counter = self._m_calls[outcome] = metrics.api_calls.labels(self.provider, outcome)
            counter.inc()
            timer = self._m_latency.get(endpoint)
            if timer is None:
                timer = self._m_latency[endpoint] = metrics.latency.labels(self.provider, endpoint)
            timer.observe(latency)
        if logger.isEnabledFor(logging.INFO if answered else logging.WARNING):
            log_attempt(
                provider=self.provider,
                endpoint=endpoint,
                status=status,
                attempt=attempt,
                latency_ms=latency * 1000.0,
                cache=cache,
                outcome=outcome,
            )
        if span is not None:
            span.attempt(attempt, status, outcome, latency * 1000.0)
        if self._observers:
            self._emit(
                "attempt",
                endpoint,
                attempt=attempt,
                status=status,
                outcome=outcome,
                latency_ms=latency * 1000.0,
            )

    def retrying(self, endpoint: str, attempt: int, reason: str, delay: float) -> None:
        self.stats.add("retries")
        if self.metrics is not None:
            self.metrics.retries.labels(self.provider, reason).inc()
        log_event(
            logging.INFO,
            "retrying",
            self.provider,
            endpoint,
            attempt=attempt,
            reason=reason,
            delay=round(delay, 3),
        )
        if self._observers:
            self._emit("retry", endpoint, attempt=attempt, reason=reason, delay=delay)

    def gave_up(self, endpoint: str, attempts: int, reason: str, error: BaseException) -> None:
        # One WARNING per failure: the callers that shared it say so at INFO.
        level = logging.INFO if reason == "shared_failure" else logging.WARNING
        log_event(
            level,
            "giving up",
            self.provider,
            endpoint,
            attempt=attempts,
            reason=reason,
            error=type(error).__name__,
        )
        if self._observers:
            name = type(error).__name__
            self._emit("gave_up", endpoint, attempt=attempts, reason=reason, error=name)

    def answered(self) -> None:
        """An answer from the provider (a value, or its "not found")."""
        record_source(self.provider, "api")

    def span(self, endpoint: str) -> Span | None:
        """The span of one call that missed the cache (None without OpenTelemetry)."""
        return start_span(self.provider, endpoint)

    def stale_served(self, endpoint: str, reason: str, error: BaseException) -> None:
        """A stale entry answered for ``error`` (stale-if-error)."""
        record_source(self.provider, "stale")
        self.stats.add("stale_served")
        log_event(
            logging.WARNING,
            "served stale entry",
            self.provider,
            endpoint,
            cache="stale_served",
            reason=reason,
            error=type(error).__name__,
        )
        if self._observers:
            self._emit("stale_served", endpoint, reason=reason, error=type(error).__name__)

    def not_cacheable(self, endpoint: str) -> None:
        log_event(logging.WARNING, "value not cacheable", self.provider, endpoint)


# -- OpenTelemetry ------------------------------------------------------------------------

# Optional: spans only when the API is installed. Imported by name so that type checking
# does not need it either.
_otel_trace: Any
try:
    _otel_trace = importlib.import_module("opentelemetry.trace")
except ImportError:  # pragma: no cover - depends on the environment
    _otel_trace = None


class Span:
    """A thin wrapper so the pipeline never imports OpenTelemetry itself."""

    __slots__ = ("_span",)

    def __init__(self, span: Any) -> None:
        self._span = span

    def attempt(self, attempt: int, status: int | None, outcome: str, latency_ms: float) -> None:
        attrs: dict[str, Any] = {"attempt": attempt, "outcome": outcome, "latency_ms": latency_ms}
        if status is not None:
            attrs["http.response.status_code"] = status
        self._span.add_event("tunegate.attempt", attrs)

    def finish(self, cache: str, error: BaseException | None = None) -> None:
        self._span.set_attribute("tunegate.cache", cache)
        if error is not None:
            self._span.set_attribute("error.type", type(error).__name__)
            status = _otel_trace.Status(_otel_trace.StatusCode.ERROR, type(error).__name__)
            self._span.set_status(status)
        self._span.end()


_tracer: Any = None

# get_tracer_provider() costs ~0.7 us a miss, mostly its check of the environment variable
# naming a provider (a KeyError caught inside os.environ when it is unset). The same
# answer, cheaper: the provider the API holds (read as it is, so one set later counts at
# once), and only while none is held, that variable looked up in os.environ's own dict.
_ENV_NAME = "OTEL_PYTHON_TRACER_PROVIDER"
_env_data: Any = getattr(os.environ, "_data", None)
_env_key: Any = os.environ.encodekey(_ENV_NAME) if hasattr(os.environ, "encodekey") else None
_FAST_PROVIDER_CHECK = (
    _otel_trace is not None
    and hasattr(_otel_trace, "_TRACER_PROVIDER")
    and isinstance(_env_data, dict)
    and _env_key is not None
)


def _no_provider() -> bool:
    """What ``type(get_tracer_provider()) is ProxyTracerProvider`` says (no provider set:
    every span would be a no-op)."""
    if _FAST_PROVIDER_CHECK:
        held = _otel_trace._TRACER_PROVIDER
        if held is None and _env_key not in _env_data:
            return True
        if held is not None:
            return type(held) is _otel_trace.ProxyTracerProvider
    # Named by the environment and not loaded yet (the API loads it now), or no fast path.
    return type(_otel_trace.get_tracer_provider()) is _otel_trace.ProxyTracerProvider


def start_span(provider: str, endpoint: str) -> Span | None:
    """A span for one pipeline call, or None without opentelemetry-api or before a tracer
    provider is set (every span would be a no-op then)."""
    global _tracer
    if _otel_trace is None or _no_provider():
        return None  # no provider set (yet): the span would be a no-op, so make none
    if _tracer is None:  # a proxy tracer: it follows a provider set later
        _tracer = _otel_trace.get_tracer("tunegate")
    attrs: dict[str, Any] = {"tunegate.provider": provider, "tunegate.endpoint": endpoint}
    cid = _correlation.get()
    if cid is not None:
        attrs["tunegate.correlation_id"] = cid
    span = _tracer.start_span(
        f"{provider} {endpoint}", kind=_otel_trace.SpanKind.CLIENT, attributes=attrs
    )
    return Span(span)
