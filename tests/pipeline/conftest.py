"""Fixtures for the pipeline tests: a scripted local server, requests, and pipelines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.pipeline._server import ScriptServer, serve
from tunegate._drive import BACKLOG, Effect, Flow
from tunegate._http import HttpConfig, HttpPool
from tunegate._policy.retry import RetryPolicy
from tunegate._redis import RedisLink
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.pipeline import Pipeline
from tunegate.ratelimit import RateLimiter

FAST_HTTP = HttpConfig(connect_timeout=0.5, read_timeout=0.5, total_timeout=1.0, app="tests/1.0")
FAST_RETRY = RetryPolicy(max_attempts=3, base=0.01, cap=0.05, deadline=5.0)


@dataclass(frozen=True)
class Req:
    """A request as a provider client builds it (the pipeline's ``RequestLike``)."""

    provider: str = "test"
    method: str = "GET"
    endpoint_template: str = "/items/{id}"
    path: str = "/items/1"
    params: tuple[tuple[str, str], ...] = ()
    data: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    secret_params: frozenset[str] = frozenset()
    cache_kind: str | None = "test:item"
    cache_parts: tuple[str, ...] = ("1",)


def item(i: int | str, **changes: Any) -> Req:
    return replace(Req(path=f"/items/{i}", cache_parts=(str(i),)), **changes)


@pytest.fixture
def server() -> Iterator[ScriptServer]:
    yield from serve()


MakePipeline = Callable[..., Pipeline]


@pytest.fixture
def make(server: ScriptServer) -> Iterator[MakePipeline]:
    """Build pipelines against ``server`` with fast timeouts, their own pool and registry."""
    made: list[Pipeline] = []

    def factory(**kwargs: Any) -> Pipeline:
        kwargs.setdefault("http", HttpPool("test", FAST_HTTP))
        kwargs.setdefault("registry", CollectorRegistry())
        kwargs.setdefault("retry", FAST_RETRY)
        pipeline = Pipeline(kwargs.pop("provider", "test"), server.url, **kwargs)
        made.append(pipeline)
        return pipeline

    yield factory
    for pipeline in made:
        pipeline.close()


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> str:
    """Run the test once through each driver."""
    return str(request.param)


def invoke(pipeline: Pipeline, request: Req, driver: str, **kwargs: Any) -> Any:
    """One call through the chosen driver (async: on a fresh loop, closed afterwards)."""
    if driver == "sync":
        return pipeline.call(request, **kwargs)

    async def go() -> Any:
        try:
            return await pipeline.acall(request, **kwargs)
        finally:
            await pipeline.aclose()

    return asyncio.run(go())


def catch(pipeline: Pipeline, request: Req, driver: str, **kwargs: Any) -> BaseException:
    """The exception one call raises (fails the test when it returns)."""
    try:
        value = invoke(pipeline, request, driver, **kwargs)
    except Exception as exc:
        return exc
    pytest.fail(f"expected an error, got {value!r}")


def invoke_many(
    pipeline: Pipeline, requests: list[Req], driver: str, links: tuple[Any, ...] = ()
) -> list[Any]:
    """Several calls through one driver (async: on one loop); each result or exception.
    ``links`` are RedisLinks whose asyncio clients are closed before the loop ends."""
    if driver == "sync":
        out: list[Any] = []
        for r in requests:
            try:
                out.append(pipeline.call(r))
            except Exception as exc:
                out.append(exc)
        return out

    async def go() -> list[Any]:
        try:
            return list(
                await asyncio.gather(*(pipeline.acall(r) for r in requests), return_exceptions=True)
            )
        finally:
            await pipeline.aclose()
            for link in links:
                await link.aio.aclose()

    return asyncio.run(go())


@pytest.fixture
def shared(redis_url: str) -> Iterator[dict[str, Any]]:
    """Cache, limiter, breaker and single-flight on one link (the clients' Redis mode), as
    ``make(**shared)`` takes them; single-flight finds the link through the cache."""
    link = RedisLink(redis_url)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=1000.0, capacity=100)
    yield {
        "cache": CacheManager(link),
        "rate_limiter": limiter,
        "circuit_breaker": CircuitBreaker("test", redis=link),
    }
    assert BACKLOG.flush(10)
    link.close()


# -- the backlog held -------------------------------------------------------------------------


class Wait(Effect):
    """Blocks the backlog's worker until ``gate`` is set (bounded)."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def run(self) -> None:
        assert self.gate.wait(10)

    async def arun(self) -> None:  # pragma: no cover - the backlog runs blocking effects
        raise AssertionError


def gated(gate: threading.Event) -> Flow[None]:
    """A backlog job that holds the worker until ``gate`` is set."""
    yield Wait(gate)


@contextmanager
def held(limit: int | None = None) -> Iterator[threading.Event]:
    """The backlog's worker held behind a gate (and the backlog's bound set to ``limit``):
    what calls leave for after their answers waits until the gate opens, whatever the
    scheduling. Ends with the backlog flushed."""
    assert BACKLOG.flush(10)
    gate = threading.Event()
    assert BACKLOG.put(gated(gate))
    old = BACKLOG.limit
    if limit is not None:
        BACKLOG.limit = limit
    try:
        yield gate
    finally:
        BACKLOG.limit = old
        gate.set()
        assert BACKLOG.flush(10)
