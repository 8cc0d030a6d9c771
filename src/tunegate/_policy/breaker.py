"""The circuit breaker as a pure state machine: states, events, and the table between them.

Theory of operation
-------------------

A breaker guards one provider. It is in one of three states:

- CLOSED: calls go through. Each *failure* adds one to ``failures``; a *success* sets it
  back to 0, so only an unbroken run of ``failure_threshold`` failures opens the breaker.
- OPEN: calls are refused at once, without touching the provider, until ``timeout``
  seconds have passed since ``opened_at``. Then the breaker moves to HALF_OPEN by itself
  (the one *timed* transition; it is applied lazily, by :func:`advance`, before every
  event, so nothing needs a timer thread).
- HALF_OPEN: a few *probe* calls test the provider. At most ``half_open_max_calls`` probes
  run at once; each holds a *lease* (a token and an expiry). Every other caller is refused
  at once. ``success_threshold`` probe successes close the breaker; one probe failure
  opens it again for a fresh ``timeout``.

Four rules keep it honest under concurrency:

1. The decision and its bookkeeping happen in one step (one function call here, one Lua
   script in Redis), so a caller never acts on a state that changed under it. The
   protected call itself runs outside that step: nothing is held while it runs.
2. Every transition bumps ``epoch``. A :class:`Permit` remembers the epoch that issued
   it, and an outcome reported with an older epoch is *stale*: it changes nothing. A slow
   call admitted while CLOSED cannot re-open a breaker that has since moved to HALF_OPEN,
   and a late probe cannot close a breaker that has since re-opened.
3. A probe lease expires ``probe_lease`` seconds after it was taken, so a prober that
   crashed, or forgot to report, costs one lease time instead of wedging the breaker in
   HALF_OPEN for ever.
4. Outcomes that are neither success nor failure (a 429, a not-found: a quota or a
   missing track is not an outage) are reported as IGNORED: they change no counter but
   give a probe's slot back.

The machine reads no clock: every function takes ``now`` (seconds, on any clock that does
not jump; the local driver passes ``time.monotonic()``, the Redis twin its server's TIME)
and returns the new state plus its decision. ``tunegate/_lua/breaker.lua`` is the same
table in Lua for shared state; ``tests/test_breaker_redis.py`` runs both on the same
inputs and compares them field by field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Final, NamedTuple

from tunegate.exceptions import ConfigurationError

__all__ = [
    "TRANSITIONS",
    "BreakerConfig",
    "BreakerState",
    "CircuitState",
    "Event",
    "Guard",
    "Permit",
    "Rejection",
    "Transition",
    "advance",
    "allow",
    "record",
    "reset",
    "retry_at",
    "standing",
    "success_counts",
]


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CLOSED: Final = CircuitState.CLOSED
OPEN: Final = CircuitState.OPEN
HALF_OPEN: Final = CircuitState.HALF_OPEN


class Event(enum.StrEnum):
    """What a driver reports; the values are the operation names of the Lua script."""

    ALLOW = "allow"
    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"
    RESET = "reset"


class Guard(enum.StrEnum):
    """The condition that picks one row when a (state, event) pair has several."""

    ANY = "any"
    STALE = "permit from an earlier epoch"
    CURRENT = "permit from this epoch"
    WAITING = "timeout not elapsed"
    ELAPSED = "timeout elapsed"
    BELOW = "threshold not reached"
    REACHED = "threshold reached"
    SLOT_FREE = "a probe slot is free"
    SLOTS_FULL = "every probe slot is leased"


class Transition(NamedTuple):
    state: CircuitState
    event: Event
    guard: Guard
    next: CircuitState
    effect: str


T, E, G = Transition, Event, Guard  # short names keep the table's columns readable

# The whole machine. Rows whose ``next`` differs from ``state`` start a new epoch and clear
# the counters and leases; the ``effect`` column says what else happens.
# fmt: off
TRANSITIONS: Final[tuple[Transition, ...]] = (
    # state      event      guard         next       effect
    T(CLOSED,    E.ALLOW,   G.ANY,        CLOSED,    "admit"),
    T(CLOSED,    E.SUCCESS, G.CURRENT,    CLOSED,    "failures := 0"),
    T(CLOSED,    E.FAILURE, G.BELOW,      CLOSED,    "failures += 1"),
    T(CLOSED,    E.FAILURE, G.REACHED,    OPEN,      "opened_at := now"),
    T(CLOSED,    E.IGNORED, G.CURRENT,    CLOSED,    "nothing"),
    T(CLOSED,    E.SUCCESS, G.STALE,      CLOSED,    "nothing"),
    T(CLOSED,    E.FAILURE, G.STALE,      CLOSED,    "nothing"),
    T(CLOSED,    E.IGNORED, G.STALE,      CLOSED,    "nothing"),
    T(CLOSED,    E.RESET,   G.ANY,        CLOSED,    "new epoch, counters cleared"),

    T(OPEN,      E.ALLOW,   G.WAITING,    OPEN,      "refuse until opened_at + timeout"),
    T(OPEN,      E.ALLOW,   G.ELAPSED,    HALF_OPEN, "admit as the first probe"),
    T(OPEN,      E.SUCCESS, G.STALE,      OPEN,      "nothing"),
    T(OPEN,      E.FAILURE, G.STALE,      OPEN,      "nothing"),
    T(OPEN,      E.IGNORED, G.STALE,      OPEN,      "nothing"),
    T(OPEN,      E.RESET,   G.ANY,        CLOSED,    "counters cleared"),

    T(HALF_OPEN, E.ALLOW,   G.SLOT_FREE,  HALF_OPEN, "admit as a probe, lease a slot"),
    T(HALF_OPEN, E.ALLOW,   G.SLOTS_FULL, HALF_OPEN, "refuse until the oldest lease ends"),
    T(HALF_OPEN, E.SUCCESS, G.BELOW,      HALF_OPEN, "successes += 1, slot released"),
    T(HALF_OPEN, E.SUCCESS, G.REACHED,    CLOSED,    "counters cleared, leases dropped"),
    T(HALF_OPEN, E.FAILURE, G.CURRENT,    OPEN,      "opened_at := now"),
    T(HALF_OPEN, E.IGNORED, G.CURRENT,    HALF_OPEN, "slot released"),
    T(HALF_OPEN, E.SUCCESS, G.STALE,      HALF_OPEN, "nothing"),
    T(HALF_OPEN, E.FAILURE, G.STALE,      HALF_OPEN, "nothing"),
    T(HALF_OPEN, E.IGNORED, G.STALE,      HALF_OPEN, "nothing"),
    T(HALF_OPEN, E.RESET,   G.ANY,        CLOSED,    "counters cleared, leases dropped"),
)
# fmt: on
# The one timed transition, applied by advance(): OPEN -> HALF_OPEN once
# now >= opened_at + timeout. (OPEN, ALLOW, ELAPSED) above is that transition followed by
# (HALF_OPEN, ALLOW, SLOT_FREE), listed so the table shows what a caller sees.

_NEXT: Final[dict[tuple[CircuitState, Event, Guard], CircuitState]] = {
    (t.state, t.event, t.guard): t.next for t in TRANSITIONS
}
del T, E, G


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    success_threshold: int = 2
    timeout: float = 60.0
    half_open_max_calls: int = 1
    probe_lease: float = 60.0

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "success_threshold", "half_open_max_calls"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an integer >= 1, not {value!r}")
        for name in ("timeout", "probe_lease"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{name} must be a number of seconds > 0, not {value!r}")


@dataclass(frozen=True, slots=True)
class BreakerState:
    state: CircuitState = CLOSED
    epoch: int = 0
    failures: int = 0  # consecutive failures while CLOSED
    successes: int = 0  # probe successes while HALF_OPEN
    opened_at: float | None = None  # when it last opened; kept through HALF_OPEN
    probes: tuple[tuple[str, float], ...] = ()  # HALF_OPEN leases: (token, expiry)


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call; hand it back with the outcome."""

    epoch: int
    probe: str = ""  # the lease token when the call is a half-open probe


