"""What a pipeline leaves behind: connections across event loops, sessions of loops that
ended without ``aclose()``, and metrics of a registry nobody uses any more."""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
import weakref

import pytest
from prometheus_client import CollectorRegistry

from tests._redis_server import RedisServer
from tests.pipeline._server import ScriptServer
from tests.pipeline.conftest import FAST_HTTP, item
from tunegate._http import HttpPool, HttpRequest
from tunegate._redis import RedisLink
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.pipeline import Pipeline
from tunegate.ratelimit import RateLimiter

CYCLES = 8


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.redis
def test_async_with_cycles_leave_no_connection_behind(
    server: ScriptServer, restartable_redis: RedisServer
) -> None:
    """``asyncio.run`` after ``asyncio.run``, each using the pipeline inside ``async with``
    (cache, limiter, breaker and single-flight on one Redis): open files and the
    server's client connections stay where they were."""
    link = RedisLink(restartable_redis.url)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=1000.0, capacity=100)
    pipeline = Pipeline(
        "test",
        server.url,
        http=HttpPool("test", FAST_HTTP),
        registry=CollectorRegistry(),
        cache=CacheManager(link),
        rate_limiter=limiter,
        circuit_breaker=CircuitBreaker("test", redis=link),
    )
    probe = restartable_redis.client()

    def redis_clients() -> int:
        return int(probe.info("clients")["connected_clients"])

    async def one(i: int) -> None:
        async with pipeline:
            await pipeline.acall(item(i))

    try:
        asyncio.run(one(0))  # warm: imports, scripts, the sync bridge
        fds, clients = open_fds(), redis_clients()
        for i in range(1, CYCLES + 1):
            asyncio.run(one(i))
        gc.collect()
        assert open_fds() <= fds + 2
        assert redis_clients() <= clients + 1
    finally:
        probe.close()
        pipeline.close()
        link.close()


def test_sessions_of_closed_loops_are_dropped(server: ScriptServer) -> None:
    """A loop that ended without ``aclose()`` does not keep its session (and its
    connections) in the pool for ever: the next new loop drops it."""
    pool = HttpPool("test", FAST_HTTP)
    request = HttpRequest("GET", server.url + "/items/1", "test", "/items/{id}")
    # The dropped sessions say "Unclosed client session" when collected: expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(CYCLES):
            asyncio.run(pool.asend(request))
        kept = len(pool._by_loop)
        pool._by_loop.clear()  # the last loop's session: collected here, inside the block
        gc.collect()
    pool.close()
    assert kept == 1


def test_metrics_go_with_their_registry(server: ScriptServer) -> None:
    """Once no pipeline and nobody else holds a registry, it and its metrics are freed."""
    registry = CollectorRegistry()
    pipeline = Pipeline("test", server.url, http=HttpPool("test", FAST_HTTP), registry=registry)
    gone = weakref.ref(registry)
    del pipeline, registry
    gc.collect()
    assert gone() is None
