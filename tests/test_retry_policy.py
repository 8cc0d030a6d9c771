"""The sans-IO retry policy: schedules, jitter bounds, classification, decisions, budget."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunegate._policy.retry import (
    TRUNCATED,
    GiveUp,
    Retry,
    RetryBudget,
    RetryPolicy,
    is_transient,
    retry_after_of,
    transient_reason,
)
from tunegate.exceptions import (
    AuthenticationError,
    CircuitBreakerOpenError,
    ConfigurationError,
    InvalidInput,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RateLimitTimeout,
)
from tunegate.providers import lastfm

FAST = settings(max_examples=200, deadline=None)
unit = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def const(x: float) -> Callable[[], float]:
    return lambda: x


def unavailable(**kw: object) -> ProviderUnavailable:
    return ProviderUnavailable("down", provider="spotify", status=503, **kw)  # type: ignore[arg-type]


def rate_limited(retry_after: float | None) -> RateLimited:
    return RateLimited("slow down", provider="spotify", status=429, retry_after=retry_after)


def window_violations(
    calls: Sequence[float],
    retries: Sequence[float],
    *,
    ratio: float,
    window: float,
    floor: float,
) -> list[tuple[float, int, int]]:
    """Every granted retry at ``s`` where retries in [s-window, s] exceed ratio*calls + floor
    (exact count over the window ending at that retry; 1e-9 slack for float slicing)."""
    bad = []
    for s in retries:
        n_retries = sum(1 for t in retries if s - window - 1e-9 <= t <= s)
        n_calls = sum(1 for t in calls if s - window + 1e-9 <= t <= s)
        if n_retries > ratio * n_calls + floor + 1e-6:
            bad.append((s, n_retries, n_calls))
    return bad


# --- schedule and jitter -------------------------------------------------------------


def test_no_jitter_schedule_doubles_up_to_the_cap() -> None:
    """jitter="none": base, 2*base, 4*base ... and never above cap."""
    policy = RetryPolicy(base=0.5, cap=3.0, jitter="none")
    delays = [policy.backoff(n, 0.0, const(0.7)) for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


@FAST
@given(
    attempt=st.integers(min_value=1, max_value=2_000),
    base=st.floats(min_value=0.0, max_value=10.0),
    extra=st.floats(min_value=0.0, max_value=100.0),
    r=unit,
)
def test_full_jitter_stays_within_zero_and_the_exponential_ceiling(
    attempt: int, base: float, extra: float, r: float
) -> None:
    """Full jitter draws in [0, min(cap, base*2**(n-1))], even for huge attempt numbers."""
    policy = RetryPolicy(base=base, cap=base + extra, jitter="full")
    delay = policy.backoff(attempt, 0.0, const(r))
    ceiling = policy.cap if attempt > 60 else min(policy.cap, base * 2.0 ** (attempt - 1))
    assert 0.0 <= delay <= ceiling
    assert math.isclose(delay, r * ceiling, rel_tol=1e-12, abs_tol=1e-12)


def test_full_jitter_spans_its_range() -> None:
    """rand near 0 gives ~0 and rand near 1 gives ~the ceiling (the jitter really is full)."""
    policy = RetryPolicy(base=1.0, cap=30.0)
    assert policy.backoff(3, 0.0, const(0.0)) == 0.0
    assert policy.backoff(3, 0.0, const(0.999999)) == pytest.approx(4.0, rel=1e-5)


@FAST
@given(
    attempt=st.integers(min_value=1, max_value=50),
    base=st.floats(min_value=0.001, max_value=10.0),
    extra=st.floats(min_value=0.0, max_value=100.0),
    previous=st.floats(min_value=0.0, max_value=1_000.0),
    r=unit,
)
def test_decorrelated_jitter_stays_within_base_and_three_times_previous(
    attempt: int, base: float, extra: float, previous: float, r: float
) -> None:
    """Decorrelated jitter draws in [base, min(cap, 3*previous)] (previous below base counts
    as base)."""
    policy = RetryPolicy(base=base, cap=base + extra, jitter="decorrelated")
    delay = policy.backoff(attempt, previous, const(r))
    assert base <= delay <= min(policy.cap, 3.0 * max(previous, base))


def test_decorrelated_chain_grows_from_previous_delay() -> None:
    """Fed its own output, decorrelated jitter with rand near 1 roughly triples until the cap."""
    policy = RetryPolicy(base=1.0, cap=20.0, jitter="decorrelated")
    previous, seen = 0.0, []
    for n in range(1, 6):
        previous = policy.backoff(n, previous, const(0.999))
        seen.append(round(previous, 1))
    assert seen == [3.0, 9.0, 20.0, 20.0, 20.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"base": -1.0},
        {"base": math.nan},
        {"base": 2.0, "cap": 1.0},
        {"jitter": "equal"},
        {"deadline": 0.0},
        {"max_retry_after": -1.0},
    ],
)
def test_bad_policy_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Impossible settings fail at construction with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- classification ------------------------------------------------------------------

TRANSIENT = [
    (rate_limited(2.0), "rate_limited"),
    (unavailable(), "unavailable"),
    (ProviderUnavailable("t", provider="musicbrainz"), "unavailable"),
    (TimeoutError("read timed out"), "timeout"),
    (ConnectionResetError("reset"), "connection"),
    (ConnectionError("refused"), "connection"),
    (ProviderError("x", provider="spotify", status=502), "unavailable"),
    (ProviderError("x", provider="spotify", status=429), "rate_limited"),
    # Last.fm's codes, as its hook maps them at the boundary (often inside an HTTP 200).
    (lastfm.classify_body_error({"error": 29, "message": "Rate Limit Exceeded"}), "rate_limited"),
    (lastfm.classify_body_error({"error": "29", "message": "x"}), "rate_limited"),
    (lastfm.classify_body_error({"error": 8, "message": "Operation failed"}), "unavailable"),
    (lastfm.classify_body_error({"error": 11, "message": "Service Offline"}), "unavailable"),
    (lastfm.classify_body_error({"error": 16, "message": "Temporary error"}), "unavailable"),
    (MalformedResponse("cut", provider="spotify", status=200, code=TRUNCATED), "truncated"),
    (MalformedResponse("bad gateway page", provider="spotify", status=502), "unavailable"),
]

PERMANENT = [
    NotFound("no such track", provider="spotify", status=404),
    AuthenticationError("bad key", provider="lastfm", status=403, code=10),
    InvalidInput("isrc", "must be 12 characters"),
    CircuitBreakerOpenError("spotify", 5.0, 1_700_000_005.0),
    RateLimitTimeout("spotify", 3.0),
    MalformedResponse("invalid JSON", provider="spotify", status=200),
    ProviderError("x", provider="lastfm", status=400, code=6),
    ProviderError("x", provider="spotify", status=200, code=29),  # 29 means something on Last.fm
    # ... but only once its hook made it a RateLimited: the generic policy reads no codes.
    ProviderError("x", provider="lastfm", status=200, code=29),
    lastfm.classify_body_error({"error": 6, "message": "Track not found"}),
    ProviderError("x", provider="spotify", status=400),
    ValueError("a bug in the caller"),
    KeyError("also a bug"),
]


@pytest.mark.parametrize(("error", "reason"), TRANSIENT, ids=lambda v: repr(v)[:40])
def test_transient_errors_are_classified_with_a_reason(error: BaseException, reason: str) -> None:
    """Connection errors, timeouts, 429/5xx and Last.fm 8/11/16/29 (as its hook maps them)
    are transient."""
    assert transient_reason(error) == reason
    assert is_transient(error)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda v: repr(v)[:40])
def test_permanent_errors_are_not_transient(error: BaseException) -> None:
    """Not found, auth, bad input, our own breaker/limiter refusals and bugs are never retried."""
    assert not is_transient(error)
    decision = RetryPolicy().decide(
        attempt=1, error=error, elapsed=0.0, previous_delay=0.0, rand=const(0.5)
    )
    assert decision == GiveUp("permanent")


def test_error_raised_from_a_dropped_connection_keeps_the_cause_as_reason() -> None:
    """ProviderUnavailable/MalformedResponse raised from a builtin timeout or reset say so."""
    timeout = ProviderUnavailable("timeout", provider="spotify")
    timeout.__cause__ = TimeoutError("read")  # as `raise ... from` sets it
    short = MalformedResponse("short body", provider="spotify", status=200)
    short.__cause__ = ConnectionResetError("peer closed mid-body")
    assert transient_reason(timeout) == "timeout"
    assert transient_reason(short) == "truncated"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2.5, 2.5), (3, 3.0), (-1.0, 0.0), (None, None), (math.nan, None), (True, None), ("5", None)],
)
def test_retry_after_of_reads_only_real_numbers(value: object, expected: float | None) -> None:
    """retry_after_of takes .retry_after when it is a number, clamps negatives, ignores junk."""
    err = ProviderError("x", provider="spotify")
    err.retry_after = value  # type: ignore[assignment]
    assert retry_after_of(err) == expected
    assert retry_after_of(ValueError()) is None


# --- decisions -----------------------------------------------------------------------


def test_transient_error_is_retried_after_the_backoff() -> None:
    """A 503 on attempt 1 of 4 is retried after backoff(1)."""
    policy = RetryPolicy(base=1.0, jitter="none")
    decision = policy.decide(
        attempt=1, error=unavailable(), elapsed=0.2, previous_delay=0.0, rand=const(0.5)
    )
    assert decision == Retry(1.0, "unavailable")


def test_attempts_are_counted_including_the_first() -> None:
    """max_attempts=3: attempts 1 and 2 may retry, attempt 3 gives up."""
    policy = RetryPolicy(max_attempts=3, deadline=None)
    kinds = [
        type(policy.decide(attempt=n, error=unavailable(), elapsed=0.0, previous_delay=0.0,
                           rand=const(0.5))).__name__
        for n in (1, 2, 3)
    ]  # fmt: skip
    assert kinds == ["Retry", "Retry", "GiveUp"]


def test_retry_after_raises_the_delay_to_what_the_provider_asked() -> None:
    """delay = max(retry_after, backoff): a 7 s Retry-After beats a 0.5 s backoff."""
    decision = RetryPolicy().decide(
        attempt=1, error=rate_limited(7.0), elapsed=0.0, previous_delay=0.0, rand=const(0.9)
    )
    assert decision == Retry(7.0, "rate_limited", 7.0)


def test_retry_after_beyond_the_deadline_gives_up_with_the_retry_time() -> None:
    """Retry-After 3600 s against a 30 s deadline: give up at once, carrying 3600."""
    decision = RetryPolicy().decide(
        attempt=1, error=rate_limited(3600.0), elapsed=1.0, previous_delay=0.0, rand=const(0.1)
    )
    assert decision == GiveUp("retry_after_beyond_deadline", 3600.0)


def test_retry_after_beyond_what_is_left_of_the_deadline_gives_up() -> None:
    """Retry-After 20 s fits a 30 s deadline at the start but not 15 s in."""
    policy = RetryPolicy(deadline=30.0)
    args = {"attempt": 1, "error": rate_limited(20.0), "previous_delay": 0.0, "rand": const(0.0)}
    assert isinstance(policy.decide(elapsed=0.0, **args), Retry)  # type: ignore[arg-type]
    assert policy.decide(elapsed=15.0, **args).reason == "retry_after_beyond_deadline"  # type: ignore[arg-type]


def test_retry_after_beyond_max_retry_after_gives_up_even_without_deadline() -> None:
    """With no deadline, max_retry_after still stops an hour-long wait (spotipy's bug)."""
    policy = RetryPolicy(deadline=None, max_retry_after=60.0)
    decision = policy.decide(
        attempt=1, error=rate_limited(3600.0), elapsed=0.0, previous_delay=0.0, rand=const(0.1)
    )
    assert decision == GiveUp("retry_after_beyond_deadline", 3600.0)


def test_backoff_that_would_overshoot_the_deadline_gives_up() -> None:
    """A 4 s backoff with 3 s of deadline left gives up with "deadline"."""
    policy = RetryPolicy(base=1.0, jitter="none", deadline=10.0, max_attempts=10)
    decision = policy.decide(
        attempt=3, error=unavailable(), elapsed=7.0, previous_delay=2.0, rand=const(0.5)
    )
    assert decision == GiveUp("deadline")


def test_deadline_already_passed_gives_up() -> None:
    """An attempt that failed after the deadline is not retried, even with a zero backoff."""
    policy = RetryPolicy(base=0.0, cap=0.0, deadline=5.0)
    decision = policy.decide(
        attempt=1, error=unavailable(), elapsed=5.0, previous_delay=0.0, rand=const(0.0)
    )
    assert decision == GiveUp("deadline")


def test_exhausted_budget_gives_up() -> None:
    """budget_ok=False turns a retry into GiveUp("budget")."""
    decision = RetryPolicy().decide(
        attempt=1,
        error=unavailable(),
        elapsed=0.0,
        previous_delay=0.0,
        rand=const(0.5),
        budget_ok=False,
    )
    assert decision == GiveUp("budget")


def test_budget_callable_is_consulted_only_when_a_retry_would_happen() -> None:
    """A callable budget_ok is not called (nothing spent) for permanent errors or the last
    attempt, and is called once for a real retry."""
    policy = RetryPolicy(max_attempts=2)
    asked: list[int] = []

    def ok() -> bool:
        asked.append(1)
        return True

    common = {"elapsed": 0.0, "previous_delay": 0.0, "rand": const(0.5), "budget_ok": ok}
    policy.decide(attempt=1, error=NotFound("x", provider="spotify"), **common)  # type: ignore[arg-type]
    policy.decide(attempt=2, error=unavailable(), **common)  # type: ignore[arg-type]
    assert asked == []
    assert isinstance(policy.decide(attempt=1, error=unavailable(), **common), Retry)  # type: ignore[arg-type]
    assert asked == [1]


@FAST
@given(
    jitter=st.sampled_from(["full", "decorrelated", "none"]),
    attempt=st.integers(min_value=1, max_value=9),
    elapsed=st.floats(min_value=0.0, max_value=40.0),
    previous=st.floats(min_value=0.0, max_value=40.0),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=100.0),
    deadline=st.none() | st.floats(min_value=0.1, max_value=60.0),
    r=unit,
)
def test_every_retry_respects_retry_after_and_the_deadline(
    jitter: str,
    attempt: int,
    elapsed: float,
    previous: float,
    retry_after: float | None,
    deadline: float | None,
    r: float,
) -> None:
    """Whenever decide says Retry: delay >= Retry-After, and elapsed + delay <= deadline."""
    policy = RetryPolicy(max_attempts=10, jitter=jitter, deadline=deadline)  # type: ignore[arg-type]
    decision = policy.decide(
        attempt=attempt,
        error=rate_limited(retry_after),
        elapsed=elapsed,
        previous_delay=previous,
        rand=const(r),
    )
    if isinstance(decision, Retry):
        assert decision.delay >= (retry_after or 0.0)
        assert decision.delay <= max(policy.cap, retry_after or 0.0)
        if deadline is not None:
            assert elapsed + decision.delay <= deadline
    elif retry_after is not None and retry_after > policy.max_retry_after:
        expired = deadline is not None and elapsed >= deadline
        expected = "deadline" if expired else "retry_after_beyond_deadline"
        assert decision.reason == expected


