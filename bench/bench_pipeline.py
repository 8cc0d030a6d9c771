"""What a fresh cache hit costs through the request pipeline, beside a bare cache lookup.

Usage: ``.venv/bin/python bench/bench_pipeline.py [--repeats 5] [--seconds 0.2] [--otel]``

Figures, in microseconds per call (median of ``--repeats`` timed loops with the min-max,
repeats interleaved round-robin so every figure samples the whole run's machine state):

- ``cache.lookup(key)``: the floor, a memory-backend hit with the key already built;
- ``pipeline.key(request)``: building the cache key of a request (normalised, escaped);
- ``pipeline.call(request)`` / ``await pipeline.acall(request)``: a fresh hit end to end,
  with a breaker and a limiter configured (a hit must touch neither) and metrics on.

``--otel`` installs the OpenTelemetry SDK with an in-memory exporter first and reports how
many spans the hits exported (a hit should make none).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _timing import atimed, timed  # bench/ is on sys.path when a script runs

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Request:
    """A request shaped like ``tunegate.providers._request.ApiRequest``."""

    provider: str = "spotify"
    method: str = "GET"
    endpoint_template: str = "/v1/tracks/{id}"
    path: str = "/v1/tracks/3n3Ppam7vgaVa1iaRUc9Lp"
    params: Pairs = (("market", "US"),)
    data: Pairs = ()
    headers: Pairs = ()
    secret_params: frozenset[str] = frozenset()
    cache_kind: str | None = "spotify:track"
    cache_parts: tuple[str, ...] = ("3n3Ppam7vgaVa1iaRUc9Lp", "US")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.2)
    ap.add_argument("--otel", action="store_true", help="install the OpenTelemetry SDK first")
    args = ap.parse_args()

    exporter: Any = None
    if args.otel:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

    from prometheus_client import CollectorRegistry

    from tunegate import CacheManager, CircuitBreaker, RateLimiter
    from tunegate.pipeline import Pipeline

    cache = CacheManager()
    pipeline = Pipeline(
        "spotify",
        "http://127.0.0.1:9",  # never reached: every call below is a hit
        cache=cache,
        rate_limiter=RateLimiter(),
        circuit_breaker=CircuitBreaker("spotify"),
        registry=CollectorRegistry(),
    )
    request = Request()
    key = pipeline.key(request)
    assert key is not None
    cache.store(key, {"name": "Strobe", "artists": [{"name": "deadmau5"}], "pad": "x" * 3000})
    assert pipeline.call(request)["name"] == "Strobe"

    runner = asyncio.Runner()
    figures: dict[str, Callable[[], float]] = {
        "cache.lookup(key) (baseline)": lambda: timed(lambda: cache.lookup(key), args.seconds),
        "pipeline.key(request)": lambda: timed(lambda: pipeline.key(request), args.seconds),
        "pipeline.call(request), hit": lambda: timed(lambda: pipeline.call(request), args.seconds),
        "await pipeline.acall(request), hit": lambda: atimed(
            runner, lambda: pipeline.acall(request), args.seconds
        ),
    }
    spans_before = 0 if exporter is None else len(exporter.get_finished_spans())
    results: dict[str, list[float]] = {name: [] for name in figures}
    for _ in range(args.repeats):
        for name, measure in figures.items():
            results[name].append(measure())
    runner.close()

    width = max(map(len, results))
    print(f"{'figure':<{width}}  {'median us':>10}  {'min-max us':>17}")
    for name, vals in results.items():
        lo, hi = min(vals), max(vals)
        print(f"{name:<{width}}  {statistics.median(vals):>10.3f}  {lo:>8.3f}-{hi:<8.3f}")
    if exporter is not None:
        spans = len(exporter.get_finished_spans()) - spans_before
        print(f"spans exported by the hits above: {spans}")


if __name__ == "__main__":
    main()
