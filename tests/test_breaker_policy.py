"""The sans-IO breaker machine: every row of its transition table, with explicit ``now``."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunegate._policy import breaker as policy
from tunegate._policy.breaker import (
    TRANSITIONS,
    BreakerConfig,
    BreakerState,
    CircuitState,
    Event,
    Guard,
    Permit,
    Rejection,
)
from tunegate.exceptions import ConfigurationError

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
CFG = BreakerConfig(
    failure_threshold=3, success_threshold=2, timeout=10.0, half_open_max_calls=2, probe_lease=5.0
)


@dataclass(frozen=True)
class Case:
    """A state meeting a row's guard, the event's inputs, and what must come out."""

    before: BreakerState
    now: float
    permit: Permit | None  # None for ALLOW and RESET
    after: BreakerState
    decision: Permit | Rejection | None = None


_closed = BreakerState(CLOSED, epoch=4, failures=1)
_open = BreakerState(OPEN, epoch=5, opened_at=100.0)
_half = BreakerState(HALF_OPEN, epoch=6, opened_at=100.0, probes=(("a", 116.0),))
_full = replace(_half, probes=(("a", 116.0), ("b", 115.0)))

# Written out by hand, independently of the module's table, so either one can catch the other.
CASES: dict[tuple[CircuitState, Event, Guard], Case] = {
    (CLOSED, Event.ALLOW, Guard.ANY): Case(_closed, 50.0, None, _closed, Permit(4)),
    (CLOSED, Event.SUCCESS, Guard.CURRENT): Case(
        _closed, 50.0, Permit(4), replace(_closed, failures=0)
    ),
    (CLOSED, Event.FAILURE, Guard.BELOW): Case(
        _closed, 50.0, Permit(4), replace(_closed, failures=2)
    ),
    (CLOSED, Event.FAILURE, Guard.REACHED): Case(
        replace(_closed, failures=2), 50.0, Permit(4), BreakerState(OPEN, 5, opened_at=50.0)
    ),
    (CLOSED, Event.IGNORED, Guard.CURRENT): Case(_closed, 50.0, Permit(4), _closed),
    (CLOSED, Event.SUCCESS, Guard.STALE): Case(_closed, 50.0, Permit(3), _closed),
    (CLOSED, Event.FAILURE, Guard.STALE): Case(
        replace(_closed, failures=2), 50.0, Permit(3), replace(_closed, failures=2)
    ),
    (CLOSED, Event.IGNORED, Guard.STALE): Case(_closed, 50.0, Permit(3), _closed),
    (CLOSED, Event.RESET, Guard.ANY): Case(_closed, 50.0, None, BreakerState(CLOSED, 5)),
    (OPEN, Event.ALLOW, Guard.WAITING): Case(_open, 109.9, None, _open, Rejection(110.0)),
    (OPEN, Event.ALLOW, Guard.ELAPSED): Case(
        _open,
        110.0,  # exactly opened_at + timeout
        None,
        BreakerState(HALF_OPEN, 6, opened_at=100.0, probes=(("t", 115.0),)),
        Permit(6, "t"),
    ),
    (OPEN, Event.SUCCESS, Guard.STALE): Case(_open, 105.0, Permit(4), _open),
    (OPEN, Event.FAILURE, Guard.STALE): Case(_open, 105.0, Permit(4), _open),
    (OPEN, Event.IGNORED, Guard.STALE): Case(_open, 105.0, Permit(4), _open),
    (OPEN, Event.RESET, Guard.ANY): Case(_open, 105.0, None, BreakerState(CLOSED, 6)),
    (HALF_OPEN, Event.ALLOW, Guard.SLOT_FREE): Case(
        _half, 112.0, None, replace(_half, probes=(("a", 116.0), ("t", 117.0))), Permit(6, "t")
    ),
    (HALF_OPEN, Event.ALLOW, Guard.SLOTS_FULL): Case(_full, 112.0, None, _full, Rejection(115.0)),
    (HALF_OPEN, Event.SUCCESS, Guard.BELOW): Case(
        _half, 112.0, Permit(6, "a"), replace(_half, successes=1, probes=())
    ),
    (HALF_OPEN, Event.SUCCESS, Guard.REACHED): Case(
        replace(_half, successes=1), 112.0, Permit(6, "a"), BreakerState(CLOSED, 7)
    ),
    (HALF_OPEN, Event.FAILURE, Guard.CURRENT): Case(
        _full, 112.0, Permit(6, "a"), BreakerState(OPEN, 7, opened_at=112.0)
    ),
    (HALF_OPEN, Event.IGNORED, Guard.CURRENT): Case(
        _full, 112.0, Permit(6, "a"), replace(_full, probes=(("b", 115.0),))
    ),
    (HALF_OPEN, Event.SUCCESS, Guard.STALE): Case(_half, 112.0, Permit(4), _half),
    (HALF_OPEN, Event.FAILURE, Guard.STALE): Case(_full, 112.0, Permit(5, "a"), _full),
    (HALF_OPEN, Event.IGNORED, Guard.STALE): Case(_half, 112.0, Permit(5, "a"), _half),
    (HALF_OPEN, Event.RESET, Guard.ANY): Case(_full, 112.0, None, BreakerState(CLOSED, 7)),
}


def run_case(event: Event, case: Case) -> tuple[BreakerState, Permit | Rejection | None]:
    if event is Event.ALLOW:
        return policy.allow(case.before, CFG, case.now, "t")
    if event is Event.RESET:
        return policy.reset(case.before, case.now), None
    assert case.permit is not None
    return policy.record(case.before, CFG, case.now, event, case.permit), None


def test_the_table_and_the_cases_cover_the_same_rows() -> None:
    """Every row of the module's table has a hand-written case here, and no case is extra."""
    assert {(t.state, t.event, t.guard) for t in TRANSITIONS} == set(CASES)
    assert len(TRANSITIONS) == len(CASES)  # no duplicate rows


