"""The retry drivers: Retrying.call / .acall and @retry, on a FakeClock (nothing really sleeps)."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Sequence
from typing import Any, assert_type

import pytest

from tests.test_retry_policy import window_violations
from tunegate._policy.retry import GiveUp, Retry, RetryBudget, RetryPolicy
from tunegate.exceptions import (
    AuthenticationError,
    CircuitBreakerOpenError,
    InvalidInput,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RateLimitTimeout,
)
from tunegate.retry import RetryEvent, Retrying, budget_lock, retry
from tunegate.testing import FakeClock

MODES = ["sync", "async"]


class Script:
    """A callable that plays a list of outcomes (raise the exception, or return the value),
    optionally taking ``duration`` seconds of fake time per attempt; sync or async alike."""

    def __init__(
        self, outcomes: Sequence[object], clock: FakeClock | None = None, duration: float = 0.0
    ) -> None:
        self.outcomes = list(outcomes)
        self.clock = clock
        self.duration = duration
        self.calls = 0

    def step(self) -> object:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.duration)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def astep(self) -> object:
        await asyncio.sleep(0)
        return self.step()


async def drive(mode: str, retrying: Retrying, script: Script) -> object:
    """Run ``script`` through the sync or the async driver: the one switch every test uses."""
    if mode == "sync":
        return retrying.call(script.step)
    return await retrying.acall(script.astep)


def down(n: int = 0) -> ProviderUnavailable:
    return ProviderUnavailable(f"down #{n}", provider="spotify", status=503)


def slow_down(retry_after: float) -> RateLimited:
    return RateLimited("slow down", provider="spotify", status=429, retry_after=retry_after)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("jitter", ["full", "decorrelated", "none"])
async def test_drivers_follow_the_policy_schedule_for_a_seeded_rand(
    mode: str, jitter: str, clock: FakeClock
) -> None:
    """Both drivers sleep exactly policy.backoff(1..n) drawn from the same seeded rand."""
    policy = RetryPolicy(max_attempts=5, base=0.5, cap=4.0, jitter=jitter, deadline=None)  # type: ignore[arg-type]
    script = Script([down(1), down(2), down(3), down(4), "ok"])
    retrying = Retrying(policy, clock=clock, rand=random.Random(7).random)

    assert await drive(mode, retrying, script) == "ok"

    rng, previous, expected = random.Random(7), 0.0, []
    for attempt in range(1, 5):
        previous = policy.backoff(attempt, previous, rng.random)
        expected.append(previous)
    assert clock.sleeps == expected
    assert script.calls == 5


async def test_sync_and_async_drivers_sleep_the_same_sequence() -> None:
    """Run side by side with the same seed, the two drivers produce identical sleeps."""
    sleeps = {}
    for mode in MODES:
        clock = FakeClock()
        retrying = Retrying(
            RetryPolicy(max_attempts=6, jitter="decorrelated"),
            clock=clock,
            rand=random.Random(42).random,
        )
        with pytest.raises(ProviderUnavailable):
            await drive(mode, retrying, Script([down()]))
        sleeps[mode] = clock.sleeps
    assert sleeps["sync"] == sleeps["async"]
    assert len(sleeps["sync"]) == 5


@pytest.mark.parametrize("mode", MODES)
async def test_retry_after_is_honoured(mode: str, clock: FakeClock) -> None:
    """A 429 with Retry-After 4.5 s is retried after at least 4.5 s."""
    retrying = Retrying(RetryPolicy(), clock=clock, rand=lambda: 0.0)
    script = Script([slow_down(4.5), "ok"])
    assert await drive(mode, retrying, script) == "ok"
    assert clock.sleeps == [4.5]


@pytest.mark.parametrize("mode", MODES)
async def test_retry_after_beyond_deadline_raises_at_once(mode: str, clock: FakeClock) -> None:
    """A Retry-After of one hour is not slept: the RateLimited error, carrying 3600 s, is
    raised after the first attempt and nothing sleeps."""
    events: list[RetryEvent] = []
    retrying = Retrying(RetryPolicy(deadline=30.0), clock=clock, on_give_up=events.append)
    error = slow_down(3600.0)
    with pytest.raises(RateLimited) as caught:
        await drive(mode, retrying, Script([error, "never reached"]))
    assert caught.value is error
    assert caught.value.retry_after == 3600.0
    assert caught.value.attempts == 1
    assert clock.sleeps == []
    assert clock.monotonic() == 1_000.0
    assert [e.decision for e in events] == [GiveUp("retry_after_beyond_deadline", 3600.0)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("duration", [0.0, 0.7, 3.0])
async def test_deadline_bounds_all_sleeps(
    mode: str, seed: int, duration: float, clock: FakeClock
) -> None:
    """Against a provider that is always down, every sleep ends inside the 10 s deadline."""
    policy = RetryPolicy(max_attempts=50, base=0.5, cap=4.0, deadline=10.0)
    retrying = Retrying(policy, clock=clock, rand=random.Random(seed).random)
    script = Script([down()], clock=clock, duration=duration)
    with pytest.raises(ProviderUnavailable):
        await drive(mode, retrying, script)
    assert sum(clock.sleeps) <= 10.0
    # Each sleep starts after the attempts before it and must end by the deadline.
    assert sum(clock.sleeps) + duration * (script.calls - 1) <= 10.0
    assert script.calls >= 2  # it did retry


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "error",
    [
        NotFound("no such track", provider="spotify", status=404),
        AuthenticationError("bad key", provider="lastfm", code=10),
        InvalidInput("isrc", "must be 12 characters"),
        CircuitBreakerOpenError("spotify", 5.0, 1_700_000_005.0),
        RateLimitTimeout("spotify", 2.0),
        ValueError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_permanent_errors_are_not_retried(
    mode: str, error: Exception, clock: FakeClock
) -> None:
    """Permanent errors are raised after one attempt, with no sleep."""
    script = Script([error, "ok"])
    with pytest.raises(type(error)) as caught:
        await drive(mode, Retrying(clock=clock), script)
    assert caught.value is error
    assert script.calls == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("mode", MODES)
async def test_giving_up_after_attempts_reraises_the_last_error(
    mode: str, clock: FakeClock
) -> None:
    """After max_attempts the last error is re-raised with .attempts set."""
    errors = [down(n) for n in range(1, 5)]
    retrying = Retrying(RetryPolicy(max_attempts=4, deadline=None), clock=clock)
    with pytest.raises(ProviderUnavailable) as caught:
        await drive(mode, retrying, Script(errors))
    assert caught.value is errors[-1]
    assert caught.value.attempts == 4
    assert len(clock.sleeps) == 3


@pytest.mark.parametrize("mode", MODES)
async def test_builtin_connection_errors_are_retried_and_reraised(
    mode: str, clock: FakeClock
) -> None:
    """A bare ConnectionError is transient; after the attempts it comes back unchanged."""
    script = Script([ConnectionResetError("reset")])
    with pytest.raises(ConnectionResetError):
        await drive(mode, Retrying(RetryPolicy(max_attempts=3), clock=clock), script)
    assert script.calls == 3


@pytest.mark.parametrize("mode", MODES)
async def test_hooks_see_every_retry_and_the_give_up(mode: str, clock: FakeClock) -> None:
    """on_retry gets each retry with its delay and reason; on_give_up the final decision."""
    retries: list[RetryEvent] = []
    give_ups: list[RetryEvent] = []
    retrying = Retrying(
        RetryPolicy(max_attempts=3, jitter="none", base=1.0),
        clock=clock,
        on_retry=retries.append,
        on_give_up=give_ups.append,
    )
    with pytest.raises(RateLimited):
        await drive(mode, retrying, Script([down(), slow_down(5.0), slow_down(1.0)]))
    assert [(e.attempt, e.decision) for e in retries] == [
        (1, Retry(1.0, "unavailable")),
        (2, Retry(5.0, "rate_limited", 5.0)),
    ]
    assert all(e.retrying for e in retries)
    assert [(e.attempt, e.decision, e.elapsed) for e in give_ups] == [(3, GiveUp("attempts"), 6.0)]


@pytest.mark.parametrize("mode", MODES)
async def test_budget_limits_retries_in_a_failure_storm(mode: str, clock: FakeClock) -> None:
    """200 calls at 20/s, all failing, 3 retries wanted each: the budget holds retries to
    20% of calls plus the floor over every window, and gives up with "budget"."""
    budget = RetryBudget(ratio=0.2, window=10.0, min_per_second=0.5)
    call_times: list[float] = []
    retry_times: list[float] = []
    give_ups: list[str] = []

    def on_retry(event: RetryEvent) -> None:
        retry_times.append(clock.monotonic())

    def on_give_up(event: RetryEvent) -> None:
        give_ups.append(event.decision.reason)

    retrying = Retrying(
        RetryPolicy(max_attempts=4, base=0.0, cap=0.0, deadline=None),
        budget=budget,
        clock=clock,
        on_retry=on_retry,
        on_give_up=on_give_up,
    )
    for _ in range(200):
        call_times.append(clock.monotonic())
        with pytest.raises(ProviderUnavailable):
            await drive(mode, retrying, Script([down()]))
        clock.advance(0.05)

    assert window_violations(call_times, retry_times, ratio=0.2, window=10.0, floor=5.0) == []
    assert len(retry_times) <= 0.2 * 200 + 5.0
    assert "budget" in give_ups
    assert budget.stats(clock.monotonic())["spent_total"] == len(retry_times)


def test_budget_shared_by_threads_counts_every_retry_once(clock: FakeClock) -> None:
    """Eight threads sharing one budget (through separate Retrying objects) never overspend:
    with ratio 0.25 and no floor, exactly a quarter of the calls get a retry."""
    budget = RetryBudget(ratio=0.25, window=1_000.0, min_per_second=0.0)
    granted: list[RetryEvent] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        retrying = Retrying(
            RetryPolicy(max_attempts=2, base=0.0, cap=0.0, deadline=None),
            budget=budget,
            clock=clock,
            on_retry=granted.append,
        )
        barrier.wait(timeout=10)
        for _ in range(100):
            try:
                retrying.call(Script([down()]).step)
            except ProviderUnavailable:
                pass
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    stats = budget.stats(clock.monotonic())
    assert stats["calls"] == 800
    assert stats["spent_total"] == len(granted) <= 200
    assert stats["spent_total"] + stats["denied_total"] == 800
    assert budget_lock(budget) is budget_lock(budget)


async def test_concurrent_calls_on_one_retrying_keep_their_own_attempts(clock: FakeClock) -> None:
    """Twenty coroutines sharing one Retrying each get their own attempt count."""
    retrying = Retrying(RetryPolicy(max_attempts=3, deadline=None), clock=clock)
    scripts = [Script([down(), down(), n]) for n in range(20)]
    results = await asyncio.gather(*(retrying.acall(s.astep) for s in scripts))
    assert results == list(range(20))
    assert [s.calls for s in scripts] == [3] * 20


@pytest.mark.parametrize("mode", MODES)
async def test_cancellation_is_not_retried(mode: str, clock: FakeClock) -> None:
    """BaseExceptions such as CancelledError and KeyboardInterrupt pass straight through."""
    error: BaseException = asyncio.CancelledError() if mode == "async" else KeyboardInterrupt()
    script = Script([error, "ok"])
    with pytest.raises(type(error)):
        await drive(mode, Retrying(clock=clock), script)
    assert script.calls == 1


async def test_decorator_retries_sync_and_async_functions_and_keeps_types(
    clock: FakeClock,
) -> None:
    """@retry(...) works on def and async def, keeps names and (for mypy) signatures."""
    attempts = {"sync": 0, "async": 0}

    @retry(policy=RetryPolicy(max_attempts=3), clock=clock)
    def get(x: int) -> int:
        attempts["sync"] += 1
        if attempts["sync"] < 3:
            raise down()
        return x * 2

    @retry(clock=clock)
    async def aget(x: int) -> str:
        attempts["async"] += 1
        if attempts["async"] < 2:
            raise TimeoutError
        return str(x)

    doubled = get(2)
    assert_type(doubled, int)
    assert doubled == 4
    text = await aget(3)
    assert_type(text, str)
    assert text == "3"
    assert attempts == {"sync": 3, "async": 2}
    assert get.__name__ == "get"
    assert aget.__name__ == "aget"
    assert asyncio.iscoroutinefunction(aget)


def test_bare_decorator_wraps_with_the_defaults() -> None:
    """@retry without arguments wraps the function (default policy; real clock, so only
    paths that do not sleep are exercised here)."""
    seen: list[str] = []

    @retry
    def lookup(name: str) -> str:
        seen.append(name)
        if name == "missing":
            raise NotFound("no such artist", provider="musicbrainz", status=404)
        return name.upper()

    upper = lookup("abba")
    assert_type(upper, str)
    assert upper == "ABBA"
    with pytest.raises(NotFound):
        lookup("missing")
    assert seen == ["abba", "missing"]
    assert lookup.__wrapped__ is not None  # type: ignore[attr-defined]


def test_provider_error_attempts_set_on_permanent_give_up(clock: FakeClock) -> None:
    """A permanent error after two transient ones reports attempts=3."""
    error = NotFound("gone", provider="spotify", status=404)
    retrying = Retrying(RetryPolicy(), clock=clock)
    with pytest.raises(NotFound) as caught:
        retrying.call(Script([down(), down(), error]).step)
    assert caught.value.attempts == 3


def test_every_attempt_runs_the_whole_callable(clock: FakeClock) -> None:
    """Each attempt calls fn afresh, so a limiter acquire inside fn takes one token per attempt."""
    tokens: list[float] = []

    def attempt() -> Any:
        tokens.append(clock.monotonic())  # stands in for limiter.acquire()
        if len(tokens) < 3:
            raise ProviderError("bad gateway", provider="spotify", status=502)
        return "ok"

    assert Retrying(clock=clock, rand=lambda: 0.5).call(attempt) == "ok"
    assert len(tokens) == 3
