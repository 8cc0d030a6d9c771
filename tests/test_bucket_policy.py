"""The sans-IO token bucket (GCRA) and its header rules: explicit ``now`` values, no clock."""

from __future__ import annotations

import math
from email.utils import formatdate
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunegate._policy.bucket import (
    MAX_PAUSE,
    RATE_LIMITED_PAUSE,
    BucketState,
    Limits,
    available_tokens,
    clamp_pause,
    pause,
    pause_from_headers,
    release,
    rescale,
    reserve,
    reserve_tokens,
    resume,
)
from tunegate.exceptions import ConfigurationError

T0 = 1000.0
WALL = 1_700_000_000.0


def run(limits: Limits, times: list[float], state: BucketState | None = None) -> list[float]:
    """Reserve once at each time (offsets from T0) and return the waits."""
    state = state or BucketState()
    waits = []
    for t in times:
        r = reserve(state, limits, T0 + t)
        state = r.state
        waits.append(r.wait)
    return waits


@pytest.mark.parametrize(
    ("rate", "capacity", "times", "waits"),
    [
        # one per second, no burst: back-to-back callers queue a second apart
        (1.0, 1, [0, 0, 0], [0, 1, 2]),
        # a full burst goes at once, the next waits one interval
        (10.0, 10, [0] * 11, [0] * 10 + [0.1]),
        # half a second after emptying, 5 tokens are back: 5 go, the 6th waits
        (10.0, 10, [0] * 10 + [0.5] * 6, [0] * 10 + [0] * 5 + [0.1]),
        # spaced at exactly the rate: never waits
        (2.0, 1, [0, 0.5, 1.0, 1.5], [0, 0, 0, 0]),
        # arriving early waits for the remainder of the interval
        (2.0, 1, [0, 0.2, 0.3], [0, 0.3, 0.7]),
        # refill is capped at capacity: a long idle period gives 3 tokens, not 30
        (2.0, 3, [0, 0, 0, 10, 10, 10, 10], [0, 0, 0, 0, 0, 0, 0.5]),
        # a queue drains at the rate, then a late caller finds tokens again
        (4.0, 2, [0, 0, 0, 0, 2], [0, 0, 0.25, 0.5, 0]),
    ],
)
def test_reserve_waits(rate: float, capacity: int, times: list[float], waits: list[float]) -> None:
    """Each reservation waits exactly what the rate and burst allow."""
    assert run(Limits(rate, capacity), times) == pytest.approx(waits)


@pytest.mark.parametrize(
    ("later", "tokens"),
    [(0.0, 0.0), (0.05, 0.5), (0.25, 2.5), (0.75, 7.5), (1.0, 10.0), (60.0, 10.0)],
)
def test_available_tokens_refill(later: float, tokens: float) -> None:
    """An emptied bucket of 10 at 10/s refills linearly and stops at capacity."""
    limits = Limits(10.0, 10)
    state = BucketState()
    for _ in range(10):
        state = reserve(state, limits, T0).state
    assert available_tokens(state, limits, T0 + later) == pytest.approx(tokens)


def test_new_bucket_is_full() -> None:
    """A bucket nobody used has its whole capacity."""
    assert available_tokens(BucketState(), Limits(5.0, 5), T0) == 5.0


def test_queued_reservations_count_against_tokens() -> None:
    """Tokens reserved ahead of time are not available to anyone else."""
    limits = Limits(1.0, 2)
    state = BucketState()
    for _ in range(4):  # 2 burst + 2 queued
        state = reserve(state, limits, T0).state
    assert available_tokens(state, limits, T0) == 0.0
    assert available_tokens(state, limits, T0 + 3.0) == pytest.approx(1.0)


def test_refusal_consumes_nothing() -> None:
    """A wait longer than max_wait is refused, reported, and leaves the state as it was."""
    limits = Limits(1.0, 1)
    state = reserve(BucketState(), limits, T0).state
    refused = reserve(state, limits, T0 + 0.25, max_wait=0.5)
    assert not refused.granted
    assert refused.wait == pytest.approx(0.75)
    assert refused.state == state
    granted = reserve(state, limits, T0 + 0.25, max_wait=0.75)
    assert granted.granted
    assert granted.wait == pytest.approx(0.75)


def test_max_wait_zero_only_takes_free_tokens() -> None:
    """max_wait=0 grants while tokens are there and refuses the first that would wait."""
    limits = Limits(10.0, 2)
    state = BucketState()
    results = []
    for _ in range(3):
        r = reserve(state, limits, T0, max_wait=0.0)
        state = r.state
        results.append(r.granted)
    assert results == [True, True, False]


def test_pause_holds_every_token_until_it_ends() -> None:
    """While paused nothing is available and a reservation waits for the end."""
    limits = Limits(10.0, 10)
    state = pause(BucketState(), limits, T0, 2.0)
    assert state.paused_until == T0 + 2.0
    assert available_tokens(state, limits, T0 + 1.9) == 0.0
    assert reserve(state, limits, T0 + 0.5).wait == pytest.approx(1.5)


