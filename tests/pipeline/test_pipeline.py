"""The request path end to end against a local server: stage order, caching, retries,
stale-if-error, pacing, stats. Each behaviour runs through the sync and the async driver."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from tests.pipeline._server import Reply, ScriptServer
from tests.pipeline.conftest import MakePipeline, Req, catch, invoke, item
from tunegate._drive import Effect, Flow
from tunegate._policy.breaker import Permit
from tunegate._policy.retry import RetryBudget, RetryPolicy
from tunegate.breaker import CircuitBreaker, Verdict
from tunegate.cache import CacheManager
from tunegate.exceptions import (
    AuthenticationError,
    CircuitBreakerOpenError,
    ConfigurationError,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from tunegate.ratelimit import RateLimiter
from tunegate.testing import FakeClock

# -- recorders for the stage-order test ------------------------------------------------------


class RecordingCache(CacheManager):
    def __init__(self, events: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events = events

    def lookup(self, key: str) -> Any:
        self.events.append("cache.lookup")
        return super().lookup(key)

    async def alookup(self, key: str) -> Any:
        self.events.append("cache.lookup")
        return await super().alookup(key)

    def store_flow(self, key: str, value: Any, **kwargs: Any) -> Flow[Any]:
        self.events.append("cache.store")
        return super().store_flow(key, value, **kwargs)


class RecordingLimiter(RateLimiter):
    """Notes each stage the pipeline composes (its flows are what the pipeline runs)."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def acquire_flow(self, provider: str, timeout: float | None = None) -> Flow[float]:
        self.events.append("limiter.acquire")
        return super().acquire_flow(provider, timeout)

    def adjust_flow(
        self, provider: str, headers: Any, status: int | None = None
    ) -> Flow[float | None]:
        self.events.append("limiter.adjust")
        return super().adjust_flow(provider, headers, status)


class RecordingBreaker(CircuitBreaker):
    def __init__(self, events: list[str], **kwargs: Any) -> None:
        super().__init__("test", **kwargs)
        self.events = events

    # The attempts ask admit()/settle() first (no flow for a local breaker); granted's edit.
    def admit(self) -> Permit | None:
        self.events.append("breaker.allow")
        return super().admit()

    def settle(self, permit: Permit, verdict: Verdict) -> Flow[None] | None:
        if verdict != "ignored":
            self.events.append(f"breaker.{verdict}")
        return super().settle(permit, verdict)


def test_stage_order(server: ScriptServer, make: MakePipeline, driver: str) -> None:
    """A miss runs cache, breaker, limiter, HTTP, limiter feedback, breaker record, per
    attempt, then the cache write; a fresh hit touches only the cache."""
    events: list[str] = []
    limiter = RecordingLimiter(events)
    limiter.configure_provider("test", rate=1000.0, capacity=100)
    pipeline = make(
        cache=RecordingCache(events),
        rate_limiter=limiter,
        circuit_breaker=RecordingBreaker(events),
    )
    server.script("/items/1", Reply(503, events=events), Reply(json={"id": 1}, events=events))
    assert invoke(pipeline, item(1), driver) == {"id": 1}
    attempt = ["breaker.allow", "limiter.acquire", "http", "limiter.adjust"]
    assert events == [
        "cache.lookup",
        *attempt,
        "breaker.failure",
        *attempt,
        "breaker.success",
        "cache.store",
    ]
    events.clear()
    assert invoke(pipeline, item(1), driver) == {"id": 1}
    assert events == ["cache.lookup"]