# --- budget --------------------------------------------------------------------------


def storm(
    budget: RetryBudget, *, rate: float, seconds: float, tries: int
) -> tuple[list[float], list[float]]:
    """A 100% failure storm: ``rate`` calls/s, each asking for ``tries`` retries."""
    calls: list[float] = []
    retries: list[float] = []
    for i in range(int(rate * seconds)):
        now = i / rate
        budget.record_call(now)
        calls.append(now)
        for _ in range(tries):
            if not budget.try_spend(now):
                break
            retries.append(now)
    return calls, retries


def test_budget_caps_retries_under_a_failure_storm() -> None:
    """20 calls/s all failing, 3 retries wanted each: retries stay within 20% + 1/s floor."""
    budget = RetryBudget(ratio=0.2, window=10.0, min_per_second=1.0)
    calls, retries = storm(budget, rate=20.0, seconds=60.0, tries=3)
    assert window_violations(calls, retries, ratio=0.2, window=10.0, floor=10.0) == []
    assert len(retries) < 0.2 * len(calls) + 10.0 * 7  # ~20 % overall, not 300 %
    assert len(retries) > 0.15 * len(calls)  # and the budget is not needlessly stingy
    assert budget.stats(60.0)["denied_total"] > 0


@settings(max_examples=60, deadline=None)
@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    window=st.sampled_from([1.0, 2.5, 10.0]),
    min_per_second=st.sampled_from([0.0, 0.5, 1.0]),
    slices=st.integers(min_value=1, max_value=12),
    events=st.lists(
        st.tuples(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=4)),
        min_size=1,
        max_size=150,
    ),
)
def test_budget_bound_holds_for_any_traffic(
    ratio: float,
    window: float,
    min_per_second: float,
    slices: int,
    events: list[tuple[int, int]],
) -> None:
    """For any call times and retry demand, granted retries over the window ending at each
    grant never exceed ratio * calls + min_per_second * window."""
    budget = RetryBudget(ratio, window, min_per_second, slices=slices)
    calls: list[float] = []
    retries: list[float] = []
    now = 0.0
    for gap, wanted in events:
        now += gap / 100.0
        budget.record_call(now)
        calls.append(now)
        retries.extend(now for _ in range(wanted) if budget.try_spend(now))
    floor = min_per_second * window
    assert window_violations(calls, retries, ratio=ratio, window=window, floor=floor) == []