@dataclass(frozen=True, slots=True)
class Rejection:
    """The call may not go now; ``retry_at`` (on the caller's clock) is when a probe may."""

    retry_at: float


def advance(s: BreakerState, cfg: BreakerConfig, now: float) -> BreakerState:
    """Apply what time alone does: OPEN turns HALF_OPEN, and probe leases expire."""
    if s.state is OPEN:
        assert s.opened_at is not None
        if now < s.opened_at + cfg.timeout:
            return s
        s = _enter(s, HALF_OPEN, now)
    if s.probes and any(expiry <= now for _, expiry in s.probes):
        s = replace(s, probes=tuple(p for p in s.probes if p[1] > now))
    return s


def standing(s: BreakerState) -> tuple[Permit | None, bool]:
    """What holds for ``s`` whatever the time, until the next transition or event:
    ``(permit, idle)``. ``permit`` is the one :func:`allow` grants at any ``now`` with any
    token (CLOSED admits every call, and nothing changes in CLOSED with time), else None.
    ``idle``: a SUCCESS reported with that permit (or any non-probe permit) leaves ``s``
    unchanged (CLOSED with no failure counted). A driver may keep both and skip the machine
    on the hot path: the answers are this table's, computed once per state."""
    if s.state is not CLOSED:
        return None, False
    return Permit(s.epoch), not s.failures


