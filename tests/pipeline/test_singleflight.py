"""Single-flight: concurrent identical misses share one upstream call, within a process
(threads and asyncio tasks) and across processes through a Redis lease."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from tests._redis_server import RedisServer
from tests.pipeline._server import Reply, ScriptServer
from tests.pipeline._worker import coalesce_worker
from tests.pipeline.conftest import MakePipeline, catch, item
from tunegate._policy.retry import RetryPolicy
from tunegate._redis import RedisLink
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.exceptions import NotFound, ProviderUnavailable
from tunegate.ratelimit import RateLimiter

N = 50


def test_50_threads_make_one_upstream_call(server: ScriptServer, make: MakePipeline) -> None:
    """50 threads missing the same key at once: one request upstream, 50 equal answers."""
    pipeline = make(cache=CacheManager())
    server.script("/items/1", Reply(json={"v": 1}, delay=0.2))
    barrier = threading.Barrier(N)

    def one(_: int) -> Any:
        barrier.wait(10)
        return pipeline.call(item(1))

    with ThreadPoolExecutor(N) as pool:
        results = list(pool.map(one, range(N)))
    assert results == [{"v": 1}] * N
    assert server.count("/items/1") == 1
    assert pipeline.get_stats()["coalesced"] == N - 1


async def test_50_tasks_make_one_upstream_call(server: ScriptServer, make: MakePipeline) -> None:
    """50 asyncio tasks missing the same key at once: one request upstream."""
    server.script("/items/1", Reply(json={"v": 1}, delay=0.2))
    async with make(cache=CacheManager()) as pipeline:
        results = await asyncio.gather(*(pipeline.acall(item(1)) for _ in range(N)))
    assert results == [{"v": 1}] * N
    assert server.count("/items/1") == 1
    assert pipeline.get_stats()["coalesced"] == N - 1


def test_threads_and_tasks_coalesce_together(server: ScriptServer, make: MakePipeline) -> None:
    """A thread and tasks on another thread's event loop share one flight."""
    pipeline = make(cache=CacheManager())
    server.script("/items/1", Reply(json={"v": 1}, delay=0.3))

    async def tasks() -> list[Any]:
        try:
            return list(await asyncio.gather(*(pipeline.acall(item(1)) for _ in range(10))))
        finally:
            await pipeline.aclose()

    with ThreadPoolExecutor(11) as pool:
        threads = [pool.submit(pipeline.call, item(1)) for _ in range(10)]
        looped = pool.submit(asyncio.run, tasks())
        results = [f.result(10) for f in threads] + looped.result(10)
    assert results == [{"v": 1}] * 20
    assert server.count("/items/1") == 1


def test_failures_are_shared_too(server: ScriptServer, make: MakePipeline) -> None:
    """Followers of a failing leader get its typed error; the failure costs one call chain."""
    pipeline = make(retry=RetryPolicy(max_attempts=1))
    server.script("/items/1", Reply(404, delay=0.2))

    def one(_: int) -> BaseException:
        return catch(pipeline, item(1), "sync")

    with ThreadPoolExecutor(10) as pool:
        errors = list(pool.map(one, range(10)))
    assert all(isinstance(e, NotFound) for e in errors)
    assert server.count() == 1


async def test_cancelled_leader_hands_over(server: ScriptServer, make: MakePipeline) -> None:
    """When the leading task is cancelled a follower leads instead; nobody hangs."""
    server.script("/items/1", Reply(json={"v": 1}, delay=0.3))
    async with make() as pipeline:
        leader = asyncio.create_task(pipeline.acall(item(1)))
        await asyncio.sleep(0.05)
        follower = asyncio.create_task(pipeline.acall(item(1)))
        await asyncio.sleep(0.05)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        assert await asyncio.wait_for(follower, 5) == {"v": 1}
    assert server.count("/items/1") == 2


def test_cancelling_a_follower_leaves_the_flight_alone(
    server: ScriptServer, make: MakePipeline
) -> None:
    """A follower that is cancelled does not cancel the leader or the other followers."""
    pipeline = make()
    server.script("/items/1", Reply(json={"v": 1}, delay=0.3))

    async def go() -> list[Any]:
        try:
            tasks = [asyncio.create_task(pipeline.acall(item(1))) for _ in range(3)]
            await asyncio.sleep(0.05)
            tasks[1].cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await pipeline.aclose()

    results = asyncio.run(go())
    assert results[0] == results[2] == {"v": 1}
    assert isinstance(results[1], asyncio.CancelledError)
    assert server.count() == 1


