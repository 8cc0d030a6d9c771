"""The breaker's and the limiter's flows, composed with ``yield from`` under ONE driver loop,
behave as their methods do, on a real Redis (and locally)."""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import Any

import pytest

from tunegate import breaker as breaker_module
from tunegate import ratelimit as ratelimit_module
from tunegate._drive import Effect, Flow, adrive, drive
from tunegate._redis import RedisCall, RedisLink
from tunegate.breaker import CircuitBreaker, Verdict
from tunegate.exceptions import CircuitBreakerOpenError, RateLimitTimeout
from tunegate.ratelimit import RateLimiter

pytestmark = pytest.mark.redis

RETRY_AFTER = {"Retry-After": "30"}


def spied(flow: Flow[Any], seen: list[Effect]) -> Flow[Any]:
    """``flow``, with every effect it yields noted on its way to the driver."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        seen.append(effect)
        value = error = None
        try:
            value = yield effect
        except BaseException as exc:
            error = exc


def one_call(breaker: CircuitBreaker, limiter: RateLimiter, verdict: Verdict) -> Flow[None]:
    """What the request path does around one upstream call, composed, not nested."""
    yield from limiter.acquire_flow("spotify", None)
    permit = yield from breaker.allow_flow()
    yield from breaker.record_flow(permit, verdict)


def scenario_flow(
    breaker: CircuitBreaker, limiter: RateLimiter
) -> Generator[Effect, Any, list[str]]:
    notes: list[str] = []
    for verdict in ("success", "failure", "ignored", "failure"):
        yield from one_call(breaker, limiter, verdict)
    try:
        yield from one_call(breaker, limiter, "success")
    except CircuitBreakerOpenError:
        notes.append("open")
    paused = yield from limiter.adjust_flow("spotify", RETRY_AFTER, 429)
    notes.append(f"paused {paused}")
    try:
        yield from limiter.acquire_flow("spotify", 0.0)
    except RateLimitTimeout:
        notes.append("no token")
    return notes


def scenario_methods(breaker: CircuitBreaker, limiter: RateLimiter) -> list[str]:
    notes: list[str] = []
    for verdict in ("success", "failure", "ignored", "failure"):
        limiter.acquire("spotify")
        permit = breaker.allow()
        getattr(breaker, f"record_{verdict}")(permit)
    try:
        limiter.acquire("spotify")
        breaker.allow()
    except CircuitBreakerOpenError:
        notes.append("open")
    notes.append(f"paused {limiter.adjust_from_headers('spotify', RETRY_AFTER, 429)}")
    try:
        limiter.acquire("spotify", timeout=0.0)
    except RateLimitTimeout:
        notes.append("no token")
    return notes


async def ascenario_methods(breaker: CircuitBreaker, limiter: RateLimiter) -> list[str]:
    notes: list[str] = []
    for verdict in ("success", "failure", "ignored", "failure"):
        await limiter.aacquire("spotify")
        permit = await breaker.aallow()
        await getattr(breaker, f"arecord_{verdict}")(permit)
    try:
        await limiter.aacquire("spotify")
        await breaker.aallow()
    except CircuitBreakerOpenError:
        notes.append("open")
    notes.append(f"paused {await limiter.aadjust_from_headers('spotify', RETRY_AFTER, 429)}")
    try:
        await limiter.aacquire("spotify", timeout=0.0)
    except RateLimitTimeout:
        notes.append("no token")
    return notes


def pair(link: RedisLink | None) -> tuple[CircuitBreaker, RateLimiter]:
    """A breaker and a limiter of their own keys (each scenario starts from scratch)."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    breaker = CircuitBreaker(
        "spotify", redis=link, failure_threshold=2, timeout=60, key_prefix=f"{prefix}cb:"
    )
    limiter = RateLimiter(redis=link, key_prefix=f"{prefix}rl:")
    limiter.configure_provider("spotify", rate=1000.0, capacity=10)
    return breaker, limiter


def observed(breaker: CircuitBreaker, limiter: RateLimiter) -> tuple[Any, ...]:
    b = breaker.get_stats()
    rl = limiter.get_stats()["spotify"]
    return (
        b["state"],
        b["failures"],
        b["shared"],
        b["total_calls"],
        b["total_failures"],
        b["rejected"],
        rl["granted"],
        rl["shared"],
        rl["paused_until"] is not None,
    )


EXPECTED_NOTES = ["open", "paused 30.0", "no token"]


def no_nested_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, a component that starts a driver loop of its own fails the test."""

    def refuse(flow: Any) -> Any:
        flow.close()
        raise AssertionError("a nested driver loop ran")

    async def arefuse(flow: Any) -> Any:
        refuse(flow)

    for module in (breaker_module, ratelimit_module):
        monkeypatch.setattr(module, "drive", refuse)
        monkeypatch.setattr(module, "adrive", arefuse)


def same_end(
    by_flow: tuple[CircuitBreaker, RateLimiter],
    by_methods: tuple[CircuitBreaker, RateLimiter],
    seen: list[Effect],
    *,
    shared: bool,
) -> None:
    """Both ends alike (open after 2 failures of 4 calls); shared, the flow yielded only
    Redis calls; local, nothing at all."""
    assert observed(*by_flow) == observed(*by_methods)
    assert observed(*by_flow)[:5] == ("open", 0, shared, 4, 2)
    if shared:
        assert seen
        assert all(isinstance(e, RedisCall) for e in seen)
    else:
        assert seen == []


def test_composed_flows_match_the_methods_on_shared_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same calls through the methods and through one composed flow driven once leave
    the shared breaker and bucket in the same state; the composed flow's only effects are
    Redis calls (leaves): no component ran a driver loop of its own inside it."""
    link = RedisLink(redis_url)
    try:
        by_methods = pair(link)
        assert scenario_methods(*by_methods) == EXPECTED_NOTES
        by_flow = pair(link)
        seen: list[Effect] = []
        no_nested_loops(monkeypatch)
        assert drive(spied(scenario_flow(*by_flow), seen)) == EXPECTED_NOTES
        monkeypatch.undo()  # get_stats() drives its own flow
        same_end(by_flow, by_methods, seen, shared=True)
    finally:
        link.close()


async def test_composed_flows_match_the_async_methods_on_shared_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with adrive() against the async methods, on the loop's asyncio client."""
    link = RedisLink(redis_url)
    try:
        by_methods = pair(link)
        assert await ascenario_methods(*by_methods) == EXPECTED_NOTES
        by_flow = pair(link)
        seen: list[Effect] = []
        no_nested_loops(monkeypatch)
        assert await adrive(spied(scenario_flow(*by_flow), seen)) == EXPECTED_NOTES
        monkeypatch.undo()  # get_stats() drives its own flow
        same_end(by_flow, by_methods, seen, shared=True)
    finally:
        await link.aclose()
        link.close()


def test_local_flows_need_no_effect() -> None:
    """Without Redis the flows decide in memory: they end without yielding anything."""
    by_methods, by_flow = pair(None), pair(None)
    assert scenario_methods(*by_methods) == EXPECTED_NOTES
    seen: list[Effect] = []
    assert drive(spied(scenario_flow(*by_flow), seen)) == EXPECTED_NOTES
    same_end(by_flow, by_methods, seen, shared=False)


def test_an_unconfigured_provider_fails_before_the_flow_starts() -> None:
    """acquire_flow refuses an unknown provider at once, like acquire()."""
    limiter = RateLimiter()
    with pytest.raises(Exception, match="no rate limit configured"):
        limiter.acquire_flow("nobody", None)
