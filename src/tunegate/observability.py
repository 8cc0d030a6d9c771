"""Logs, stats, Prometheus metrics and OpenTelemetry spans for the request pipeline.

Logs go through stdlib ``logging`` (logger ``tunegate.pipeline``) with the structured
fields as record attributes (``provider``, ``endpoint``, ``status``, ``attempt``,
``latency_ms``, ``cache``, ``outcome``, ``correlation_id``); :class:`JsonFormatter` prints
them as one JSON object a line, and structlog's ``ProcessorFormatter`` reads them as they
are. The library never configures logging: the application (or ``tunegate``'s CLI) does.

Every upstream attempt logs at INFO (a failed one at WARNING). A cache hit logs at DEBUG
only, and builds no record at all unless DEBUG is enabled for the logger.

Metrics live on a registry the caller passes (default: prometheus-client's global one),
created once per registry. Labels are bounded: provider names, templated endpoints, and
fixed outcome words; never user data or a URL. Gauges (breaker state, hit ratio, tokens)
are read from the live pipelines when the registry is scraped.

OpenTelemetry: a span per pipeline call when ``opentelemetry-api`` is importable; nothing
otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import json
import logging
import math
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

__all__ = [
    "CALL_STATES",
    "JsonFormatter",
    "Metrics",
    "Stats",
    "correlation_id",
    "current_correlation_id",
    "logger",
]

logger = logging.getLogger("tunegate.pipeline")

# -- correlation id ---------------------------------------------------------------------

_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tunegate_correlation_id", default=None
)


@contextlib.contextmanager
def correlation_id(value: str | None = None) -> Iterator[str]:
    """Tag every log line and span inside the block with ``value`` (a fresh random id when
    None). Works across threads' own contexts and asyncio tasks (a ``ContextVar``)."""
    cid = value if value else uuid.uuid4().hex[:16]
    token = _correlation.set(cid)
    try:
        yield cid
    finally:
        _correlation.reset(token)


def current_correlation_id() -> str | None:
    return _correlation.get()


# -- logs -------------------------------------------------------------------------------

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
    level = logging.INFO if outcome in ("success", "not_found") else logging.WARNING
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

#: Values of the ``cache`` log field and ``result`` label of ``cache_operations_total``.
CALL_STATES = ("hit", "negative_hit", "miss", "stale_served", "bypass", "coalesced")


def _percentile(sorted_values: list[float], q: float) -> float:
    # Nearest rank: an observed value, no interpolation between two calls.
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class Stats:
    """Counters of one pipeline, safe across threads (a lock around each ``+=``), and the
    latencies of the last ``window`` upstream attempts for percentiles."""

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
    )

    def __init__(self, window: int = 1024) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.COUNTERS, 0)
        self._latencies: deque[float] = deque(maxlen=window)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._latencies.append(seconds)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
            latencies = sorted(self._latencies)
        looked = counts["cache_hits"] + counts["negative_hits"] + counts["cache_misses"]
        hits = counts["cache_hits"] + counts["negative_hits"]
        counts_any: dict[str, Any] = dict(counts)
        counts_any["cache_hit_ratio"] = hits / looked if looked else 0.0
        counts_any["latency_ms"] = {
            "p50": _percentile(latencies, 0.50) * 1000.0,
            "p95": _percentile(latencies, 0.95) * 1000.0,
            "p99": _percentile(latencies, 0.99) * 1000.0,
            "count": len(latencies),
        }
        return counts_any


# -- Prometheus ---------------------------------------------------------------------------

# Seconds; upstream calls run from a few ms (a mirror on the LAN) to the 15 s total timeout.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_STATE_CODES = {"closed": 0, "open": 1, "half_open": 2}

GaugeSource = Callable[[], "dict[str, float | None]"]


class _LiveGauges:
    """A collector that reads the gauges from the live pipelines at scrape time, so a
    breaker that turned half-open by the clock shows so without a call having passed."""

    def __init__(self) -> None:
        self._sources: dict[str, weakref.WeakMethod[Any]] = {}
        self._lock = threading.Lock()

    def track(self, provider: str, source: Any) -> None:
        with self._lock:
            self._sources[provider] = weakref.WeakMethod(source)

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
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
        )

    def collect(self) -> Iterable[Metric]:
        state, ratio, tokens = self._families()
        with self._lock:
            sources = list(self._sources.items())
        for provider, ref in sources:
            read = ref()
            if read is None:
                continue
            values = read()
            if values.get("breaker_state") is not None:
                state.add_metric([provider], float(values["breaker_state"] or 0))
            ratio.add_metric([provider], float(values.get("cache_hit_ratio") or 0.0))
            if values.get("tokens") is not None:
                tokens.add_metric([provider], float(values["tokens"] or 0.0))
        return [state, ratio, tokens]


class Metrics:
    """The pipeline's Prometheus metrics on one registry. Use :meth:`for_registry`: metric
    names can be registered only once per registry.

    - ``api_calls_total{provider,status}``: upstream attempts by outcome (``success``,
      ``not_found``, ``rate_limited``, ``transient``, ``permanent``, ``authentication``);
    - ``api_request_duration_seconds{provider,endpoint}``: attempt latency histogram;
    - ``retries_total{provider,reason}``: retries by the retry policy's reason;
    - ``cache_operations_total{provider,result}``: ``hit``, ``negative_hit``, ``miss``,
      ``stale_served``, ``bypass``, ``coalesced``, ``store``;
    - gauges ``circuit_breaker_state{provider}``, ``cache_hit_ratio{provider}``,
      ``rate_limit_tokens_available{provider}``, read at scrape time.
    """

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, Metrics]] = (
        weakref.WeakKeyDictionary()
    )
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
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
        self.cache_ops = Counter(
            "cache_operations",
            "Cache lookups and writes by result.",
            ["provider", "result"],
            registry=registry,
        )
        self.gauges = _LiveGauges()
        registry.register(self.gauges)

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """The one :class:`Metrics` of ``registry`` (prometheus-client's global by default)."""
        reg = REGISTRY if registry is None else registry
        with cls._guard:
            metrics = cls._by_registry.get(reg)
            if metrics is None:
                metrics = cls._by_registry[reg] = cls(reg)
            return metrics


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


def start_span(provider: str, endpoint: str) -> Span | None:
    """A span for one pipeline call, or None without opentelemetry-api."""
    global _tracer
    if _otel_trace is None:
        return None
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
