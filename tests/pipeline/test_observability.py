"""Logs, correlation ids, Prometheus metrics, OpenTelemetry spans, and the canary-secret
scan of everything the pipeline lets out."""

from __future__ import annotations

import gc
import json
import logging
import socket
import threading
import traceback
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import redis
import yarl
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tunegate.observability as obs
from tests.pipeline._server import RawServer, Reply, ScriptServer
from tests.pipeline.conftest import FAST_HTTP, MakePipeline, catch, invoke, invoke_many, item
from tunegate._http import HttpConfig, HttpPool
from tunegate._policy.classify import ResponseView
from tunegate._policy.retry import RetryPolicy
from tunegate._redis import RedisLink
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.exceptions import AuthenticationError, ProviderError
from tunegate.observability import JsonFormatter, correlation_id
from tunegate.pipeline import Pipeline
from tunegate.ratelimit import RateLimiter


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    """Every record of the ``tunegate`` loggers, at DEBUG."""
    handler = Capture()
    log = logging.getLogger("tunegate")
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(old)


def test_attempts_log_structured_fields_with_the_correlation_id(
    server: ScriptServer, make: MakePipeline, captured: Capture, driver: str
) -> None:
    """Each upstream attempt logs provider, templated endpoint, status, attempt, latency,
    cache outcome and the caller's correlation id; JsonFormatter prints them."""
    pipeline = make(cache=CacheManager())
    server.script("/items/1", Reply(503), Reply(json={"v": 1}))
    with correlation_id("req-42") as cid:
        assert cid == "req-42"
        invoke(pipeline, item(1), driver)
    attempts = [r for r in captured.records if hasattr(r, "latency_ms")]
    assert [(r.status, r.attempt, r.outcome) for r in attempts] == [  # type: ignore[attr-defined]
        (503, 1, "transient"),
        (200, 2, "success"),
    ]
    for r in attempts:
        assert r.provider == "test"  # type: ignore[attr-defined]
        assert r.endpoint == "/items/{id}"  # type: ignore[attr-defined]
        assert r.cache == "miss"  # type: ignore[attr-defined]
        assert r.correlation_id == "req-42"  # type: ignore[attr-defined]
    assert [r.levelno for r in attempts] == [logging.WARNING, logging.INFO]
    line = json.loads(JsonFormatter().format(attempts[1]))
    assert line["latency_ms"] >= 0
    assert line["correlation_id"] == "req-42"
    assert line["endpoint"] == "/items/{id}"


def test_every_library_record_carries_the_correlation_id(server: ScriptServer) -> None:
    """Records of the limiter (a pause the provider asked for) and of the Spotify token
    source (credentials refused), not only the pipeline's, carry the caller's id."""
    from tunegate import SpotifyClient
    from tunegate.exceptions import AuthenticationError
    from tunegate.ratelimit import RateLimiter

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    loggers = [logging.getLogger(n) for n in ("tunegate.ratelimit", "tunegate.clients")]
    for log in loggers:
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    server.script("/api/token", Reply(400, json={"error": "invalid_client"}))
    client = SpotifyClient("a" * 32, "b" * 32, base_url=server.url, metrics=False)
    try:
        limiter = RateLimiter()
        limiter.configure_provider("test", rate=10.0, capacity=1)
        with correlation_id("req-7"):
            limiter.adjust_from_headers("test", {"Retry-After": "1"})
            with pytest.raises(AuthenticationError):
                client.search_track("Deadmau5", "Strobe")
    finally:
        client.close()
        for log in loggers:
            log.removeHandler(handler)
            log.setLevel(logging.NOTSET)
    assert [r.name for r in records] == ["tunegate.ratelimit", "tunegate.clients"]
    assert "refused the client credentials" in records[1].getMessage()
    assert all(r.correlation_id == "req-7" for r in records)  # type: ignore[attr-defined]
    assert json.loads(JsonFormatter().format(records[0]))["correlation_id"] == "req-7"


