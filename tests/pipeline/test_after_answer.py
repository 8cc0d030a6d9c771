"""Work a call leaves for after its answer (the breaker's success record, the cache write
with single-flight's publish and release), and the Redis link it runs on.

The reproduction first: an asyncio connection that sat idle in the pool while Redis was
restarted. A second connection exists as soon as two things talk to Redis at once (a call
and the work it left behind); the first command on it after the restart must not mark the
link down (and so drop a cache write)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from tests._redis_server import RedisServer
from tests.pipeline._server import Reply, ScriptServer
from tests.pipeline.conftest import FAST_HTTP, FAST_RETRY, MakePipeline, Wait, gated, held, item
from tunegate._drive import BACKLOG, AwaitFlight, Backlog, Flow, drive
from tunegate._http import HttpPool
from tunegate._policy.retry import RetryPolicy
from tunegate._redis import DOWN, RedisCall, RedisLink
from tunegate.breaker import CircuitBreaker, CircuitState
from tunegate.cache import CacheManager
from tunegate.exceptions import ProviderUnavailable
from tunegate.pipeline import Pipeline
from tunegate.ratelimit import RateLimiter

pytestmark = pytest.mark.redis


def test_an_idle_asyncio_connection_from_before_a_restart_is_not_an_outage(
    restartable_redis: RedisServer,
) -> None:
    link = RedisLink(restartable_redis.url, retry_interval=60.0)
    ping = RedisCall(link, "test", command=("PING",), down=DOWN)

    async def run() -> list[object]:
        # Two commands at once leave two of the loop's own connections idle.
        assert list(await asyncio.gather(link.aexecute(ping), link.aexecute(ping))) == [True, True]
        assert len(link._loop_conns()._idle) == 2  # the restart finds both idle
        # Restarted while this loop runs no callback: its streams have not seen the EOF.
        restartable_redis.stop()
        restartable_redis.start()
        return [await link.aexecute(ping) for _ in range(3)]

    try:
        assert asyncio.run(run()) == [True, True, True]
        assert link.available
    finally:
        link.close()


def test_asyncio_calls_after_a_restart_are_back_on_redis_at_once(
    server: ScriptServer, make: MakePipeline, restartable_redis: RedisServer
) -> None:
    """The same through the pipeline: concurrent tasks leave several connections in the
    loop's pool; after a restart the cache is back on Redis with the first call (the link
    would otherwise stay down for its whole retry interval, here a minute)."""
    link = RedisLink(restartable_redis.url, retry_interval=60.0)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=1000.0, capacity=100)
    pipeline = make(
        cache=CacheManager(link),
        rate_limiter=limiter,
        circuit_breaker=CircuitBreaker("test", redis=link),
    )

    async def run() -> list[Any]:
        async with pipeline:
            await asyncio.gather(*(pipeline.acall(item(i)) for i in range(4)))
            assert await pipeline.aflush()
            restartable_redis.stop()  # the loop runs nothing meanwhile
            restartable_redis.start()
            first = await pipeline.acall(item(9))
            assert await pipeline.aflush()
            return [first, await pipeline.acall(item(9))]

    try:
        assert asyncio.run(run()) == [{"ok": True}] * 2
        assert link.available
        assert pipeline.get_stats()["cache_hits"] == 1  # the second call of item 9
    finally:
        link.close()


# -- the backlog ----------------------------------------------------------------------------


Cached = Callable[[str | None], bool]


@pytest.fixture
def cached(redis_server: RedisServer) -> Iterator[Cached]:
    """Is this key in Redis now? (asked on a connection of the test's own)"""
    plain = redis_server.client()

    def exists(key: str | None) -> bool:
        assert key is not None
        return bool(plain.exists(key))

    yield exists
    plain.close()


def test_a_full_backlog_leaves_the_work_to_the_caller(
    server: ScriptServer, make: MakePipeline, shared: dict[str, Any], cached: Cached
) -> None:
    pipeline = make(**shared)
    server.script("/items/1", Reply(json={"v": 1}))
    with held(limit=0):  # nothing more fits: the caller writes before it returns
        assert pipeline.call(item(1)) == {"v": 1}
        assert cached(pipeline.key(item(1)))
        assert BACKLOG.busy == 1  # only the gate


def test_a_lookup_takes_over_the_write_this_process_still_owes(
    server: ScriptServer, make: MakePipeline, shared: dict[str, Any]
) -> None:
    """Read-your-writes in one process: the second call of a key, made while the first
    one's write still waits in the backlog (behind a stalled job), runs that write itself
    and hits instead of calling the provider again (it would lead: the lease is this
    process's own)."""
    pipeline = make(**shared)
    server.script("/items/1", Reply(json={"v": 1}))
    with held():
        assert pipeline.call(item(1)) == {"v": 1}
        key = pipeline.key(item(1))
        assert key is not None
        assert BACKLOG.pending(key) is not None
        assert pipeline.call(item(1)) == {"v": 1}
        assert BACKLOG.pending(key) is None  # done, by the second caller
    assert server.count("/items/1") == 1
    assert pipeline.get_stats()["cache_hits"] == 1


def test_the_cache_manager_s_own_lookup_reads_the_write_still_owed(
    server: ScriptServer, make: MakePipeline, shared: dict[str, Any]
) -> None:
    """``CacheManager.lookup``/``alookup`` (and so ``get`` and ``@cache.cached``) see what
    a pipeline of this process answered, even while its write waits in the backlog."""
    pipeline = make(**shared)
    cache = shared["cache"]
    server.script("/items/1", Reply(json={"v": 1}))

    async def look(key: str | None) -> Any:
        assert key is not None
        try:
            return await cache.alookup(key)
        finally:
            if pipeline.redis_link is not None:
                await pipeline.redis_link.aclose()

    with held():
        assert pipeline.call(item(1)) == {"v": 1}
        entry = cache.lookup(pipeline.key(item(1)))
        assert entry is not None
        assert entry.value == {"v": 1}
        assert pipeline.call(item(2)) == {"ok": True}
        entry = asyncio.run(look(pipeline.key(item(2))))
        assert entry is not None


def test_a_second_call_without_cache_follows_the_first_one_s_publish(
    server: ScriptServer, make: MakePipeline, redis_url: str, driver: str
) -> None:
    """No cache, single-flight in Redis: the publish (and the lease release) waits in the
    backlog; an identical call right after must not lead again because the lease is still
    its own process's: it runs the publish first and reads it, as another process would."""
    link = RedisLink(redis_url)
    pipeline = make(redis=link)
    server.script("/items/1", Reply(json={"v": 1}))

    async def twice() -> list[Any]:
        try:
            return [await pipeline.acall(item(1)) for _ in range(2)]
        finally:  # not pipeline.aclose(): it would flush, behind the gate
            await pipeline.http.aclose()
            await link.aclose()

    try:
        with held():
            if driver == "sync":
                answers = [pipeline.call(item(1)) for _ in range(2)]
            else:
                answers = asyncio.run(twice())
        assert answers == [{"v": 1}] * 2
        assert server.count("/items/1") == 1
    finally:
        link.close()


def test_a_second_call_right_after_a_failure_reads_its_error_marker(
    server: ScriptServer, make: MakePipeline, redis_url: str
) -> None:
    """The error marker covers the same call from this process too (no write is owed for a
    failure, but the publish is)."""
    link = RedisLink(redis_url)
    pipeline = make(
        cache=CacheManager(link),
        retry=RetryPolicy(max_attempts=1, base=0.01, cap=0.05, deadline=5.0),
    )
    server.script("/items/1", Reply(status=503, json={}))
    try:
        with held():
            for _ in range(2):
                with pytest.raises(ProviderUnavailable):
                    pipeline.call(item(1))
        assert server.count("/items/1") == 1
    finally:
        link.close()


def test_use_cache_false_writes_after_the_write_still_queued(
    server: ScriptServer, make: MakePipeline, shared: dict[str, Any]
) -> None:
    """A ``use_cache=False`` call writes its own (newer) answer at once: the older answer's
    write still in the backlog must not land over it."""
    pipeline = make(**shared)
    server.script("/items/1", Reply(json={"v": 1}), Reply(json={"v": 2}))
    with held():
        assert pipeline.call(item(1)) == {"v": 1}
        assert pipeline.call(item(1), use_cache=False) == {"v": 2}
    assert pipeline.flush()
    assert pipeline.call(item(1)) == {"v": 2}  # a hit on the newer answer
    assert server.count("/items/1") == 2


def test_closing_a_pipeline_flushes_what_its_calls_left(
    server: ScriptServer, make: MakePipeline, shared: dict[str, Any], cached: Cached
) -> None:
    pipeline = make(**shared)
    server.script("/items/1", Reply(json={"v": 1}))
    seen: list[bool] = []  # was it written when close returned?

    def close() -> None:
        pipeline.close()
        seen.append(cached(pipeline.key(item(1))))

    with held() as gate:
        assert pipeline.call(item(1)) == {"v": 1}
        closing = threading.Thread(target=close)
        closing.start()
        gate.set()
        closing.join(10)
    assert seen == [True]


def test_work_left_by_an_asyncio_call_outlives_its_loop(
    server: ScriptServer, make: MakePipeline, shared: dict[str, Any], cached: Cached
) -> None:
    """``asyncio.run`` cancels the tasks its coroutine leaves: the backlog is no task."""
    pipeline = make(**shared)
    server.script("/items/1", Reply(json={"v": 1}))

    async def one() -> Any:
        value = await pipeline.acall(item(1))
        await pipeline.http.aclose()
        return value

    with held():
        assert asyncio.run(one()) == {"v": 1}  # the loop is gone
    assert cached(pipeline.key(item(1)))  # written after it


def test_a_failing_job_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[int] = []

    def broken() -> Flow[None]:
        yield from ()
        raise RuntimeError("a bug")

    def fine() -> Flow[None]:
        yield from ()
        ran.append(1)

    backlog = Backlog()
    assert backlog.put(broken())
    assert backlog.put(fine())
    assert backlog.flush(10)
    assert ran == [1]
    assert "work left for after an answer failed" in caplog.text


def _mark(ran: list[str], name: str) -> Flow[None]:
    yield from ()
    ran.append(name)


def test_flush_waits_for_the_jobs_given_before_it_not_for_later_ones() -> None:
    """Under a steady stream of calls a flush still ends: it waits for what was given
    (``flush()`` reads the mark ``given`` when it begins; here the mark is passed)."""
    backlog = Backlog()
    first, later = threading.Event(), threading.Event()
    ran: list[str] = []
    try:
        assert backlog.put(gated(first))
        assert backlog.put(_mark(ran, "before"))
        mark = backlog.given
        assert not backlog.flush(0, upto=mark)  # the first job holds it
        assert backlog.put(gated(later))  # given after the mark
        assert backlog.put(_mark(ran, "later"))
        first.set()
        assert backlog.flush(10, upto=mark)  # while the later job still holds the worker
        assert ran == ["before"]
        assert backlog.busy == 2  # the later jobs
    finally:
        first.set()
        later.set()
        assert backlog.flush(10)
    assert ran == ["before", "later"]


def test_a_caller_that_gives_up_settling_leaves_the_rest_to_the_worker() -> None:
    """A caller cancelled while it runs a key's jobs: the ones it did not reach go back to
    the worker (nothing stays pending forever; flush still ends)."""
    backlog = Backlog()
    first, second = threading.Event(), threading.Event()
    ran: list[str] = []
    try:
        assert backlog.put(gated(first))
        assert backlog.put(gated(second), "k")
        assert backlog.put(_mark(ran, "k2"), "k")
        settling = backlog.settled("k", 10)
        assert isinstance(next(settling), Wait)  # it runs the first job of "k"
        settling.close()  # cancelled there
        assert backlog.pending("k") is not None  # "k2" still owed
        first.set()
        assert backlog.flush(10)
        assert ran == ["k2"]
        assert backlog.pending("k") is None
    finally:
        first.set()
        second.set()


def test_flush_waits_for_an_older_job_when_a_later_one_was_taken_over() -> None:
    """``settled`` runs a key's later job ahead of the worker: flush still waits for the
    older one."""
    backlog = Backlog()
    first = threading.Event()
    ran: list[str] = []
    try:
        assert backlog.put(gated(first))
        assert backlog.put(_mark(ran, "k"), "k")
        drive(backlog.settled("k", 10))
        assert ran == ["k"]
        assert backlog.pending("k") is None
        assert not backlog.flush(0)  # the first job still holds the worker
        first.set()
        assert backlog.flush(10)
        assert backlog.busy == 0
    finally:
        first.set()


# -- the breaker's success record -------------------------------------------------------------


def _scripts(plain: redis.Redis) -> int:
    """Scripts the server has run (EVALSHA calls): a breaker record is one."""
    stats = plain.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_successes_waiting_collapse_and_a_failure_sends_the_owed_one_first(
    redis_url: str,
) -> None:
    """Another process counted 2 failures; our success waits in the backlog while our next
    call fails. In Redis the success must come first: failures 1, not 3 (threshold 3 would
    open it). Two owed successes cost one round trip."""
    link, other = RedisLink(redis_url), RedisLink(redis_url)
    here = CircuitBreaker("t", redis=link, failure_threshold=3, cache_ttl=60)
    there = CircuitBreaker("t", redis=other, failure_threshold=3, cache_ttl=0)
    plain = redis.Redis.from_url(redis_url)

    try:
        permit = here.allow()  # a fresh view: CLOSED, nothing counted
        for _ in range(2):
            there.record_failure(there.allow())
        with held():
            before = _scripts(plain)
            for _ in range(2):
                flow = here.settle(here.allow(), "success")
                assert flow is None  # left to the backlog (the second joins the first)
            assert _scripts(plain) == before  # nothing sent yet
            drive(here.record_flow(permit, "failure"))
            assert _scripts(plain) == before + 2  # the owed success, then the failure
            assert there.get_stats()["failures"] == 1  # (a peek: one script call more)
        assert _scripts(plain) == before + 3  # the backlog's job found nothing owed
        assert there.state is CircuitState.CLOSED
    finally:
        plain.close()
        link.close()
        other.close()


def test_a_failure_waits_for_the_owed_success_whose_script_is_in_flight(
    redis_url: str,
) -> None:
    """The worker took the owed success and its script is on the wire when our next call
    fails: the failure must reach Redis after it (failures 1 there), not before it (the
    success would then clear it: failures 0)."""
    link, other = RedisLink(redis_url), RedisLink(redis_url)
    here = CircuitBreaker("t", redis=link, failure_threshold=3, cache_ttl=60)
    there = CircuitBreaker("t", redis=other, failure_threshold=3, cache_ttl=0)
    try:
        permit = here.allow()
        with held():
            assert here.settle(here.allow(), "success") is None  # owed
            paying = here._pay_owed()  # what the worker's job runs: taken, script in flight
            in_flight = next(paying)
            failing = here.record_flow(permit, "failure")
            landed: list[str] = []

            def land_the_success() -> None:
                if not landed:
                    landed.append("success")
                    with contextlib.suppress(StopIteration):
                        paying.send(in_flight.run())

            effect = next(failing)
            first = effect
            with contextlib.suppress(StopIteration):
                while True:
                    if isinstance(effect, AwaitFlight):  # it waits: the success lands now
                        land_the_success()
                    effect = failing.send(effect.run())
            land_the_success()  # (without the wait: after the failure)
        assert there.get_stats()["failures"] == 1
        assert isinstance(first, AwaitFlight)
    finally:
        link.close()
        other.close()


def test_a_success_left_for_later_still_clears_another_process_failures(
    redis_url: str,
) -> None:
    link, other = RedisLink(redis_url), RedisLink(redis_url)
    here = CircuitBreaker("t", redis=link, failure_threshold=3, cache_ttl=60)
    there = CircuitBreaker("t", redis=other, failure_threshold=3, cache_ttl=0)
    try:
        here.allow()
        there.record_failure(there.allow())
        assert here.settle(here.allow(), "success") is None
        assert BACKLOG.flush(10)
        assert there.get_stats()["failures"] == 0
    finally:
        link.close()
        other.close()


def test_with_threshold_one_a_success_costs_no_round_trip_at_all(redis_url: str) -> None:
    """policy.success_counts(): with failure_threshold 1 nothing is ever counted in CLOSED,
    so a success is reported nowhere, now or later; a failure still opens it for all."""
    link, other = RedisLink(redis_url), RedisLink(redis_url)
    here = CircuitBreaker("one", redis=link, failure_threshold=1)
    there = CircuitBreaker("one", redis=other, failure_threshold=1, cache_ttl=0)
    plain = redis.Redis.from_url(redis_url)

    try:
        here.allow()  # the view
        before = _scripts(plain)
        assert here.settle(here.allow(), "success") is None
        here.record_success(here.allow())
        assert BACKLOG.flush(10)
        assert _scripts(plain) == before
        here.record_failure(here.allow())
        assert there.state is CircuitState.OPEN
    finally:
        plain.close()
        link.close()
        other.close()


# -- forked children --------------------------------------------------------------------------


def test_a_forked_child_sends_its_own_successes(redis_url: str) -> None:
    """The parent owed a success at fork (its job waits in the parent's backlog): the
    child's own successes must still reach Redis, from the child's backlog."""
    link, other = RedisLink(redis_url), RedisLink(redis_url)
    here = CircuitBreaker("t", redis=link, failure_threshold=3, cache_ttl=60)
    there = CircuitBreaker("t", redis=other, failure_threshold=3, cache_ttl=0)
    try:
        here.allow()  # a fresh view: CLOSED, nothing counted
        with held():
            assert here.settle(here.allow(), "success") is None  # owed, behind the gate
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never back into pytest
                code = 1
                try:
                    for _ in range(2):
                        there.record_failure(there.allow())
                    assert here.settle(here.allow(), "success") is None
                    assert BACKLOG.flush(10)
                    os.write(write, str(there.get_stats()["failures"]).encode())
                    code = 0
                finally:
                    os._exit(code)
            os.close(write)
            _, status = os.waitpid(pid, 0)
            failures = os.read(read, 16)
            os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert failures == b"0"  # the child's success cleared them
    finally:
        link.close()
        other.close()


def _child_call(redis_url: str, base: str, i: int) -> None:
    """A multiprocessing child: one miss, whose write waits in the backlog (behind a job
    held until the child's exit finalizers begin) when the target returns."""
    from multiprocessing.util import Finalize

    gate = threading.Event()
    Finalize(None, gate.set, exitpriority=20)  # runs before the backlog's flush (10)
    assert BACKLOG.put(gated(gate))
    link = RedisLink(redis_url)
    pipeline = Pipeline(
        "test",
        base,
        cache=CacheManager(link),
        http=HttpPool("test", FAST_HTTP),
        registry=CollectorRegistry(),
        retry=FAST_RETRY,
    )
    assert pipeline.call(item(i)) == {"ok": True}
    pipeline.http.close()


def test_a_multiprocessing_child_writes_what_it_owes_before_it_ends(
    server: ScriptServer, redis_server: RedisServer
) -> None:
    """A multiprocessing (fork) child ends with os._exit: no atexit. Its exit finalizers
    flush the backlog: the writes land and the leases are released."""
    context = multiprocessing.get_context("fork")
    plain = redis_server.client()
    try:
        for i in range(3):
            child = context.Process(target=_child_call, args=(redis_server.url, server.url, i))
            child.start()
            child.join(30)
            assert child.exitcode == 0
        keys = sorted(k if isinstance(k, str) else k.decode() for k in plain.keys("*"))
        assert len([k for k in keys if k.startswith("tunegate:v1:")]) == 3
        assert [k for k in keys if ":sf:" in k and not k.endswith(":result")] == []
    finally:
        plain.close()