def test_breaker_checked_before_limiter_spends_a_token(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """An open breaker refuses the call before the limiter is asked for a token."""
    events: list[str] = []
    limiter = RecordingLimiter(events)
    limiter.configure_provider("test", rate=1000.0, capacity=100)
    breaker = RecordingBreaker(events, failure_threshold=1)
    pipeline = make(rate_limiter=limiter, circuit_breaker=breaker, retry=RetryPolicy(1))
    server.script("/items/1", Reply(500))
    assert isinstance(catch(pipeline, item(1), driver), ProviderUnavailable)
    events.clear()
    assert isinstance(catch(pipeline, item(1), driver), CircuitBreakerOpenError)
    assert events == ["breaker.allow"]
    assert server.count() == 1


def test_hit_miss_and_negative_caching(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """A 404 is cached as a negative entry and raised as NotFound again without a call."""
    pipeline = make(cache=CacheManager())
    server.script("/items/7", Reply(404, json={"error": "nope"}))
    for _ in range(3):
        err = catch(pipeline, item(7), driver)
        assert isinstance(err, NotFound)
        assert err.provider == "test"
        assert err.endpoint == "/items/{id}"
    assert server.count("/items/7") == 1
    stats = pipeline.get_stats()
    assert stats["negative_hits"] == 2
    assert stats["cache_misses"] == 1


def test_values_come_back_frozen_from_miss_and_hit(make: MakePipeline, driver: str) -> None:
    """A miss and a hit return the same read-only value."""
    pipeline = make(cache=CacheManager())
    first = invoke(pipeline, item(1), driver)
    second = invoke(pipeline, item(1), driver)
    assert first == second == {"ok": True}
    with pytest.raises(TypeError):
        first["ok"] = False


def test_parse_result_is_what_gets_cached(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """``parse`` runs once on the payload; its result is cached; its NotFound caches too."""
    pipeline = make(cache=CacheManager())
    server.script("/items/1", Reply(json={"tracks": {"items": [{"name": "Strobe"}]}}))
    calls: list[Any] = []

    def first_name(payload: Any) -> Any:
        calls.append(payload)
        items = payload["tracks"]["items"]
        if not items:
            raise NotFound("no match", provider="test")
        return items[0]["name"]

    assert invoke(pipeline, item(1), driver, parse=first_name) == "Strobe"
    assert invoke(pipeline, item(1), driver, parse=first_name) == "Strobe"
    assert len(calls) == 1
    server.script("/items/2", Reply(json={"tracks": {"items": []}}))
    assert isinstance(catch(pipeline, item(2), driver, parse=first_name), NotFound)
    assert isinstance(catch(pipeline, item(2), driver, parse=first_name), NotFound)
    assert server.count("/items/2") == 1


def test_use_cache_false_skips_the_read_but_writes(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """``use_cache=False`` always calls upstream and refreshes the cached value."""
    pipeline = make(cache=CacheManager())
    server.script("/items/1", Reply(json={"v": 1}), Reply(json={"v": 2}))
    assert invoke(pipeline, item(1), driver) == {"v": 1}
    assert invoke(pipeline, item(1), driver, use_cache=False) == {"v": 2}
    assert invoke(pipeline, item(1), driver) == {"v": 2}
    assert server.count() == 2


def test_uncached_requests_always_go_upstream(server: ScriptServer, make: MakePipeline) -> None:
    """A request with no cache kind (a token request) is neither cached nor coalesced."""
    pipeline = make(cache=CacheManager())
    token = Req(method="POST", path="/token", endpoint_template="/token", cache_kind=None)
    pipeline.call(token)
    pipeline.call(token)
    assert server.count("/token") == 2
    assert pipeline.key(token) is None


def test_retries_transient_then_gives_up_with_attempts(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """503s are retried up to max_attempts; the error says how many attempts were made."""
    pipeline = make()
    server.script("/items/1", Reply(503))
    err = catch(pipeline, item(1), driver)
    assert isinstance(err, ProviderUnavailable)
    assert err.attempts == 3
    assert err.status == 503
    assert server.count() == 3
    assert pipeline.get_stats()["retries"] == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (403, AuthenticationError), (400, ProviderError)],
)
def test_permanent_errors_are_not_retried(
    server: ScriptServer, make: MakePipeline, status: int, error: type[Exception]
) -> None:
    """Credentials refused or a bad request: one attempt, the typed error."""
    pipeline = make()
    server.script("/items/1", Reply(status))
    err = catch(pipeline, item(1), "sync")
    assert type(err) is error
    assert server.count() == 1


def test_retry_after_beyond_deadline_gives_up_at_once(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """A 429 asking for longer than the deadline is raised at once, carrying retry_after."""
    pipeline = make(retry=RetryPolicy(max_attempts=4, deadline=2.0))
    server.script("/items/1", Reply(429, headers={"Retry-After": "3600"}))
    started = time.monotonic()
    err = catch(pipeline, item(1), driver)
    assert isinstance(err, RateLimited)
    assert err.retry_after == 3600
    assert server.count() == 1
    assert time.monotonic() - started < 2.0


def test_retry_budget_limits_retries(server: ScriptServer, make: MakePipeline) -> None:
    """With an exhausted budget a transient failure is not retried."""
    budget = RetryBudget(ratio=0.0, window=10.0, min_per_second=0.0)
    pipeline = make(retry_budget=budget)
    server.script("/items/1", Reply(503))
    assert isinstance(catch(pipeline, item(1), "sync"), ProviderUnavailable)
    assert server.count() == 1
    assert pipeline.get_stats()["retry_budget"]["denied_total"] == 1


def test_breaker_opening_serves_stale_entries(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """Expired entries are served (marked stale in stats) when the provider fails and, once
    the breaker is open, without any upstream call."""
    clock = FakeClock()
    cache = CacheManager(clock=clock, ttls={"test:item": 10.0}, jitter=0.0)
    breaker = CircuitBreaker("test", failure_threshold=2, timeout=60, clock=clock)
    pipeline = make(cache=cache, circuit_breaker=breaker, clock=clock)
    server.script("/items/1", Reply(json={"v": "old"}), Reply(503))
    assert invoke(pipeline, item(1), driver) == {"v": "old"}
    clock.advance(20.0)  # past the TTL, inside the stale grace
    assert invoke(pipeline, item(1), driver) == {"v": "old"}  # 503, 503: stale served
    assert str(breaker.state) == "open"
    upstream = server.count()
    assert invoke(pipeline, item(1), driver) == {"v": "old"}  # breaker open: no call at all
    assert server.count() == upstream
    stats = pipeline.get_stats()
    assert stats["stale_served"] == 2
    assert stats["breaker_rejections"] == 2  # the 2nd call's 3rd attempt, and the 3rd call
    assert stats["circuit_breaker"]["state"] == "open"
    assert cache.get_stats()["per_provider"]["test"]["stale_hits"] == 2


def test_breaker_open_without_stale_entry_raises(make: MakePipeline, driver: str) -> None:
    """No stale entry: the caller gets CircuitBreakerOpenError (the design's fallback hook)."""
    breaker = CircuitBreaker("test", failure_threshold=1)
    pipeline = make(circuit_breaker=breaker)
    breaker.record_failure(breaker.allow())
    err = catch(pipeline, item(1), driver)
    assert isinstance(err, CircuitBreakerOpenError)


def test_not_found_and_rate_limits_do_not_trip_the_breaker(
    server: ScriptServer, make: MakePipeline
) -> None:
    """404s and 429s are recorded as success / ignored, never as failures."""
    breaker = CircuitBreaker("test", failure_threshold=1)
    pipeline = make(circuit_breaker=breaker, retry=RetryPolicy(1))
    server.script("/items/1", Reply(404))
    server.script("/items/2", Reply(429, headers={"Retry-After": "0"}))
    catch(pipeline, item(1), "sync")
    catch(pipeline, item(2), "sync")
    assert str(breaker.state) == "closed"


def test_429_with_retry_after_paces_every_worker(server: ScriptServer, make: MakePipeline) -> None:
    """After one worker sees 429 Retry-After: 1, no worker's request reaches the provider
    before that second is over, and the limited worker's retry succeeds."""
    limiter = RateLimiter()
    limiter.configure_provider("test", rate=1000.0, capacity=50)
    pipeline = make(rate_limiter=limiter, retry=RetryPolicy(max_attempts=3, deadline=10.0))
    server.script("/items/0", Reply(429, headers={"Retry-After": "1"}), Reply(json={"v": 0}))
    results: dict[int, Any] = {}

    def work(i: int) -> None:
        results[i] = pipeline.call(item(i))

    first = threading.Thread(target=work, args=(0,))
    first.start()
    deadline = time.monotonic() + 5
    while limiter.get_stats()["test"]["paused_until"] is None:  # the 429 has been read
        assert time.monotonic() < deadline, "the 429 never paused the limiter"
        time.sleep(0.005)
    others = [threading.Thread(target=work, args=(i,)) for i in range(1, 6)]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(10)
    assert results == {0: {"v": 0}, **{i: {"ok": True} for i in range(1, 6)}}
    limited_at = server.requests("/items/0")[0].at
    later = [s.at for s in server.requests() if s.at > limited_at]
    assert len(later) == 6
    assert min(later) >= limited_at + 0.95


async def test_429_pacing_async(server: ScriptServer, make: MakePipeline) -> None:
    """The same pacing holds for asyncio tasks."""
    limiter = RateLimiter()
    limiter.configure_provider("test", rate=1000.0, capacity=50)
    async with make(rate_limiter=limiter, retry=RetryPolicy(max_attempts=3)) as pipeline:
        server.script("/items/0", Reply(429, headers={"Retry-After": "1"}), Reply(json={"v": 0}))
        first = asyncio.create_task(pipeline.acall(item(0)))
        for _ in range(500):
            if limiter.get_stats()["test"]["paused_until"] is not None:
                break
            await asyncio.sleep(0.005)
        rest = await asyncio.gather(*(pipeline.acall(item(i)) for i in range(1, 4)))
        assert await first == {"v": 0}
        assert rest == [{"ok": True}] * 3
    limited_at = server.requests("/items/0")[0].at
    later = [s.at for s in server.requests() if s.at > limited_at]
    assert min(later) >= limited_at + 0.95


def test_request_for_another_provider_is_refused(make: MakePipeline) -> None:
    """A request built for another provider never leaves."""
    with pytest.raises(ConfigurationError):
        make().call(item(1, provider="other"))


def test_stats_have_the_design_keys_and_percentiles(
    server: ScriptServer, make: MakePipeline
) -> None:
    """get_stats() carries the design's keys, latency percentiles, breaker and limiter."""
    limiter = RateLimiter()
    pipeline = make(
        cache=CacheManager(),
        rate_limiter=limiter,
        circuit_breaker=CircuitBreaker("test"),
    )
    limiter.configure_provider("test", rate=100.0, capacity=10)
    for i in range(5):
        pipeline.call(item(i))
    pipeline.call(item(0))
    stats = pipeline.get_stats()
    assert stats["cache_hits"] == 1
    assert stats["cache_misses"] == 5
    assert stats["cache_hit_ratio"] == pytest.approx(1 / 6)
    assert stats["api_calls"] == 5
    assert stats["api_errors"] == 0
    lat = stats["latency_ms"]
    assert lat["count"] == 5
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert stats["circuit_breaker"]["state"] == "closed"
    assert stats["rate_limiter"]["capacity"] == 10


# -- cancellation never leaks a half-open probe slot ------------------------------------------


class Stall(Effect):
    """An effect that never ends (as a stalled Redis would); the task is cancelled in it."""

    def run(self) -> None:
        raise AssertionError("async only")

    async def arun(self) -> None:
        await asyncio.sleep(3600)


class StallingBreaker(CircuitBreaker):
    """A breaker whose success record stalls."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__("test", failure_threshold=1, timeout=10.0, clock=clock)
        self.stalled = asyncio.Event()

    def settle(self, permit: Permit, verdict: Verdict) -> Flow[None] | None:
        if verdict == "success":
            return self._stall(permit)
        return super().settle(permit, verdict)

    def _stall(self, permit: Permit) -> Flow[None]:
        self.stalled.set()
        yield Stall()
        yield from super().record_flow(permit, "success")


class StallingLimiter(RateLimiter):
    """A limiter whose header feedback stalls."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = asyncio.Event()

    def adjust_flow(
        self, provider: str, headers: Any, status: int | None = None
    ) -> Flow[float | None]:
        self.stalled.set()
        yield Stall()
        return None


@pytest.mark.parametrize("where", ["breaker record", "limiter feedback"])
async def test_cancelled_probe_gives_its_slot_back(make: MakePipeline, where: str) -> None:
    """A half-open probe whose caller is cancelled while its outcome is being recorded (or
    while the limiter reads the headers) hands its slot back: the next call may probe."""
    clock = FakeClock()
    breaker = StallingBreaker(clock)
    breaker.record_failure(breaker.allow())
    clock.advance(11.0)  # half-open: one probe slot
    limiter = StallingLimiter() if where == "limiter feedback" else None
    if limiter is not None:
        limiter.configure_provider("test", rate=1000.0, capacity=10)
    stalled = breaker.stalled if limiter is None else limiter.stalled
    async with make(circuit_breaker=breaker, rate_limiter=limiter) as pipeline:
        task = asyncio.create_task(pipeline.acall(item(1)))
        await asyncio.wait_for(stalled.wait(), 5)
        assert breaker.get_stats()["half_open_in_flight"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    stats = breaker.get_stats()
    assert (stats["state"], stats["half_open_in_flight"]) == ("half_open", 0)
    breaker.record_ignored(breaker.allow())  # a probe slot is free again