def test_subscribers_get_each_event_of_the_path(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """An observer subscribed to a pipeline sees a miss's attempts and retry, then a hit,
    each with the caller's correlation id; an observer that raises does not fail the call;
    after unsubscribing it sees nothing."""
    from tunegate.observability import Event

    events: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    pipeline = make(cache=CacheManager())
    unsubscribe = pipeline.subscribe(events.append)
    pipeline.subscribe(broken)
    server.script("/items/1", Reply(503), Reply(json={"v": 1}))
    with correlation_id("req-9"):
        assert invoke(pipeline, item(1), driver) == {"v": 1}
        assert invoke(pipeline, item(1), driver) == {"v": 1}
    assert [e.kind for e in events] == ["attempt", "retry", "attempt", "hit"]
    first, retry, second, hit = events
    assert (first.status, first.outcome, first.attempt) == (503, "transient", 1)
    assert (retry.reason, retry.attempt) == ("unavailable", 1)
    assert (second.status, second.outcome) == (200, "success")
    assert hit.endpoint == "/items/{id}"
    assert {e.provider for e in events} == {"test"}
    assert {e.correlation_id for e in events} == {"req-9"}
    unsubscribe()
    invoke(pipeline, item(1), driver)
    assert len(events) == 4


def test_correlation_id_is_generated_and_restored() -> None:
    """Without a value a fresh id is made; the previous one comes back after the block."""
    with correlation_id("outer"):
        with correlation_id() as inner:
            assert len(inner) == 16
            assert obs.current_correlation_id() == inner
        assert obs.current_correlation_id() == "outer"
    assert obs.current_correlation_id() is None


def test_cache_hits_log_nothing_above_debug_and_build_no_record(
    make: MakePipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With DEBUG off a hit creates no log record at all; with DEBUG on, one DEBUG line."""
    pipeline = make(cache=CacheManager())
    pipeline.call(item(1))
    made: list[str] = []
    original = obs.logger.makeRecord

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(*args, **kwargs)
        made.append(record.levelname)
        return record

    monkeypatch.setattr(obs.logger, "makeRecord", counting)
    monkeypatch.setattr(obs.logger, "level", logging.INFO)
    obs.logger.manager._clear_cache()  # type: ignore[attr-defined]  # private: reset level caches
    for _ in range(5):
        pipeline.call(item(1))
    assert made == []
    monkeypatch.setattr(obs.logger, "level", logging.DEBUG)
    obs.logger.manager._clear_cache()  # type: ignore[attr-defined]  # private: reset level caches
    pipeline.call(item(1))
    assert made == ["DEBUG"]


def test_the_library_configures_no_logging() -> None:
    """tunegate adds no handler anywhere and leaves levels to the application."""
    for name in ("tunegate", "tunegate.pipeline", "tunegate.redis"):
        log = logging.getLogger(name)
        assert not [h for h in log.handlers if not isinstance(h, Capture)]
        assert log.propagate


def test_metrics_text_parses_and_carries_the_design_names(
    server: ScriptServer, make: MakePipeline
) -> None:
    """The exposition text parses with prometheus-client's parser; names, labels and
    values match what happened; labels hold no user data or URL."""
    registry = CollectorRegistry()
    limiter = RateLimiter()
    limiter.configure_provider("test", rate=100.0, capacity=10)
    breaker = CircuitBreaker("test", failure_threshold=1)
    pipeline = make(
        cache=CacheManager(),
        rate_limiter=limiter,
        circuit_breaker=breaker,
        registry=registry,
        retry=RetryPolicy(max_attempts=2, base=0.01, deadline=5.0),
    )
    server.script("/items/9", Reply(404))
    pipeline.call(item(1))
    pipeline.call(item(1))
    catch(pipeline, item(9), "sync")
    server.script("/items/2", Reply(503))
    catch(pipeline, item(2), "sync")  # opens the breaker on the first failure

    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("api_calls_total", provider="test", status="success") == 1
    assert value("api_calls_total", provider="test", status="not_found") == 1
    assert value("api_calls_total", provider="test", status="transient") == 1
    assert value("circuit_breaker_state", provider="test") == 1  # open
    assert value("cache_hit_ratio", provider="test") == pytest.approx(1 / 4)
    assert 0 <= value("rate_limit_tokens_available", provider="test") <= 10
    assert value("cache_operations_total", provider="test", result="hit") == 1
    assert value("cache_operations_total", provider="test", result="miss") == 3
    assert value("cache_operations_total", provider="test", result="store") == 2
    assert value("api_request_duration_seconds_count", provider="test", endpoint="/items/{id}") == 3
    assert families["retries"].type == "counter"
    for (_, labels), _v in samples.items():
        for label, val in labels:
            assert "127.0.0.1" not in val
            assert label in {"provider", "status", "endpoint", "reason", "result", "le"}


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry's exposition text, by name and sorted labels."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_every_pipeline_of_a_provider_counts(server: ScriptServer, make: MakePipeline) -> None:
    """Two pipelines of one provider on one registry (two clients, say): counters and the
    hit ratio add both up, the breaker gauge shows the worse breaker; a second pipeline
    does not hide the first."""
    registry = CollectorRegistry()
    tripped = CircuitBreaker("test", failure_threshold=1)
    tripped.record_failure(tripped.allow())
    cache = CacheManager()
    first = make(cache=cache, circuit_breaker=tripped, registry=registry)
    second = make(cache=CacheManager(), circuit_breaker=CircuitBreaker("test"), registry=registry)
    cache.store(cache.key("test:item", "9"), {"v": 9})
    first.call(item(9))  # a hit
    second.call(item(1))  # a miss
    second.call(item(2))  # a miss
    samples = scrape(registry)
    assert samples[("cache_operations_total", (("provider", "test"), ("result", "hit")))] == 1
    assert samples[("cache_operations_total", (("provider", "test"), ("result", "miss")))] == 2
    assert samples[("cache_hit_ratio", (("provider", "test"),))] == pytest.approx(1 / 3)
    assert samples[("circuit_breaker_state", (("provider", "test"),))] == 1  # open


def test_counts_outlive_their_pipeline(server: ScriptServer) -> None:
    """A pipeline that is garbage collected leaves its counts behind: counters never go
    down."""
    registry = CollectorRegistry()
    pipeline = Pipeline(
        "test",
        server.url,
        cache=CacheManager(),
        http=HttpPool("test", FAST_HTTP),
        registry=registry,
    )
    pipeline.call(item(1))
    pipeline.call(item(1))
    pipeline.close()
    key = ("cache_operations_total", (("provider", "test"), ("result", "hit")))
    assert scrape(registry)[key] == 1
    gone = weakref.ref(pipeline)
    del pipeline
    gc.collect()
    assert gone() is None
    assert scrape(registry)[key] == 1


@pytest.mark.redis
def test_a_scrape_makes_no_redis_round_trip(make: MakePipeline, redis_url: str) -> None:
    """Shared breaker and limiter: their gauges come from readings taken off the scrape;
    once a reading is there, scraping sends Redis nothing."""
    registry = CollectorRegistry()
    link = RedisLink(redis_url)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=100.0, capacity=10)
    pipeline = make(
        rate_limiter=limiter,
        circuit_breaker=CircuitBreaker("test", redis=link),
        registry=registry,
    )
    client = redis.Redis.from_url(redis_url)

    def scripts_run() -> int:
        stats = client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))

    try:
        pipeline.call(item(1))
        tokens = ("rate_limit_tokens_available", (("provider", "test"),))
        for _ in range(500):  # the first scrapes ask for readings, taken in the background
            if tokens in scrape(registry):
                break
            threading.Event().wait(0.01)
        before = scripts_run()
        samples = scrape(registry)
        assert scripts_run() == before
    finally:
        client.close()
        link.close()
    assert samples[("circuit_breaker_state", (("provider", "test"),))] == 0
    assert 0 <= samples[tokens] <= 10


@pytest.mark.redis
def test_the_first_scrape_in_redis_mode_has_the_breaker_and_token_gauges(
    make: MakePipeline, redis_url: str
) -> None:
    """Readings of shared components are taken when the pipeline is made, so a scrape
    right after it (no call yet) shows the breaker state and the tokens."""
    registry = CollectorRegistry()
    link = RedisLink(redis_url)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=100.0, capacity=10)
    try:
        make(
            rate_limiter=limiter,
            circuit_breaker=CircuitBreaker("test", redis=link),
            registry=registry,
        )
        samples = scrape(registry)
    finally:
        link.close()
    assert samples[("circuit_breaker_state", (("provider", "test"),))] == 0
    assert samples[("rate_limit_tokens_available", (("provider", "test"),))] == 10


def test_one_metrics_set_per_registry(make: MakePipeline) -> None:
    """Two pipelines on one registry share its metrics (no duplicate registration)."""
    registry = CollectorRegistry()
    first = make(registry=registry)
    second = make(registry=registry, provider="other")
    assert first._metrics is second._metrics
    assert make(metrics=False)._metrics is None


# -- the canary-secret scan ------------------------------------------------------------------

CANARIES = ["canary-8c1f55e0d6b94a17", "can+ary/8c1f==55 e0&d6b94a17"]
SECRET_NAMES = frozenset({"api_key", "Authorization", "client_secret"})


def secret_request(i: int | str, canary: str) -> Any:
    return item(
        i,
        params=(("method", "track.getInfo"), ("api_key", canary)),
        headers=(("Authorization", f"Bearer {canary}"),),
        data=(("client_secret", canary),),
        method="POST",
        secret_params=SECRET_NAMES,
    )


def forms(secret: str) -> set[str]:
    """The secret raw, percent-encoded as aiohttp puts it in a query, and form-encoded."""
    query = yarl.URL("http://x/").with_query({"k": secret}).raw_query_string[2:]
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), query}


def echo_hook(view: ResponseView, decoded: Any) -> ProviderError | None:
    """A careless provider hook that copies the provider's message into the error."""
    if isinstance(decoded, dict) and "message" in decoded:
        return AuthenticationError(str(decoded["message"]), provider=view.provider, status=403)
    return None


@pytest.mark.redis
@pytest.mark.parametrize("canary", CANARIES, ids=["plain", "needs-encoding"])
def test_canary_secret_never_escapes(
    server: ScriptServer,
    make: MakePipeline,
    redis_url: str,
    captured: Capture,
    driver: str,
    canary: str,
) -> None:
    """A secret sent as a query parameter, a bearer header and a form field never shows,
    raw or in any URL or form encoding, in logs (any level), exceptions (text and
    traceback, including aiohttp's own error naming the URL), metrics, stats or Redis."""
    registry = CollectorRegistry()
    link = RedisLink(redis_url)
    cache = CacheManager(link)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=1000.0, capacity=100)
    pipeline = make(
        cache=cache,
        rate_limiter=limiter,
        circuit_breaker=CircuitBreaker("test", redis=link),
        registry=registry,
        classifier=echo_hook,
        retry=RetryPolicy(max_attempts=2, base=0.01, deadline=5.0),
    )
    logging.getLogger("aiohttp").setLevel(logging.DEBUG)
    logging.getLogger("aiohttp").addHandler(captured)
    server.script("/items/2", Reply(404))
    server.script("/items/3", Reply(500))
    server.script("/items/4", Reply(body=b"{not json"))
    server.script("/items/5", Reply(403, json={"message": f"invalid key {canary}"}))
    bad_status = RawServer(b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}")
    try:
        assert invoke(pipeline, secret_request(1, canary), "sync") == {"ok": True}
        results = invoke_many(
            pipeline, [secret_request(i, canary) for i in (1, 2, 3, 4, 5)], driver, (link,)
        )
        errors: list[BaseException] = [r for r in results if isinstance(r, BaseException)]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        offline = Pipeline(
            "test",
            f"http://127.0.0.1:{dead}",
            http=HttpPool("test", HttpConfig(connect_timeout=0.3)),
            retry=RetryPolicy(max_attempts=1),
            registry=registry,
        )
        errors += invoke_many(offline, [secret_request(6, canary)], driver)
        offline.close()
        garbled = Pipeline(
            "test",
            bad_status.url,
            http=HttpPool("test", HttpConfig(total_timeout=2.0)),
            retry=RetryPolicy(max_attempts=1),
            registry=registry,
        )
        errors += invoke_many(garbled, [secret_request(7, canary)], driver)
        garbled.close()
    finally:
        bad_status.stop()
        logging.getLogger("aiohttp").removeHandler(captured)
        logging.getLogger("aiohttp").setLevel(logging.NOTSET)

    sent = server.requests("/items/1")[0]
    assert sent.query["api_key"] == canary  # the secret did reach the provider
    assert sent.headers["Authorization"] == f"Bearer {canary}"

    formatter = JsonFormatter()
    haystack = [formatter.format(r) + repr(r.__dict__) for r in captured.records]
    for err in errors:
        haystack += [str(err), repr(err), "".join(traceback.format_exception(err))]
    haystack.append(generate_latest(registry).decode())
    haystack.append(repr(pipeline.get_stats()))
    haystack.append(repr(cache.get_stats()))
    haystack.append(repr(limiter.get_stats()))
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() for k in client.keys("*")]  # type: ignore[union-attr]  # bytes: no decode_responses
        haystack += keys
        haystack += [repr(client.get(k)) for k in keys if client.type(k) == b"string"]
    finally:
        client.close()
        link.sync.close()
    assert len(captured.records) > 5
    assert any("tunegate:v1:test:item" in k for k in keys)
    assert {type(e).__name__ for e in errors} >= {
        "NotFound",
        "ProviderUnavailable",
        "MalformedResponse",
        "AuthenticationError",
    }
    assert "invalid key ***" in str(errors[3])  # the careless hook's message, scrubbed
    assert len(errors) == 6
    assert "ClientResponseError" in "".join(traceback.format_exception(errors[5]))
    leaks = [h for h in haystack for form in forms(canary) if form in h]
    assert leaks == []