def test_pause_restarts_the_bucket_empty() -> None:
    """After a pause one token is there and the burst refills at the rate, not at once."""
    limits = Limits(10.0, 10)
    state = pause(BucketState(), limits, T0, 2.0)
    assert available_tokens(state, limits, T0 + 2.0) == pytest.approx(1.0)
    assert run(limits, [2.0, 2.0, 2.0], state) == pytest.approx([0.0, 0.1, 0.2])
    assert available_tokens(state, limits, T0 + 2.9) == pytest.approx(10.0)


def test_pause_never_shortens() -> None:
    """A shorter pause after a longer one keeps the longer; a longer one extends it."""
    limits = Limits(1.0, 1)
    state = pause(BucketState(), limits, T0, 30.0)
    assert pause(state, limits, T0 + 1, 5.0).paused_until == T0 + 30.0
    assert pause(state, limits, T0 + 1, 60.0).paused_until == T0 + 61.0


def test_pause_keeps_reservations_already_queued() -> None:
    """A short pause does not pull queued reservations forward."""
    limits = Limits(1.0, 1)
    state = BucketState()
    for _ in range(5):
        state = reserve(state, limits, T0).state  # tat = T0 + 5
    paused = pause(state, limits, T0, 1.0)
    assert paused.tat == state.tat
    assert reserve(paused, limits, T0).wait == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("seconds", "clamped"),
    [(-5.0, 0.0), (math.nan, 0.0), (0.0, 0.0), (12.5, 12.5), (math.inf, MAX_PAUSE)],
)
def test_clamp_pause(seconds: float, clamped: float) -> None:
    """Pauses are never negative, NaN-proof, and capped."""
    assert clamp_pause(seconds) == clamped


def test_rescale_keeps_tokens_owed() -> None:
    """Halving the rate of an emptied bucket makes the owed tokens take twice as long."""
    old, new = Limits(10.0, 10), Limits(5.0, 10)
    state = BucketState()
    for _ in range(10):
        state = reserve(state, old, T0).state  # 10 tokens owed, 1 s at 10/s
    slower = rescale(state, old, new, T0)
    assert slower.tat == pytest.approx(T0 + 2.0)
    assert available_tokens(slower, new, T0 + 1.0) == pytest.approx(5.0)
    assert reserve(slower, new, T0).wait == pytest.approx(0.2)


def test_rate_raised_during_a_pause_still_spaces_grants() -> None:
    """Raising the rate while paused cannot let two callers go at the end of the pause."""
    slow, fast = Limits(0.5, 1), Limits(8.0, 1)
    state = rescale(pause(BucketState(), slow, T0, 2.0), slow, fast, T0)
    assert run(fast, [0, 0, 0], state) == pytest.approx([2.0, 2.125, 2.25])


def test_rescale_of_an_idle_bucket_changes_nothing() -> None:
    """A full bucket stays full at the new rate and capacity."""
    state = reserve(BucketState(), Limits(10.0, 10), T0).state
    later = T0 + 5
    assert rescale(state, Limits(10.0, 10), Limits(1.0, 3), later) == state
    assert available_tokens(state, Limits(1.0, 3), later) == 3.0


def test_rescale_to_smaller_capacity_caps_the_burst() -> None:
    """Reducing capacity on a full bucket leaves only the new capacity available."""
    state = BucketState()
    limits = Limits(10.0, 1)
    assert run(limits, [0, 0], rescale(state, Limits(10.0, 10), limits, T0)) == pytest.approx(
        [0.0, 0.1]
    )


def test_reserve_tokens_is_reserve_repeated_all_or_none() -> None:
    """n tokens together: the state of n reserves, the last one's wait; refused, nothing."""
    limits = Limits(2.0, 3)
    state = reserve(BucketState(), limits, T0).state  # 2 of the burst left
    three = reserve_tokens(state, limits, T0, 3)
    one_by_one = state
    for _ in range(3):
        step = reserve(one_by_one, limits, T0)
        one_by_one = step.state
    assert (three.granted, three.wait, three.state) == (True, step.wait, one_by_one)
    assert three.wait == pytest.approx(0.5)
    assert release(three.state, three) == state  # all three come back together
    refused = reserve_tokens(state, limits, T0, 3, max_wait=0.25)
    assert (refused.granted, refused.state) == (False, state)
    assert refused.wait == pytest.approx(0.5)