def success_counts(cfg: BreakerConfig) -> bool:
    """Can a SUCCESS reported with a non-probe permit change any state, in any process?

    Only by clearing the failures counted while CLOSED (a non-probe permit is CLOSED's: in
    OPEN, in HALF_OPEN or after a reset its epoch is stale). With ``failure_threshold`` 1
    none is ever counted, since the first failure opens the breaker: False, and a driver
    need not report such a success at all (a shared one: no round trip). With a higher
    threshold a driver cannot skip one on its own view, however fresh and clean: another
    process may have counted failures since it was read, and this success must clear them
    (failures count as consecutive across processes)."""
    return cfg.failure_threshold > 1


def allow(
    s: BreakerState, cfg: BreakerConfig, now: float, token: str
) -> tuple[BreakerState, Permit | Rejection]:
    """May a call go now? ``token`` names the probe lease if the call becomes a probe."""
    s = advance(s, cfg, now)
    if s.state is CLOSED:  # the hot path: no new state, one small object
        return s, Permit(s.epoch)
    if s.state is HALF_OPEN and len(s.probes) < cfg.half_open_max_calls:
        _next_state(s, Event.ALLOW, Guard.SLOT_FREE)
        leased = replace(s, probes=(*s.probes, (token, now + cfg.probe_lease)))
        return leased, Permit(s.epoch, token)
    _next_state(s, Event.ALLOW, Guard.WAITING if s.state is OPEN else Guard.SLOTS_FULL)
    when = retry_at(s, cfg)
    assert when is not None
    return s, Rejection(when)


def record(
    s: BreakerState, cfg: BreakerConfig, now: float, event: Event, permit: Permit
) -> BreakerState:
    """Report how a permitted call ended: SUCCESS, FAILURE or IGNORED."""
    if event not in (Event.SUCCESS, Event.FAILURE, Event.IGNORED):
        raise ValueError(f"record() takes an outcome, not {event!r}")
    s = advance(s, cfg, now)
    if permit.epoch != s.epoch or s.state is OPEN:  # OPEN admits nobody: only stale permits
        _next_state(s, event, Guard.STALE)
        return s
    if s.state is CLOSED:
        if event is Event.SUCCESS:  # the hot path: no table lookup, usually no new state
            return replace(s, failures=0) if s.failures else s
        if event is Event.FAILURE:
            failures = s.failures + 1
            if failures >= cfg.failure_threshold:
                return _enter(s, _next_state(s, event, Guard.REACHED), now)
            _next_state(s, event, Guard.BELOW)
            return replace(s, failures=failures)
        _next_state(s, event, Guard.CURRENT)
        return s
    # HALF_OPEN: give the slot back first, whatever the outcome.
    released = replace(s, probes=tuple(p for p in s.probes if p[0] != permit.probe))
    if event is Event.SUCCESS:
        successes = s.successes + 1
        if successes >= cfg.success_threshold:
            return _enter(s, _next_state(s, event, Guard.REACHED), now)
        _next_state(s, event, Guard.BELOW)
        return replace(released, successes=successes)
    if event is Event.FAILURE:
        return _enter(s, _next_state(s, event, Guard.CURRENT), now)
    _next_state(s, event, Guard.CURRENT)
    return released


def retry_at(s: BreakerState, cfg: BreakerConfig) -> float | None:
    """When a refused caller may expect a probe to be let through; None while one would be.

    OPEN: at the end of the timeout. HALF_OPEN with every slot leased: when the oldest lease
    runs out (its probe may well report sooner). ``s`` should be advanced to ``now`` first.
    """
    if s.state is OPEN:
        assert s.opened_at is not None
        return s.opened_at + cfg.timeout
    if s.state is HALF_OPEN and len(s.probes) >= cfg.half_open_max_calls:
        return min(expiry for _, expiry in s.probes)
    return None


def reset(s: BreakerState, now: float) -> BreakerState:
    """Back to CLOSED with clean counters (an operator's decision, valid from any state)."""
    return _enter(s, _next_state(s, Event.RESET, Guard.ANY), now)


def _next_state(s: BreakerState, event: Event, guard: Guard) -> CircuitState:
    # Every decision above passes through the table, so a row missing from it is an error
    # here rather than a silent divergence from the documentation and the Lua twin.
    return _NEXT[(s.state, event, guard)]


def _enter(s: BreakerState, state: CircuitState, now: float) -> BreakerState:
    opened_at = now if state is OPEN else (None if state is CLOSED else s.opened_at)
    return BreakerState(state=state, epoch=s.epoch + 1, opened_at=opened_at)
