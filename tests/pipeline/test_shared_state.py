"""The pipeline with its limiter, breaker, cache and single-flight shared through Redis:
pacing across processes, and Redis going away, coming back, or answering with errors."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import pytest

from tests._redis_server import RedisServer
from tests.pipeline._server import Reply, ScriptServer
from tests.pipeline._worker import rate_limited_worker
from tests.pipeline.conftest import MakePipeline, item
from tunegate._policy.retry import RetryPolicy
from tunegate._redis import RedisLink
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.pipeline import Pipeline
from tunegate.ratelimit import RateLimiter

pytestmark = pytest.mark.redis


def shared_pipeline(make: MakePipeline, link: RedisLink) -> Pipeline:
    """Cache, limiter, breaker and single-flight all on ``link``."""
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=1000.0, capacity=100)
    return make(
        cache=CacheManager(link),
        rate_limiter=limiter,
        circuit_breaker=CircuitBreaker("test", redis=link),
    )


def test_429_retry_after_paces_another_process(
    server: ScriptServer, make: MakePipeline, redis_url: str
) -> None:
    """A worker process gets 429 Retry-After: 1 through its pipeline; this process, sharing
    the limiter through Redis, sends nothing before that second is over, and the worker's
    own retry succeeds."""
    server.script("/items/0", Reply(429, headers={"Retry-After": "1"}), Reply(json={"v": 0}))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    worker = ctx.Process(target=rate_limited_worker, args=(server.url, redis_url, out))
    link = RedisLink(redis_url)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=1000.0, capacity=50)
    pipeline = make(rate_limiter=limiter, retry=RetryPolicy(max_attempts=3, deadline=10.0))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while limiter.get_stats()["test"]["paused_until"] is None:  # the 429 has been read
            assert time.monotonic() < deadline, "the worker's 429 never paused the bucket"
            time.sleep(0.005)
        results = [pipeline.call(item(i)) for i in range(1, 4)]
        report = out.get(timeout=30)
    finally:
        worker.join(30)
        link.close()
    assert report == ("ok", {"v": 0})
    assert results == [{"ok": True}] * 3
    limited_at = server.requests("/items/0")[0].at
    later = [s.at for s in server.requests() if s.at > limited_at]
    assert len(later) == 4  # the worker's retry and our three calls
    assert min(later) >= limited_at + 0.95


def test_redis_stopped_and_restarted_mid_run(
    make: MakePipeline, restartable_redis: RedisServer, driver: str
) -> None:
    """Redis goes away and comes back in the middle of a run, for threads and for tasks:
    not one call fails, and the cache is back on Redis afterwards."""
    link = RedisLink(restartable_redis.url, retry_interval=0.2)
    pipeline = shared_pipeline(make, link)
    assert pipeline.cache is not None
    cache = pipeline.cache

    def outage(i: int) -> None:
        if i == 10:
            restartable_redis.stop()
        if i == 20:
            restartable_redis.start()
            time.sleep(0.3)  # past the link's retry interval: the next call tries Redis

    async def run_async() -> list[Any]:
        out = []
        async with pipeline:
            for i in range(30):
                outage(i)
                out.append(await pipeline.acall(item(i % 15)))
            out.append(await pipeline.acall(item(14)))
        return out

    try:
        if driver == "sync":
            results = []
            for i in range(30):
                outage(i)
                results.append(pipeline.call(item(i % 15)))
            results.append(pipeline.call(item(14)))  # written after the restart: a hit
        else:
            results = asyncio.run(run_async())
    finally:
        link.close()
    assert results == [{"ok": True}] * 31
    assert pipeline.get_stats()["api_errors"] == 0
    assert cache.get_stats()["errors"] > 0  # Redis really was gone for part of the run
    assert pipeline.get_stats()["cache_hits"] == 1  # back on Redis after the restart


def test_redis_out_of_memory_fails_no_call(
    server: ScriptServer, make: MakePipeline, restartable_redis: RedisServer, driver: str
) -> None:
    """Redis answers every write with OOM (maxmemory 1, noeviction): cache, limiter,
    breaker and single-flight fall back, and every call the provider can serve succeeds."""
    link = RedisLink(restartable_redis.url)
    pipeline = shared_pipeline(make, link)
    admin = restartable_redis.client()

    async def run_async() -> list[Any]:
        async with pipeline:
            return [await pipeline.acall(item(i)) for i in range(1, 6)]

    try:
        assert pipeline.call(item(0)) == {"ok": True}
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        if driver == "sync":
            results = [pipeline.call(item(i)) for i in range(1, 6)]
        else:
            results = asyncio.run(run_async())
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
        link.close()
    assert results == [{"ok": True}] * 5
    assert server.count() == 6