def test_resume_restarts_empty_behind_the_earlier_backlog() -> None:
    """resume ends a pause at now: empty (one token now), or behind what was owed before."""
    limits = Limits(1.0, 3)
    paused = pause(BucketState(), limits, T0, 60)
    resumed = resume(paused, limits, T0 + 1, before=-math.inf)
    assert resumed.paused_until == T0 + 1
    assert reserve(resumed, limits, T0 + 1, max_wait=0).granted
    assert available_tokens(resumed, limits, T0 + 1) == pytest.approx(1.0)
    backlog = resume(paused, limits, T0 + 1, before=T0 + 10)
    assert reserve(backlog, limits, T0 + 1).wait == pytest.approx(10 - 2 - 1)
    assert resume(resumed, limits, T0 + 2) == resumed  # no pause: no change
    queued = reserve(paused, limits, T0).state  # a caller asleep until the pause's end
    assert resume(queued, limits, T0 + 1).tat == queued.tat


def test_release_gives_back_the_last_reservation() -> None:
    """Abandoning the newest reservation restores the state before it."""
    limits = Limits(1.0, 1)
    state = reserve(BucketState(), limits, T0).state
    r = reserve(state, limits, T0)
    assert release(r.state, r) == state


def test_release_keeps_a_slot_others_reserved_behind() -> None:
    """A reservation with others queued behind it stays spent."""
    limits = Limits(1.0, 1)
    first = reserve(BucketState(), limits, T0)
    second = reserve(first.state, limits, T0)
    assert release(second.state, first) == second.state


def test_release_of_a_refusal_is_a_no_op() -> None:
    """A refused reservation has nothing to give back."""
    limits = Limits(1.0, 1)
    state = reserve(BucketState(), limits, T0).state
    refused = reserve(state, limits, T0, max_wait=0.0)
    assert release(state, refused) == state


@pytest.mark.parametrize(
    ("rate", "capacity"),
    [(0.0, 1), (-1.0, 1), (math.nan, 1), (math.inf, 1), (True, 1), ("10", 1), (1.0, 0), (1.0, 1.5)],
)
def test_limits_reject_bad_settings(rate: object, capacity: object) -> None:
    """Bad rates and capacities are configuration errors, caught at construction."""
    with pytest.raises(ConfigurationError):
        Limits(rate, capacity)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    capacity=st.integers(1, 6),
    gaps=st.lists(st.floats(0.0, 0.7), min_size=1, max_size=40),
    window=st.floats(0.05, 3.0),
)
def test_no_window_exceeds_burst_plus_rate(
    rate: float, capacity: int, gaps: list[float], window: float
) -> None:
    """Whatever the arrivals, no window of W seconds holds more than capacity + W*rate grants."""
    limits = Limits(rate, capacity)
    state, now, grants = BucketState(), T0, []
    for gap in gaps:
        now += gap
        r = reserve(state, limits, now)
        state = r.state
        grants.append(now + r.wait)
    for start in grants:
        inside = sum(1 for g in grants if start <= g < start + window)
        assert inside <= capacity + window * rate + 1e-9


# -- header rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "expected"),
    [
        ({"Retry-After": "5"}, 429, 5.0),
        ({"retry-after": "2.5"}, None, 2.5),  # any case, no status needed
        ({"RETRY-AFTER": "7"}, 503, 7.0),
        ({"Retry-After": formatdate(WALL + 120, usegmt=True)}, 429, 120.0),  # HTTP-date
        ({"Retry-After": formatdate(WALL - 60, usegmt=True)}, 429, None),  # date in the past
        ({"Retry-After": "0"}, 503, None),  # "go ahead now" (MusicBrainz global sheds)
        ({"Retry-After": "1e12"}, 429, MAX_PAUSE),  # absurd values are capped
        ({"Retry-After": "soon"}, None, None),  # invalid is ignored (RFC 9110)
        ({"Retry-After": "soon"}, 429, RATE_LIMITED_PAUSE),
        ({}, 429, RATE_LIMITED_PAUSE),
        ({}, 200, None),
        ({}, None, None),
        # MusicBrainz: the window is used up, wait for the reset (UNIX seconds)
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(WALL) + 3)}, 200, 3.0),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "7"}, None, 7.0),  # delta form
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(WALL) - 3)}, 200, None),
        ({"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": str(int(WALL) + 3)}, 200, None),
        ({"X-RateLimit-Remaining": "0"}, 200, None),  # no reset: nothing to wait for
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "nan"}, 200, None),
        ({"X-RateLimit-Limit": "800"}, 200, None),  # Limit alone never steers
        # both present: the longer wait wins
        (
            {
                "Retry-After": "0",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(WALL) + 2),
            },
            503,
            2.0,
        ),
        ({"Retry-After": "9", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"}, 429, 9.0),
    ],
)
def test_pause_from_headers(
    headers: dict[str, str], status: int | None, expected: float | None
) -> None:
    """Exactly the documented headers decide the pause."""
    got = pause_from_headers(headers, WALL, status)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-6)


def test_pause_from_headers_reads_any_mapping() -> None:
    """A read-only Mapping with odd casing works like a dict."""
    headers = MappingProxyType({"rEtRy-AfTeR": "4"})
    assert pause_from_headers(headers, WALL) == 4.0