# -- across processes ------------------------------------------------------------------------


@pytest.mark.redis
def test_two_processes_coalesce_through_redis(server: ScriptServer, redis_url: str) -> None:
    """Two processes, each with its own memory cache, miss the same key at once: one
    upstream call; the follower gets the leader's answer through Redis."""
    server.script("/items/1", Reply(json={"v": "shared"}, delay=0.3))
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=coalesce_worker, args=(server.url, redis_url, go, out)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    try:
        assert [out.get(timeout=30) for _ in procs] == ["ready", "ready"]
        go.set()
        reports = [out.get(timeout=30) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    assert [r[:2] for r in reports] == [("ok", {"v": "shared"})] * 2
    assert sorted(r[2] for r in reports) == [0, 1]  # one leader, one coalesced follower
    assert server.count("/items/1") == 1


@pytest.mark.redis
def test_follower_takes_over_from_a_dead_leader(
    server: ScriptServer, make: MakePipeline, redis_url: str, driver: str
) -> None:
    """A lease held by a leader that never finishes expires; the waiting caller takes over,
    makes the call itself, and the call succeeds."""
    link = RedisLink(redis_url)
    pipeline = make(cache=CacheManager(), redis=link)
    key = pipeline.key(item(1))
    client = redis.Redis.from_url(redis_url)
    client.set(f"tunegate:sf:{{{key}}}", "dead-leader", px=400)  # a leader that died
    try:
        if driver == "sync":
            assert pipeline.call(item(1)) == {"ok": True}
        else:

            async def go() -> Any:
                try:
                    return await pipeline.acall(item(1))
                finally:
                    await pipeline.aclose()
                    await link.aio.aclose()

            assert asyncio.run(go()) == {"ok": True}
    finally:
        client.close()
        link.sync.close()
    assert server.count("/items/1") == 1
    assert pipeline.get_stats()["coalesced"] == 1


@pytest.mark.redis
def test_redis_stopped_and_restarted_mid_run(
    server: ScriptServer, make: MakePipeline, restartable_redis: RedisServer
) -> None:
    """Cache, limiter, breaker and single-flight all on Redis; Redis goes away and comes
    back in the middle of a run: not one call fails."""
    link = RedisLink(restartable_redis.url, retry_interval=0.2)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=1000.0, capacity=100)
    cache = CacheManager(link)
    pipeline = make(
        cache=cache,
        rate_limiter=limiter,
        circuit_breaker=CircuitBreaker("test", redis=link),
    )
    results = []
    try:
        for i in range(30):
            if i == 10:
                restartable_redis.stop()
            if i == 20:
                restartable_redis.start()
                time.sleep(0.3)  # past the link's retry interval: the next call tries Redis
            results.append(pipeline.call(item(i % 15)))
        results.append(pipeline.call(item(14)))  # written after the restart: a hit
    finally:
        link.sync.close()
    assert results == [{"ok": True}] * 31
    assert pipeline.get_stats()["api_errors"] == 0
    assert cache.get_stats()["errors"] > 0  # Redis really was gone for part of the run
    assert pipeline.get_stats()["cache_hits"] == 1  # back on Redis after the restart


def test_follower_wait_is_bounded(server: ScriptServer, make: MakePipeline) -> None:
    """A follower whose leader never answers gets ProviderUnavailable, not a hang."""
    pipeline = make(retry=RetryPolicy(max_attempts=1, deadline=0.5))
    pipeline._follow_timeout = 0.3  # a stuck leader: shorter than the server's delay
    server.script("/items/1", Reply(json={"v": 1}, delay=0.8))
    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(catch, pipeline, item(1), "sync")
        threading.Event().wait(0.1)
        follower = pool.submit(catch, pipeline, item(1), "sync")
        assert isinstance(follower.result(5), ProviderUnavailable)
        assert isinstance(leader.result(5), ProviderUnavailable)