def test_every_state_has_a_row_for_every_event() -> None:
    """No (state, event) pair is left undefined."""
    pairs = {(t.state, t.event) for t in TRANSITIONS}
    assert pairs == {(s, e) for s in CircuitState for e in Event}


@pytest.mark.parametrize(
    "row", TRANSITIONS, ids=[f"{t.state}-{t.event}-{t.guard.name}" for t in TRANSITIONS]
)
def test_transition_row(row: policy.Transition) -> None:
    """Each row: the state it lands in is the table's, with exactly the effect written here."""
    case = CASES[(row.state, row.event, row.guard)]
    assert case.before.state is row.state
    after, decision = run_case(row.event, case)
    assert after.state is row.next
    assert after == case.after
    assert decision == case.decision
    if row.next is not row.state or row.event is Event.RESET:
        assert after.epoch == case.before.epoch + 1
    else:
        assert after.epoch == case.before.epoch


@pytest.mark.parametrize("key", list(CASES), ids=[f"{k[0]}-{k[1]}-{k[2].name}" for k in CASES])
def test_standing_answers_what_allow_and_record_would(
    key: tuple[CircuitState, Event, Guard],
) -> None:
    """standing(s), which a driver keeps instead of asking the machine: its permit is the
    one allow() grants at any time with any token, and while it says idle a success on that
    permit (or another non-probe one) leaves the state as it is; outside CLOSED it says
    nothing (a state from every row of the table, at times before, at and past each timeout)."""
    s = CASES[key].before
    permit, idle = policy.standing(s)
    if s.state is not CLOSED:
        assert (permit, idle) == (None, False)
        return
    assert permit is not None
    for now in (0.0, 50.0, 110.0, 1e9):
        for token in ("", "t"):
            assert policy.allow(s, CFG, now, token) == (s, permit)
        after = policy.record(s, CFG, now, Event.SUCCESS, permit)
        assert (after is s) is idle
        assert policy.record(s, CFG, now, Event.SUCCESS, Permit(s.epoch - 1)) is s
    assert idle is (s.failures == 0)


def test_a_full_cycle_with_explicit_times() -> None:
    """CLOSED -> OPEN -> HALF_OPEN -> OPEN -> HALF_OPEN -> CLOSED on a made-up clock."""
    cfg = BreakerConfig(failure_threshold=2, success_threshold=2, timeout=30.0, probe_lease=30.0)
    s = BreakerState()
    for t in (1.0, 2.0):
        s, permit = policy.allow(s, cfg, t, "")
        assert isinstance(permit, Permit)
        s = policy.record(s, cfg, t + 0.5, Event.FAILURE, permit)
    assert (s.state, s.opened_at) == (OPEN, 2.5)
    s, refused = policy.allow(s, cfg, 32.4, "")
    assert refused == Rejection(32.5)
    s, probe = policy.allow(s, cfg, 32.5, "p1")
    assert s.state is HALF_OPEN
    assert probe == Permit(s.epoch, "p1")
    s = policy.record(s, cfg, 33.0, Event.FAILURE, probe)
    assert (s.state, s.opened_at) == (OPEN, 33.0)
    s, probe = policy.allow(s, cfg, 63.0, "p2")
    assert isinstance(probe, Permit)
    s = policy.record(s, cfg, 63.1, Event.SUCCESS, probe)
    assert (s.state, s.successes) == (HALF_OPEN, 1)
    s, probe = policy.allow(s, cfg, 63.2, "p3")
    assert isinstance(probe, Permit)
    s = policy.record(s, cfg, 63.3, Event.SUCCESS, probe)
    assert s == BreakerState(CLOSED, epoch=5)


def test_a_success_breaks_the_run_of_failures() -> None:
    """Failures must be consecutive: F F S F F leaves a threshold-3 breaker closed."""
    s = BreakerState()
    for outcome in (Event.FAILURE, Event.FAILURE, Event.SUCCESS, Event.FAILURE, Event.FAILURE):
        s = policy.record(s, CFG, 1.0, outcome, Permit(s.epoch))
    assert (s.state, s.failures) == (CLOSED, 2)


