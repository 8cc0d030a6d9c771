"""Token-bucket arithmetic in GCRA form (the generic cell rate algorithm).

Instead of a token count that a timer refills, the state is one timestamp, the *theoretical
arrival time* (TAT): the moment the bucket would be full again if nobody asked for more.
With the emission interval ``T = 1 / rate`` and the burst tolerance
``tau = (capacity - 1) * T``, a request at ``now`` may go at::

    start = max(now, TAT - tau, paused_until)        wait = start - now
    TAT'  = max(TAT, start) + T

A caller *reserves* its slot (``TAT'`` is stored at once) and then sleeps ``wait`` outside any
lock, so waiters are served in arrival order and nobody polls. In any window of ``W``
seconds at most ``capacity + W * rate`` slots start. ``src/tunegate/_lua/token_bucket.lua``
is the Redis twin of this module; ``tests/test_ratelimit_redis.py`` runs both on the same
inputs.

Pure: every function takes ``now`` (any monotonic seconds) and returns new state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from tunegate._policy.headers import get_header, parse_retry_after
from tunegate.exceptions import ConfigurationError

__all__ = [
    "MAX_PAUSE",
    "RATE_LIMITED_PAUSE",
    "BucketState",
    "Limits",
    "Phase",
    "Reservation",
    "available_tokens",
    "charge",
    "clamp_pause",
    "debt",
    "member_rank",
    "pause",
    "pause_from_headers",
    "phase_slot",
    "release",
    "rephase",
    "rescale",
    "reserve",
    "reserve_phased",
    "reserve_tokens",
    "resume",
    "share",
    "share_phased",
    "start_empty",
    "start_phased",
    "take",
]

# A 429 that says nothing about how long to wait still pauses every sharer this long.
RATE_LIMITED_PAUSE = 1.0
# Longest pause any header (or a garbage value like "Retry-After: 1e12") can impose.
MAX_PAUSE = 86_400.0
# X-RateLimit-Reset values at least this large are UNIX times, smaller ones are seconds.
_EPOCH_THRESHOLD = 1_000_000_000.0
# Summing float intervals leaves waits like 1e-13 s where the answer is 0; below any
# clock's sleep resolution, so they count as no wait.
_NOISE = 1e-6


@dataclass(frozen=True, slots=True)
class Limits:
    """``rate`` tokens per second, at most ``capacity`` of them in one burst."""

    rate: float
    capacity: int

    # GCRA's ``T``, seconds between two tokens at the steady rate, and ``tau``, how far
    # ahead of the steady schedule a burst may run: worked out once, read on every grant.
    interval: float = field(init=False, repr=False, compare=False)
    tolerance: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float):
            raise ConfigurationError(
                f"rate must be a number of tokens per second, not {self.rate!r}"
            )
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ConfigurationError(f"rate must be a positive finite number, not {self.rate!r}")
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise ConfigurationError(f"capacity must be an int, not {self.capacity!r}")
        if self.capacity < 1:
            raise ConfigurationError(f"capacity must be at least 1, not {self.capacity!r}")
        object.__setattr__(self, "interval", 1.0 / self.rate)
        object.__setattr__(self, "tolerance", (self.capacity - 1) / self.rate)


class BucketState(NamedTuple):  # a tuple, not a frozen dataclass: a grant builds one
    """``tat``: when the bucket is full again; ``paused_until``: no token before this."""

    tat: float = -math.inf
    paused_until: float = -math.inf


class Reservation(NamedTuple):
    """The answer to :func:`reserve`.

    ``granted`` False means the wait exceeded ``max_wait`` and nothing was reserved;
    ``wait`` is then how long the caller would have had to wait. ``state`` is the state to
    store; ``previous_tat`` is what :func:`release` restores.
    """

    granted: bool
    wait: float
    state: BucketState
    previous_tat: float


_new_state = tuple.__new__


def _start(state: BucketState, limits: Limits, now: float) -> float:
    """When the next slot starts (GCRA): not before now, the burst's edge, a pause's end."""
    return max(now, state.tat - limits.tolerance, state.paused_until)


def _after(state: BucketState, limits: Limits, start: float) -> BucketState:
    """The state once the slot starting at ``start`` is taken."""
    # tuple.__new__: half the cost of the NamedTuple's own __new__ (every grant builds one)
    return _new_state(BucketState, (max(state.tat, start) + limits.interval, state.paused_until))


def reserve(
    state: BucketState, limits: Limits, now: float, max_wait: float | None = None
) -> Reservation:
    """Reserve the next slot; refuse (reserving nothing) when it is more than ``max_wait`` away."""
    start = _start(state, limits, now)
    wait = start - now
    if wait < _NOISE:
        wait = 0.0
    if max_wait is not None and wait > max_wait:
        return Reservation(False, wait, state, state.tat)
    return Reservation(True, wait, _after(state, limits, start), state.tat)


def take(state: BucketState, limits: Limits, now: float) -> BucketState | None:
    """The state after taking a token that is there at ``now`` (:func:`reserve` with no
    wait allowed, without its :class:`Reservation`: the hot path), or None when a caller
    would have to wait for it."""
    start = _start(state, limits, now)
    if start - now >= _NOISE:
        return None
    return _after(state, limits, start)


def reserve_tokens(
    state: BucketState, limits: Limits, now: float, tokens: int, max_wait: float | None = None
) -> Reservation:
    """Reserve ``tokens`` consecutive slots together, all or none: :func:`reserve` repeated,
    kept only if the last slot starts within ``max_wait``. ``wait`` is the last slot's (the
    caller uses them together then); :func:`release` gives them all back."""
    last = reserve(state, limits, now)
    for _ in range(tokens - 1):
        last = reserve(last.state, limits, now)
    if max_wait is not None and last.wait > max_wait:
        return Reservation(granted=False, wait=last.wait, state=state, previous_tat=state.tat)
    return Reservation(granted=True, wait=last.wait, state=last.state, previous_tat=state.tat)


def release(state: BucketState, reservation: Reservation) -> BucketState:
    """Give an abandoned reservation's slot back, but only if nobody reserved after it.

    Handing back a slot from the middle of the queue would let a newcomer go at the same
    moment as the last waiter, which breaks the burst bound; such a slot stays spent.
    """
    if reservation.granted and state.tat == reservation.state.tat:
        return BucketState(reservation.previous_tat, state.paused_until)
    return state


def pause(state: BucketState, limits: Limits, now: float, seconds: float) -> BucketState:
    """No token before ``now + seconds`` (never shortens a pause already set).

    The bucket also restarts empty: after the pause one token is there and the rest refill
    at the steady rate, so a provider that just pushed back does not get a full burst.
    """
    until = max(state.paused_until, now + clamp_pause(seconds))
    return BucketState(tat=max(state.tat, until + limits.tolerance), paused_until=until)


def resume(
    state: BucketState, limits: Limits, now: float, before: float = -math.inf
) -> BucketState:
    """End a pause at ``now`` (an operator's call: the provider is answering again).

    ``before`` is the TAT just before the pause raised it (the backlog reserved then). The
    bucket restarts empty at ``now``, as at a pause's end, keeping that backlog. When a
    caller has reserved a slot behind the pause (the TAT has moved past where the pause put
    it), that caller is asleep until its slot, maybe in another process, and cannot be
    called back: the slots stand, and new callers still queue behind them.
    """
    if state.paused_until <= now:
        return state
    if state.tat - (state.paused_until + limits.tolerance) > _NOISE:
        return BucketState(state.tat, now)
    return BucketState(max(before, now + limits.tolerance), now)


def rescale(state: BucketState, old: Limits, new: Limits, now: float) -> BucketState:
    """Carry the tokens already owed (reserved ahead of ``now``) over to new limits."""
    if state.tat <= now:
        return state
    owed = (state.tat - now) * old.rate
    return BucketState(now + owed / new.rate, state.paused_until)


def available_tokens(state: BucketState, limits: Limits, now: float) -> float:
    """Tokens a caller could take at ``now`` without waiting (0 while paused)."""
    if now < state.paused_until:
        return 0.0
    owed = max(0.0, state.tat - now) * limits.rate
    return max(0.0, limits.capacity - owed)


def clamp_pause(seconds: float) -> float:
    """A pause between 0 and :data:`MAX_PAUSE` seconds (NaN and negatives become 0)."""
    return min(max(0.0, seconds), MAX_PAUSE)


def pause_from_headers(
    headers: Mapping[str, str], now_wall: float, status: int | None = None
) -> float | None:
    """Seconds every sharer of the bucket should pause after this response, or None.

    The headers that count (names case-insensitive):

    - ``Retry-After``: delta-seconds or an HTTP-date (any status).
    - ``X-RateLimit-Remaining`` of 0 (or less) together with ``X-RateLimit-Reset``: pause until
      the reset. A reset of 10**9 or more is a UNIX time (some upstreams send one), a
      smaller one is seconds from now.
    - When both give a wait, the longer one wins; the result is capped at :data:`MAX_PAUSE`.
    - ``status == 429`` with none of the above readable: :data:`RATE_LIMITED_PAUSE` seconds.

    ``X-RateLimit-Limit`` is ignored: no provider sends the window it applies to (one was
    observed sending ``800`` per zone, shared with other clients), so it cannot become a
    rate, and the configured rate is the contract. A wait of 0 means "go ahead" and returns None.
    """
    hints: list[float] = []
    retry_after = parse_retry_after(get_header(headers, "Retry-After"), now_wall)
    if retry_after is not None:
        hints.append(retry_after)
    remaining = _number(get_header(headers, "X-RateLimit-Remaining"))
    reset = _number(get_header(headers, "X-RateLimit-Reset"))
    if remaining is not None and remaining <= 0 and reset is not None:
        hints.append(max(0.0, reset - now_wall if reset >= _EPOCH_THRESHOLD else reset))
    if hints:
        wait = max(hints)
        return clamp_pause(wait) if wait > 0 else None
    if status == 429:
        return RATE_LIMITED_PAUSE
    return None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# -- one process's share of a fleet's bucket, while the fleet's Redis is away ---------------


def share(limits: Limits, members: int) -> Limits:
    """One of ``members`` processes' part of ``limits``: the rate divided, and the capacity
    too (rounded down, at least 1), so that the shares add up to no more than the whole
    (except that ``members`` above the capacity still get 1 each)."""
    n = max(1, members)
    return Limits(limits.rate / n, max(1, limits.capacity // n))


def start_empty(state: BucketState, limits: Limits, now: float) -> BucketState:
    """The bucket with no token left at ``now`` (the next one an interval away).

    A process that starts on its share when Redis is lost does not know what the shared
    bucket had left; the others may just have used it, so its share starts without a burst.
    """
    return BucketState(max(state.tat, now + limits.capacity * limits.interval), state.paused_until)


def debt(state: BucketState, limits: Limits, now: float, floor: float = -math.inf) -> float:
    """Tokens reserved (ahead of ``now`` included) that the bucket has not refilled yet,
    beyond ``floor``: the TAT it had before them (an empty start, a pause), which are no
    grants. What a process hands to the shared bucket when Redis is back."""
    return max(0.0, state.tat - max(now, floor)) * limits.rate


def charge(state: BucketState, limits: Limits, now: float, tokens: float) -> BucketState:
    """``state`` owing ``tokens`` more: the Lua script's ``acquire`` with a charge does this
    before it reserves."""
    if not tokens > 0:
        return state
    return BucketState(max(state.tat, now) + tokens * limits.interval, state.paused_until)


# -- phased shares: members of a fleet granting in turn on the wall-clock grid ---------------
#
# Shares that are only rate / members still let two members grant in the same second: each
# keeps its own schedule, unsynchronised with the others'. A quota of one request per second
# shared by two processes at 0.5/s each then sees two requests in one second whenever their
# schedules drift together. Phased, the members take turns instead: time is cut into slots
# of one fleet interval (1 / rate) on the wall clock, which the processes of one machine (or
# of NTP-synchronised hosts) agree on, and member ``k`` of ``n`` grants only at the start of
# slots ``j`` with ``j % n == k``. Two members then never grant within one interval of each
# other, whatever each one's own schedule: the merged grants are as far apart as the shared
# bucket's with a capacity of 1.


class Phase(NamedTuple):
    """Member ``rank`` (0-based) of ``members``: which slots of the grid are its own."""

    rank: int
    members: int


def member_rank(member: str, live: Iterable[str]) -> int:
    """``member``'s rank among the ``live`` member ids: how many of them sort before it. The
    Lua script counts the same way (the ids are lowercase hex of one length, which every
    collation orders alike)."""
    return sum(1 for other in live if other < member)


def share_phased(limits: Limits, members: int) -> Limits:
    """A phased member's part of ``limits``: the rate divided by ``members``, and no burst
    (capacity 1) when it has company: a burst would take another member's slots."""
    n = max(1, members)
    return limits if n == 1 else Limits(limits.rate / n, 1)


def phase_slot(t: float, rate: float, phase: Phase) -> float:
    """The start of the first slot at or after ``t`` (wall seconds) that ``phase`` owns.

    The grid's slot ``j`` runs from ``j / rate`` for one interval; member ``k`` of ``n``
    owns the slots with ``j % n == k``. A ``t`` within float noise after a slot's start
    counts as at it.
    """
    n = max(1, phase.members)
    j = math.ceil((t - _NOISE) * rate)
    j += (phase.rank - j) % n
    return j / rate


def start_phased(
    state: BucketState, limits: Limits, now: float, reserved_until: float, members: int = 2
) -> BucketState:
    """The hand-over to a phased share: no grant before ``members`` fleet intervals after the
    later of ``now`` and ``reserved_until``, the shared TAT as last heard (callers asleep
    until a shared slot still go then, and each other member may have reserved a slot more
    since, plus one for good measure).
    """
    floor = max(now, reserved_until) + max(1, members) * limits.interval
    return BucketState(max(state.tat, floor), state.paused_until)


def reserve_phased(
    state: BucketState,
    limits: Limits,
    phase: Phase,
    now: float,
    wall: float,
    max_wait: float | None = None,
    tokens: int = 1,
) -> Reservation:
    """:func:`reserve_tokens` on the phased share of the fleet's ``limits``: each slot at the
    start of the next grid slot that ``phase`` owns, no burst. ``now`` is the bucket's clock
    (what ``state`` is kept in), ``wall`` the wall clock at the same moment (the grid's).
    One member alone (``phase.members`` 1) is the plain bucket."""
    if phase.members <= 1:
        return reserve_tokens(state, limits, now, tokens, max_wait)
    mine = share_phased(limits, phase.members)
    offset = wall - now
    last = state
    start = now
    for _ in range(max(1, tokens)):
        start = max(now, last.tat, last.paused_until)  # capacity 1: tolerance 0
        start = phase_slot(start + offset, limits.rate, phase) - offset
        last = BucketState(max(last.tat, start) + mine.interval, last.paused_until)
    wait = start - now
    if wait < _NOISE:
        wait = 0.0
    if max_wait is not None and wait > max_wait:
        return Reservation(False, wait, state, state.tat)
    return Reservation(True, wait, last, state.tat)


def rephase(
    state: BucketState,
    limits: Limits,
    phase: Phase,
    now: float,
    wall: float,
    starts: Sequence[float],
    deadlines: Sequence[float | None],
) -> tuple[BucketState, list[float]]:
    """Slots a member reserved in the shared bucket before it was lost (``starts``, in
    order; each caller's ``deadline`` or None), moved onto ``phase``'s turns of the phased
    ``state``: each to the first own slot at or after both its start and the slots before
    it, never earlier. A start already due stays, as does one a move would take past its
    deadline. Returns the state with those slots taken and the new starts.

    Another member reading a staler shared TAT than these slots may start its turns before
    they are due; on its turns they cannot meet its grants.
    """
    moved: list[float] = []
    for start, deadline in zip(starts, deadlines, strict=True):
        if start <= now:
            moved.append(start)
            continue
        trial = BucketState(max(state.tat, start), state.paused_until)
        r = reserve_phased(trial, limits, phase, now, wall)
        new = now + r.wait
        if deadline is not None and new > deadline:
            moved.append(start)
            continue
        state = r.state
        moved.append(max(new, start))
    return state, moved