# -- OpenTelemetry ---------------------------------------------------------------------------


def test_spans_when_opentelemetry_is_installed(server: ScriptServer, make: MakePipeline) -> None:
    """One CLIENT span per call that misses the cache, with provider, endpoint, cache
    outcome and attempt events; errors mark the span; a fresh hit makes no span at all."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pipeline = make(cache=CacheManager())
    server.script("/items/2", Reply(404))
    with correlation_id("trace-me"):
        pipeline.call(item(1))
        pipeline.call(item(1))
        catch(pipeline, item(2), "sync")
    spans = exporter.get_finished_spans()
    assert all(s.attributes is not None for s in spans)
    assert [s.attributes["tunegate.cache"] for s in spans] == ["miss", "miss"]  # type: ignore[index]  # a hit: none
    first = spans[0]
    assert first.attributes is not None
    assert spans[1].attributes is not None
    assert first.name == "test /items/{id}"
    assert first.kind == trace.SpanKind.CLIENT
    assert first.attributes["tunegate.correlation_id"] == "trace-me"
    assert [e.name for e in first.events] == ["tunegate.attempt"]
    assert spans[1].attributes["error.type"] == "NotFound"
    assert not spans[1].status.is_ok


_SPAN_PROBE = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from tunegate.observability import start_span

before = start_span("test", "/x")
if sys.argv[1] == "set-later":
    assert before is None, "a span before any provider is set"
    trace.set_tracer_provider(TracerProvider())
after = start_span("test", "/x")
assert after is not None, "no span once a provider is set"
after.finish("miss")
assert isinstance(trace.get_tracer_provider(), TracerProvider)
print("ok")
"""


@pytest.mark.parametrize("how", ["set-later", "environment"])
def test_spans_start_once_a_provider_is_set_in_code_or_named_by_the_environment(
    how: str,
) -> None:
    """No span while no tracer provider is set; one as soon as a provider is set later in
    code, or from the first call when ``OTEL_PYTHON_TRACER_PROVIDER`` names one (each in a
    fresh process: the API's provider is set once per process)."""
    pytest.importorskip("opentelemetry.sdk")
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OTEL_PYTHON_TRACER_PROVIDER"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    if how == "environment":
        env["OTEL_PYTHON_TRACER_PROVIDER"] = "sdk_tracer_provider"
    done = subprocess.run(
        [sys.executable, "-c", _SPAN_PROBE, how],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "ok", done.stderr
