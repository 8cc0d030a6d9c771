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
from prometheus_client import CollectorRegistry

from tests.pipeline._server import Reply, ScriptServer
from tests.pipeline._worker import coalesce_worker
from tests.pipeline.conftest import FAST_HTTP, MakePipeline, catch, item
from tunegate._flight import lease_keys, publish_error, read_published
from tunegate._http import HttpPool
from tunegate._policy.retry import RetryPolicy
from tunegate._redis import RedisLink
from tunegate.cache import CacheManager
from tunegate.exceptions import (
    AuthenticationError,
    CircuitBreakerOpenError,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from tunegate.pipeline import Pipeline
from tunegate.testing import FakeClock

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


async def test_use_cache_false_calls_are_not_coalesced(
    server: ScriptServer, make: MakePipeline
) -> None:
    """``use_cache=False`` asks the provider itself, even beside identical calls in flight,
    and still writes the answer for the cached callers."""
    server.script("/items/1", Reply(json={"v": 1}, delay=0.1))
    cache = CacheManager()
    async with make(cache=cache) as pipeline:
        results = await asyncio.gather(
            *(pipeline.acall(item(1), use_cache=False) for _ in range(4))
        )
        assert results == [{"v": 1}] * 4
        assert server.count("/items/1") == 4
        assert await pipeline.acall(item(1)) == {"v": 1}  # written: a hit now
    assert server.count("/items/1") == 4


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


def test_in_process_follower_wait_is_bounded_and_serves_stale(
    server: ScriptServer, make: MakePipeline
) -> None:
    """A follower whose leader is stuck (here in ``parse``) gives up at its own deadline
    (plus the leader's allowance after it, ``AFTER_DEADLINE``) through stale-if-error: its
    stale entry, served."""
    clock = FakeClock()
    cache = CacheManager(clock=clock, ttls={"test:item": 10.0}, jitter=0.0)
    pipeline = make(cache=cache, retry=RetryPolicy(max_attempts=1, deadline=0.3))
    server.script("/items/1", Reply(json={"v": "old"}), Reply(json={"v": "new"}))
    assert pipeline.call(item(1)) == {"v": "old"}
    clock.advance(20.0)  # stale now
    release = threading.Event()

    def stuck(payload: Any) -> Any:
        release.wait(5)
        return payload

    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(pipeline.call, item(1), parse=stuck)
        for _ in range(500):  # until the leader is in flight
            if pipeline.get_stats()["in_flight"]:
                break
            threading.Event().wait(0.01)
        follower = pool.submit(pipeline.call, item(1))
        try:
            assert follower.result(5) == {"v": "old"}
        finally:
            release.set()
        assert leader.result(5) == {"v": "new"}
    assert pipeline.get_stats()["stale_served"] == 1


def test_follower_with_a_stale_entry_serves_it_when_the_leader_fails(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """The leader (which found nothing in the cache, so has no stale entry) fails; its
    follower, which found a stale entry, gets the failure through its own stale-if-error
    and serves that entry."""
    clock = FakeClock()
    cache = CacheManager(clock=clock, ttls={"test:item": 10.0}, jitter=0.0)
    pipeline = make(cache=cache, retry=RetryPolicy(max_attempts=1, deadline=5.0))
    server.script("/items/1", Reply(503, delay=0.3))
    key = pipeline.key(item(1))
    assert key is not None

    def stale_entry_appears() -> None:  # after the leader looked, before the follower does
        cache.store(key, {"v": "old"}, kind="test:item")
        clock.advance(20.0)

    async def both() -> list[Any]:
        try:
            leader = asyncio.create_task(pipeline.acall(item(1)))
            await asyncio.sleep(0.1)
            stale_entry_appears()
            follower = asyncio.create_task(pipeline.acall(item(1)))
            return list(await asyncio.gather(leader, follower, return_exceptions=True))
        finally:
            await pipeline.aclose()

    if driver == "sync":
        with ThreadPoolExecutor(2) as pool:
            leader = pool.submit(catch, pipeline, item(1), "sync")
            threading.Event().wait(0.1)
            stale_entry_appears()
            follower = pool.submit(pipeline.call, item(1))
            results = [leader.result(5), follower.result(5)]
    else:
        results = asyncio.run(both())
    assert isinstance(results[0], ProviderUnavailable)
    assert results[1] == {"v": "old"}
    assert server.count("/items/1") == 1  # the leader's one failing attempt, shared


# -- failures and waits across processes -----------------------------------------------------


@pytest.mark.redis
def test_a_failure_is_shared_across_processes(server: ScriptServer, redis_url: str) -> None:
    """Four pipelines with their own flights (four processes, as far as single-flight can
    tell) on one Redis, against an endpoint that always fails: the leader's retries are the
    only upstream requests; the others get its typed error from the published marker."""
    server.script("/items/1", Reply(503, delay=0.2))
    retry = RetryPolicy(max_attempts=3, base=0.05, cap=0.05, deadline=2.0)
    link = RedisLink(redis_url)
    pipelines = [
        Pipeline(
            "test",
            server.url,
            http=HttpPool("test", FAST_HTTP),
            registry=CollectorRegistry(),
            retry=retry,
            redis=link,
        )
        for _ in range(4)
    ]
    started = threading.Barrier(4)

    def one(i: int) -> BaseException:
        started.wait(5)
        threading.Event().wait(0.02 * i)  # the first one leads
        return catch(pipelines[i], item(1), "sync")

    try:
        with ThreadPoolExecutor(4) as pool:
            errors = list(pool.map(one, range(4)))
    finally:
        for p in pipelines:
            p.close()
        link.close()
    assert [type(e) for e in errors] == [ProviderUnavailable] * 4
    assert [e.status for e in errors if isinstance(e, ProviderError)] == [
        503
    ] * 4  # the marker carries the status
    assert server.count("/items/1") == 3


@pytest.mark.redis
def test_cross_process_wait_is_bounded_by_the_deadline(
    server: ScriptServer, make: MakePipeline, redis_url: str, driver: str
) -> None:
    """Another process holds the lease and never finishes: a caller waits no longer than
    its own deadline, then gives up through stale-if-error (ProviderUnavailable here)."""
    link = RedisLink(redis_url)
    pipeline = make(
        cache=CacheManager(), redis=link, retry=RetryPolicy(max_attempts=2, deadline=0.5)
    )
    client = redis.Redis.from_url(redis_url)
    lease, _ = lease_keys(str(pipeline.key(item(1))))
    client.set(lease, "a-stuck-leader", px=20_000)
    started = time.monotonic()
    try:
        err = catch(pipeline, item(1), driver)
    finally:
        client.close()
        link.sync.close()
    assert isinstance(err, ProviderUnavailable)
    assert err.attempts == 0
    assert server.count() == 0
    assert time.monotonic() - started < 5.0  # generous; without the bound: 20 s lease


def test_error_markers_carry_the_error_but_no_text() -> None:
    """A published failure keeps type, status, code, retry_after and attempts, and none of
    the message (which a hook may have built from a body holding a secret); errors that
    are not outage-like are not published at all."""
    secret = "canary-0d6b94a17"
    error = RateLimited(
        f"quota for key {secret}",
        provider="lastfm",
        endpoint="/2.0/",
        status=200,
        code=29,
        retry_after=7.0,
        attempts=2,
    )
    marker = publish_error(error)
    assert secret.encode() not in marker
    _, back = read_published(marker, "lastfm", "/2.0/", 1_700_000_000.0)
    assert type(back) is RateLimited
    assert (back.status, back.code, back.retry_after, back.attempts) == (200, 29, 7.0, 2)
    assert secret not in str(back)
    weird = MalformedResponse("x", provider="test", code=f"leak {secret}")
    assert secret.encode() not in publish_error(weird)
    _, opened = read_published(
        publish_error(CircuitBreakerOpenError("test", 4.0, 0.0)), "test", "/x", 100.0
    )
    assert isinstance(opened, CircuitBreakerOpenError)
    assert (opened.retry_after, opened.retry_at) == (4.0, 104.0)
    assert publish_error(AuthenticationError("no", provider="test", status=401)) == b""
    assert publish_error(ProviderError("bad request", provider="test", status=400)) == b""