def test_budget_floor_lets_a_quiet_client_retry() -> None:
    """With no calls recorded, min_per_second * window retries are still allowed per window."""
    budget = RetryBudget(ratio=0.2, window=10.0, min_per_second=0.5)
    granted = [budget.try_spend(1.0) for _ in range(8)]
    assert granted == [True] * 5 + [False] * 3


def test_budget_refills_once_the_window_has_passed() -> None:
    """Retries spent now stop counting one window later."""
    budget = RetryBudget(ratio=0.0, window=10.0, min_per_second=0.2)  # floor = 2
    assert [budget.try_spend(0.0) for _ in range(3)] == [True, True, False]
    assert not budget.try_spend(9.9)
    assert budget.try_spend(11.1)


def test_budget_stats_report_window_counts_and_totals() -> None:
    """stats() shows calls and retries in the window, what is left, and lifetime totals."""
    budget = RetryBudget(ratio=0.5, window=10.0, min_per_second=0.0)
    for _ in range(4):
        budget.record_call(0.0)
    results = [budget.try_spend(0.0) for _ in range(3)]
    assert results == [True, True, False]
    stats = budget.stats(1.0)
    assert stats["calls"] == 4
    assert stats["retries"] == 2
    assert stats["available"] == 0
    assert stats["spent_total"] == 2
    assert stats["denied_total"] == 1
    assert budget.stats(25.0)["calls"] == 0


def test_budget_memory_stays_bounded() -> None:
    """A long busy run keeps at most slices + 1 buckets."""
    budget = RetryBudget(window=1.0, slices=4)
    rng = random.Random(3)
    now = 0.0
    for _ in range(5_000):
        now += rng.random() / 100
        budget.record_call(now)
        budget.try_spend(now)
    assert len(budget._buckets) <= 5


@pytest.mark.parametrize(
    "kwargs",
    [{"ratio": -0.1}, {"window": 0.0}, {"min_per_second": -1.0}, {"slices": 0}],
)
def test_bad_budget_settings_are_refused(kwargs: dict[str, float]) -> None:
    """Impossible budget settings fail at construction with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        RetryBudget(**kwargs)  # type: ignore[arg-type]