def test_only_max_probes_are_admitted_and_a_lost_lease_expires() -> None:
    """Two slots: the third caller is refused until the older lease runs out, then admitted."""
    s = BreakerState(OPEN, epoch=1, opened_at=0.0)
    admitted = []
    for i in range(5):
        s, decision = policy.allow(s, CFG, 10.0 + i * 0.1, f"p{i}")
        admitted.append(isinstance(decision, Permit))
    assert admitted == [True, True, False, False, False]
    assert policy.retry_at(s, CFG) == 15.0  # p0's lease: taken at 10.0, 5 s long
    s, decision = policy.allow(s, CFG, 14.99, "late")
    assert decision == Rejection(15.0)
    s, decision = policy.allow(s, CFG, 15.0, "late")
    assert decision == Permit(s.epoch, "late")
    assert [token for token, _ in s.probes] == ["p1", "late"]


def test_a_stale_closed_permit_cannot_reopen_a_half_open_breaker() -> None:
    """A slow call admitted while CLOSED fails after the breaker moved on: nothing changes."""
    cfg = BreakerConfig(failure_threshold=1, timeout=5.0)
    s, slow = policy.allow(BreakerState(), cfg, 0.0, "")
    s, quick = policy.allow(s, cfg, 0.0, "")
    assert isinstance(slow, Permit)
    assert isinstance(quick, Permit)
    s = policy.record(s, cfg, 0.1, Event.FAILURE, quick)
    s, _ = policy.allow(s, cfg, 5.1, "p")
    assert s.state is HALF_OPEN
    after = policy.record(s, cfg, 5.2, Event.FAILURE, slow)
    assert after == s


def test_a_late_probe_cannot_close_a_reopened_breaker() -> None:
    """Two probes; one fails (re-open); the other's success arrives later and is stale."""
    cfg = BreakerConfig(
        failure_threshold=1, success_threshold=1, timeout=5.0, half_open_max_calls=2
    )
    s = BreakerState(OPEN, epoch=1, opened_at=0.0)
    s, p1 = policy.allow(s, cfg, 5.0, "p1")
    s, p2 = policy.allow(s, cfg, 5.0, "p2")
    assert isinstance(p1, Permit)
    assert isinstance(p2, Permit)
    s = policy.record(s, cfg, 5.1, Event.FAILURE, p1)
    assert s.state is OPEN
    assert policy.record(s, cfg, 5.2, Event.SUCCESS, p2) == s


def test_retry_at_is_none_while_a_call_would_be_admitted() -> None:
    """retry_at: end of timeout when OPEN, oldest lease when HALF_OPEN is full, else None."""
    assert policy.retry_at(_closed, CFG) is None
    assert policy.retry_at(_open, CFG) == 110.0
    assert policy.retry_at(_half, CFG) is None
    assert policy.retry_at(_full, CFG) == 115.0


def test_time_alone_turns_open_into_half_open() -> None:
    """advance() leaves OPEN alone before the timeout and opens a new epoch at it."""
    assert policy.advance(_open, CFG, 109.99) is _open
    assert policy.advance(_open, CFG, 110.0) == BreakerState(HALF_OPEN, 6, opened_at=100.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"success_threshold": -1},
        {"half_open_max_calls": 0},
        {"failure_threshold": 2.5},
        {"failure_threshold": True},
        {"timeout": 0},
        {"timeout": -1.0},
        {"probe_lease": 0.0},
        {"timeout": "60"},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Settings that cannot work raise ConfigurationError at construction."""
    with pytest.raises(ConfigurationError):
        BreakerConfig(**kwargs)  # type: ignore[arg-type]


def test_record_takes_only_outcomes() -> None:
    """ALLOW and RESET are not outcomes of a call."""
    with pytest.raises(ValueError, match="outcome"):
        policy.record(_closed, CFG, 1.0, Event.ALLOW, Permit(4))


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["allow", "success", "failure", "ignored", "reset"]),
            st.sampled_from([0.0, 1.0, 11.0]),
            st.integers(0, 5),
        ),
        max_size=30,
    )
)
def test_with_threshold_one_a_non_probe_success_never_changes_a_state(
    steps: list[tuple[str, float, int]],
) -> None:
    """success_counts(): False exactly when failure_threshold is 1; then, from every state
    a history reaches, a SUCCESS on any non-probe permit (current or stale) leaves it as is."""
    cfg = replace(CFG, failure_threshold=1)
    assert not policy.success_counts(cfg)
    assert policy.success_counts(CFG)
    s, now = BreakerState(), 0.0
    permits: list[Permit] = [Permit(0)]
    for i, (op, dt, pick) in enumerate(steps):
        now += dt
        for permit in permits:
            if not permit.probe:
                assert policy.record(s, cfg, now, Event.SUCCESS, permit) == policy.advance(
                    s, cfg, now
                )
        if op == "allow":
            s, decision = policy.allow(s, cfg, now, f"t{i}")
            if isinstance(decision, Permit):
                permits.append(decision)
        elif op == "reset":
            s = policy.reset(s, now)
        else:
            s = policy.record(s, cfg, now, Event(op), permits[-1 - pick % len(permits)])
