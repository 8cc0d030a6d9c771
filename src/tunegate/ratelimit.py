"""Per-provider token buckets, in this process or shared by every process through Redis.

::

    limiter = RateLimiter()                      # this process only
    limiter = RateLimiter(redis=redis_client)    # one bucket per provider for every process
    limiter.configure_provider("spotify", rate=10.0, capacity=10)
    waited = limiter.acquire("spotify")          # or: await limiter.aacquire("spotify")
    if limiter.acquire("spotify", blocking=False):   # the design's form: True or False
        ...

The arithmetic is :mod:`tunegate._policy.bucket` (GCRA). A caller reserves its slot, under a
lock held only for that arithmetic (locally) or in one Lua call (shared), and then sleeps
outside it: waiters are served in arrival order and nobody polls, unless they name
themselves (``with tunegate.caller("app-a"):``): each bucket's waiters are then served
round-robin by caller key, on the same slots. One :class:`TokenBucket` serves threads and
asyncio tasks alike. A local bucket with a token there grants it without a flow at all
(:meth:`RateLimiter.acquire`'s hot path).

Shared buckets fail open: when Redis cannot serve (unreachable, stalled past the link's
0.5 s socket timeout, out of memory, read-only...) each process falls back to a local bucket
holding its share of the quota (one warning per outage) and returns to the shared one when
Redis answers again. No call fails because of Redis. The share is the rate divided by the
members last seen in Redis, taken in turns on the wall clock's grid (member k of n grants
only in the slots j with j % n == k): every process using a shared bucket marks itself there
on its acquires and hears its rank back (no extra round trip), so a fleet that loses Redis
stays under quota instead of each process taking the whole rate, and two members never
grant in the same interval (see :class:`TokenBucket` and ``docs/rate-limiting.md``).

Every operation that may talk to Redis or sleep is written once, as a flow of effects
(:meth:`RateLimiter.acquire_flow`, :meth:`RateLimiter.adjust_flow`, ...), which the request
path composes with ``yield from`` and the public methods run with
:func:`tunegate._drive.drive` (threads) or :func:`tunegate._drive.adrive` (asyncio).
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypedDict, cast, overload

from tunegate._clock import Clock, SystemClock
from tunegate._consumption import ConsumptionMeter, Usage, usage
from tunegate._drive import Flow, adrive, drive
from tunegate._drive import Sleep as _Sleep  # the one leaf sleep effect
from tunegate._policy.bucket import (
    _NOISE,
    RATE_LIMITED_PAUSE,
    BucketState,
    Limits,
    Phase,
    Reservation,
    available_tokens,
    clamp_pause,
    debt,
    pause,
    pause_from_headers,
    release,
    rephase,
    rescale,
    reserve,
    reserve_phased,
    reserve_tokens,
    resume,
    share,
    share_phased,
    start_empty,
    start_phased,
    take,
)
from tunegate._redis import LinkOwner, RedisCall, RedisLike, RedisLink, lua
from tunegate.exceptions import ConfigurationError, RateLimitTimeout
from tunegate.providers.spec import SPECS

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_MEMBER_TTL",
    "PROVIDER_DEFAULTS",
    "BucketStats",
    "Granted",
    "LimiterStats",
    "RateLimiter",
    "TokenBucket",
    "WaitStats",
    "caller",
    "current_caller",
]

log = logging.getLogger("tunegate.ratelimit")

# (rate per second, capacity) by provider, read from the provider specs: what a provider
# nobody configured gets on first use.
PROVIDER_DEFAULTS: Mapping[str, tuple[float, int]] = MappingProxyType(
    {name: (spec.rate, spec.capacity) for name, spec in SPECS.items()}
)

DEFAULT_KEY_PREFIX = "tunegate:rl:"
DEFAULT_IDLE_TTL = 3600.0
# A member not seen acquiring for this long no longer counts towards the shares. Shares only
# matter while Redis is away, so counting a gone process a little too long costs little.
DEFAULT_MEMBER_TTL = 30.0
_BEATS_PER_TTL = 4  # a member marks itself seen at most this often per TTL

_SCRIPT = lua("token_bucket.lua")
_US = 1_000_000.0


class WaitStats(TypedDict):
    """Acquisitions in this process that had to wait: how many, seconds in total, longest."""

    count: int
    total: float
    max: float


class BucketStats(TypedDict):
    """One provider's figures, as :meth:`RateLimiter.get_stats` reports them.

    ``rate``, ``capacity``, ``available_tokens`` and ``paused_until`` (UNIX time, or None
    when not paused) describe the bucket itself: the shared one when ``shared`` is True.
    ``granted`` and ``waits`` count this process's acquisitions.
    """

    rate: float
    capacity: int
    available_tokens: float
    granted: int
    waits: WaitStats
    paused_until: float | None
    shared: bool


# -- fair share between callers ---------------------------------------------------------

_CALLER: ContextVar[str | None] = ContextVar("tunegate_caller", default=None)
# A waiter postponed more often than this (one postponement per caller served before it)
# leaves the queue and keeps the slot it then has: a bound on its loop, nothing else.
_MAX_NAPS = 1000


@contextlib.contextmanager
def caller(key: str) -> Iterator[None]:
    """The acquires made inside are ``key``'s (one calling application, an API key...).

    Callers of one provider that have to wait for a token are then served round-robin by
    key instead of in arrival order, so a caller with many requests queued cannot starve
    one with a few. A context variable: works in threads and asyncio tasks (tasks started
    inside inherit it). The key is only compared, never logged or reported.
    """
    if not isinstance(key, str) or not key:
        raise ConfigurationError("caller key must be a non-empty string")
    token = _CALLER.set(key)
    try:
        yield
    finally:
        _CALLER.reset(token)


def current_caller() -> str | None:
    """The key set by the innermost :func:`caller` block, or None."""
    return _CALLER.get()


class _Waiter:
    """A caller asleep until ``start`` (monotonic), queued in its bucket's :class:`_Queue`.

    ``start`` only moves later (another caller's turn came first), never past ``deadline``
    (its ``timeout``); ``reserved`` is the start its own reservation gave it.
    """

    __slots__ = ("deadline", "key", "reserved", "round", "start")

    def __init__(
        self, key: str | None, round_: int, start: float, reserved: float, deadline: float | None
    ) -> None:
        self.key = key
        self.round = round_
        self.start = start
        self.reserved = reserved
        self.deadline = deadline


class _Queue:
    """The callers of one bucket asleep until their slots, in slot order, and the rule that
    orders them: round-robin by caller key (start-time fair queueing by rounds).

    A waiter's round is one more than its key's previous waiter's, or the round now being
    served for a key with nobody waiting. A newcomer goes behind every waiter of its round
    or an earlier one: it takes that position's slot, and the waiters behind move one slot
    later each, the last one onto the slot the newcomer reserved. So the set of slots is
    the one the bucket reserved (its bound holds), nobody is moved earlier, and with one
    key (or none) everybody goes behind everybody: arrival order, as without a queue.
    Not thread-safe: the bucket's lock guards it.
    """

    __slots__ = ("_pending", "_served", "waiters")

    def __init__(self) -> None:
        self.waiters: list[_Waiter] = []
        self._pending: dict[str | None, list[int]] = {}  # key -> [waiting, last round]
        self._served = 0  # the round of the last waiter whose turn came

    def join(self, key: str | None, start: float, deadline: float | None) -> _Waiter:
        q = self.waiters
        pending = self._pending.get(key)
        round_ = self._served if pending is None else max(self._served, pending[1] + 1)
        fair = len(q)  # behind every waiter of this round or an earlier one
        while fair > 0 and q[fair - 1].round > round_:
            fair -= 1
        slot = len(q)  # where the reserved start sorts (the end, unless threads raced)
        while slot > 0 and q[slot - 1].start > start:
            slot -= 1
        at = min(fair, slot)  # nobody moves earlier than they are
        for i in range(slot - 1, at - 1, -1):  # one moved past its timeout stays, as do those
            later = q[i + 1].start if i + 1 < slot else start  # ahead of it
            deadline_i = q[i].deadline
            if deadline_i is not None and later > deadline_i:
                at = i + 1
                break
        waiter = _Waiter(key, round_, q[at].start if at < slot else start, start, deadline)
        for i in range(at, slot):  # forwards: each takes the next one's slot before it moves
            q[i].start = q[i + 1].start if i + 1 < slot else start
        q.insert(at, waiter)
        if pending is None:
            self._pending[key] = [1, round_]
        else:
            pending[0] += 1
            pending[1] = max(pending[1], round_)
        return waiter

    def leave(self, waiter: _Waiter, *, served: bool) -> None:
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)
        if served:
            self._served = max(self._served, waiter.round)
        pending = self._pending.get(waiter.key)
        if pending is not None:
            pending[0] -= 1
            if pending[0] <= 0:
                del self._pending[waiter.key]
            elif not served and waiter.round == pending[1]:
                # A cancelled last waiter: its key's next one takes the round after the last
                # still queued, not after the cancelled one (it would lose a turn).
                rounds = [w.round for w in self.waiters if w.key == waiter.key]
                pending[1] = max(rounds, default=self._served)


class _Ticket(NamedTuple):  # not a frozen dataclass: half the cost on the hot path
    """A reservation made locally (``local``) or in Redis (``shared``: the tat strings)."""

    granted: bool
    wait: float
    local: Reservation | None = None
    shared: tuple[Any, Any] | None = None


def _ticket_from_reply(reply: Any) -> _Ticket:
    granted, wait_us, tat_after, tat_before = reply[:4]  # then the members (TokenBucket)
    return _Ticket(granted=bool(granted), wait=wait_us / _US, shared=(tat_after, tat_before))


def _max_wait(timeout: float | None) -> float | None:
    return None if timeout is None else max(0.0, timeout)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _expected_members(members: int) -> int:
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ConfigurationError(f"members must be a positive int, not {members!r}")
    return members


def _member_ttl(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ConfigurationError(f"member_ttl must be positive seconds, not {seconds!r}")
    if not math.isfinite(seconds):
        raise ConfigurationError(f"member_ttl must be finite seconds, not {seconds!r}")
    return float(seconds)


class TokenBucket:
    """One provider's token bucket: local state behind a lock, or a shared Redis hash.

    Use it through :class:`RateLimiter` (``limiter.buckets["spotify"]``); build one yourself
    only to limit something else. ``redis`` makes it shared; ``clock`` is for tests.

    A shared bucket is a *member* of its fleet: its acquires mark it seen in a sorted set
    beside the bucket (``{key}:members``, at most every ``member_ttl / 4`` seconds, in the same
    script call) and read back how many members were seen within ``member_ttl``
    (:attr:`members`), and its rank among them (:attr:`phase`). While Redis cannot serve, it
    grants at ``rate / members`` with no burst, where ``members`` is the largest of that
    count, the fleet's configured size (``members=``) and, in a :class:`RateLimiter`, the
    count its other providers' buckets saw (``peers``: a provider not used before the outage
    counted no one), in turns: only at the start of the wall clock's slots (``1 / rate``
    long) that its rank owns (``phases``: a sibling's rank when it heard none; ``member``: the
    id it shares with its siblings), so that two members never grant within one interval of
    each other. It starts an interval per member after the shared reservations last heard
    (unless it never heard from Redis and expects no other member). When Redis answers again
    it hands what it granted meanwhile to the shared bucket, and for a short grace period
    (the link's retry interval plus two of its own intervals, while the others may still be
    on their shares) it takes both a shared and a local token for each acquire.
    """

    def __init__(
        self,
        provider: str,
        rate: float,
        capacity: int,
        *,
        clock: Clock | None = None,
        redis: RedisLink | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        idle_ttl: float = DEFAULT_IDLE_TTL,
        member_ttl: float = DEFAULT_MEMBER_TTL,
        members: int = 1,
        peers: Callable[[], int] | None = None,
        member: str | None = None,
        phases: Callable[[], Phase | None] | None = None,
    ) -> None:
        limits = Limits(rate, capacity)
        self.provider = provider
        self._configured = limits  # what the application asked for
        self._limits = limits  # in force locally (differs after adjust_rate)
        self._state = BucketState()
        self._lock = threading.Lock()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._link = redis
        # The hash tag keeps every key of one provider in one cluster slot.
        self.key = f"{key_prefix}{{{provider}}}"
        self._what = f"rate limiter {provider!r}"
        self._idle_ms = str(max(1, round(idle_ttl * 1000)))
        self._granted = 0
        self._wait_count = 0
        self._wait_total = 0.0
        self._wait_max = 0.0
        # The fleet: this bucket's member id (random, no meaning), the members last seen,
        # when to mark itself seen next, and the fallback state (see the class docstring).
        self.members_key = f"{self.key}:members"
        self._keys = (self.key, self.members_key)
        # Lowercase hex of one length: the Lua script and the policy order ids alike.
        self._member = member if member is not None else secrets.token_hex(8)
        self._member_ttl_ms = str(max(1, round(_member_ttl(member_ttl) * 1000)))
        self._beat_every = member_ttl / _BEATS_PER_TTL
        self._beat_due = -math.inf
        self._members = 1
        self._expected = _expected_members(members)  # the fleet's size as configured
        # The members its sibling buckets saw (RateLimiter): a bucket not used before an
        # outage counted nobody, but the processes sharing the other providers are there.
        self._peers = peers
        # Its turn among the members (rank, count) as last heard with a mark, and the best
        # its sibling buckets heard (same member id: the same order): the phased share.
        self._phase_heard: Phase | None = None
        self._phases = phases
        self._fleet = limits  # the limits in force in Redis, as last heard
        self._heard_from_redis = False
        self._reserved_until = -math.inf  # the shared TAT as last heard, on our clock
        self._falling_back = False
        self._fallbacks = 0  # outages this bucket fell back through
        self._charging = False
        self._floor = -math.inf  # the TAT before the fallback's own grants (see debt())
        self._grace_until = -math.inf
        # The wall clock minus the bucket's, read once per fallback: the grid of a phased
        # share is on the wall clock, its state on the bucket's (re-reading the difference
        # each time would jitter a slot start by microseconds and skip a turn).
        self._wall_offset: float | None = None
        self._before_pause = -math.inf  # the TAT before the last pause raised it
        self._queue = _Queue()  # callers asleep until their slots (fair share by caller)
        self._metered = False  # RateLimiter: its meter has a first sample (see acquire)

    def __repr__(self) -> str:
        return (
            f"TokenBucket({self.provider!r}, rate={self.rate!r}, capacity={self.capacity!r},"
            f" shared={self.shared!r})"
        )

    @property
    def rate(self) -> float:
        """Tokens per second in force in this process (see :meth:`stats` for the shared one)."""
        return self._limits.rate

    @property
    def capacity(self) -> int:
        return self._limits.capacity

    @property
    def shared(self) -> bool:
        """True when the bucket is kept in Redis (it may still be falling back right now)."""
        return self._link is not None

    @property
    def members(self) -> int:
        """Processes (buckets) sharing this one that acquired within ``member_ttl``, as this
        process last heard from Redis (1 until it has; always 1 for a local bucket)."""
        return self._members

    # -- acquiring -------------------------------------------------------------------------
    # Each operation is written once, as a flow of effects (tunegate._drive.drive/adrive):
    # the public sync and async methods only pick the driver.

    def acquire(self, timeout: float | None = None) -> float:
        """Block until a token is there and return the seconds waited.

        With ``timeout`` (seconds), raise :class:`~tunegate.exceptions.RateLimitTimeout` at
        once, consuming nothing, when the wait would be longer.
        """
        return drive(self.acquire_flow(timeout))

    # `timeout` bounds the reserved wait and refuses up front, which asyncio.timeout cannot.
    async def aacquire(self, timeout: float | None = None) -> float:  # noqa: ASYNC109
        """The asyncio form of :meth:`acquire`.

        A waiter cancelled while sleeping gives its slot back when nobody reserved after it;
        otherwise the slot stays spent (handing it back would let two callers go at once).
        """
        return await adrive(self.acquire_flow(timeout))

    def acquire_flow(self, timeout: float | None = None) -> Flow[float]:
        """:meth:`acquire` as a flow of effects, to compose with ``yield from``."""
        max_wait = _max_wait(timeout)
        if self._link is not None:
            ticket = yield from self._shared_ticket(max_wait)
        elif self._take_now():  # the local hot path: one hold of the lock, no sub-generator
            return 0.0
        else:
            ticket = self._reserve_local(max_wait)
        if not ticket.granted:
            raise RateLimitTimeout(self.provider, ticket.wait)
        wait = ticket.wait
        if wait > 0:
            wait = yield from self._wait_turn(ticket, max_wait, queued=True)
        self._record(wait)
        return wait

    def _wait_turn(self, ticket: _Ticket, max_wait: float | None, *, queued: bool) -> Flow[float]:
        """Sleep until the reserved slot, or (``queued``) the slot the fair queue gives this
        caller, which may move later while it sleeps: it then sleeps again for the rest.
        Return the seconds slept. Several tokens at once (not ``queued``) keep their slots."""
        clock = self._clock
        waiter: _Waiter | None = None
        wait = ticket.wait
        target = 0.0  # the start slept towards
        own = True  # False: this caller took the slot of one queued ahead (see below)
        if queued:
            with self._lock:
                now = clock.monotonic()
                deadline = None if max_wait is None else now + max_wait
                waiter = self._queue.join(_CALLER.get(), now + wait, deadline)
                wait = waiter.start - now
                target = waiter.start
                own = waiter.start >= waiter.reserved
        slept = 0.0
        try:
            for naps in range(_MAX_NAPS + 1):
                if wait >= _NOISE:
                    yield _Sleep(clock, wait)
                    slept += wait
                if waiter is None:
                    break
                with self._lock:
                    # Postponed while asleep? Measured on the slots, not the clock, so that
                    # a test clock standing still sees the same turns.
                    wait = waiter.start - target
                    target = waiter.start
                    if wait < _NOISE or naps >= _MAX_NAPS - 1:
                        self._queue.leave(waiter, served=True)
                        waiter = None
            return slept
        except BaseException:  # KeyboardInterrupt, a cancelled task: the slot goes unused
            if waiter is not None:
                with self._lock:
                    self._queue.leave(waiter, served=False)
            # The slot this caller reserved went to one it was queued ahead of: keep it spent.
            if own:
                yield from self._give_back(ticket)
            raise

    def _take_now(self) -> bool:
        """A local bucket's token if one is there now, taken and counted under one hold of
        the lock: the policy's :func:`take` (:func:`reserve` allowing no wait). False:
        nothing taken (the caller reserves a slot to wait for)."""
        with self._lock:
            state = take(self._state, self._limits, self._clock.monotonic())
            if state is None:
                return False
            self._state = state
            self._granted += 1
        return True

    def _reserve_local(self, max_wait: float | None) -> _Ticket:
        with self._lock:
            reservation = reserve(self._state, self._limits, self._clock.monotonic(), max_wait)
            self._state = reservation.state
        return _Ticket(reservation.granted, reservation.wait, reservation)  # positional: faster

    # -- the shared bucket and its fallback ---------------------------------------------------

    def _shared_ticket(self, max_wait: float | None, tokens: int = 1) -> Flow[_Ticket]:
        """A reservation (of ``tokens`` together) in Redis, or on this process's share while
        Redis cannot serve."""
        now = self._clock.monotonic()
        owed = 0.0
        with self._lock:
            if self._falling_back and not self._charging:  # one caller hands the debt over
                owed = debt(self._state, self._share(), now, self._floor)
                self._charging = True
            # Coming back, mark at once: a restarted Redis has forgotten every member.
            beat = now >= self._beat_due or self._falling_back
            heard = self._phase_heard
        member = self._member if beat else ""
        # Not marking: the script works the rank out again if the count moved since.
        ranked = "" if beat else f"{heard.members if heard is not None else ''}"
        reply = yield from self._script(
            "acquire", self._us_or_blank(max_wait), repr(owed) if owed else "", member,
            self._member_ttl_ms, "" if tokens == 1 else str(tokens),
            "" if beat else self._member, ranked,
        )  # fmt: skip
        if reply is None:
            return self._reserve_share(max_wait, tokens, empty=True)
        ticket = _ticket_from_reply(reply)
        paused = self._heard(now, reply, beat)
        if paused > 0:  # a pause the provider asked for while Redis was away: for everyone
            yield from self._script("pause", repr(paused * _US))
        if not ticket.granted or now >= self._grace_until:
            return ticket
        # Grace: the others may still be on their shares; take this one's share too.
        local = self._reserve_share(max_wait, tokens, empty=False)
        if not local.granted:
            assert ticket.shared is not None
            yield from self._script("release", *ticket.shared)
            return _Ticket(False, local.wait)
        return _Ticket(True, max(ticket.wait, local.wait), local.local, ticket.shared)

    def _heard(self, now: float, reply: Any, beat: bool) -> float:
        """Redis answered: remember the members and the limits in force there. When this
        ends a fallback, start the grace period and return the seconds left of a pause set
        locally meanwhile (else 0)."""
        members = int(reply[4])
        rank = int(reply[8]) if len(reply) > 8 else -1  # -1: no mark in this call
        fleet = (float(_text(reply[5])), int(float(_text(reply[6]))))
        # The fleet's reservations run this far ahead (read after the reply: late, not early).
        reserved_until = self._clock.monotonic() + float(_text(reply[7])) / _US
        paused = 0.0
        with self._lock:
            self._heard_from_redis = True
            self._reserved_until = reserved_until
            if fleet != (self._fleet.rate, self._fleet.capacity):
                self._fleet = Limits(*fleet)
            if beat:
                self._beat_due = now + self._beat_every
            if rank >= 0 and members > 0:
                self._phase_heard = Phase(rank, members)
            rejoined = self._falling_back
            if rejoined:
                self._falling_back = self._charging = False
                link = self._link
                assert link is not None
                self._grace_until = now + link.retry_interval + 2 * self._share().interval
                paused = max(0.0, self._state.paused_until - now)
            # 0: a call without the members key (never ours). In the grace period a restarted
            # Redis is still relearning its members: the count only goes up.
            if members > 0 and (members > self._members or now >= self._grace_until):
                self._members = members
        if rejoined:
            log.info("%s: Redis answers again; back on the shared bucket", self._what)
        return paused

    def _share(self) -> Limits:
        """This process's part of the limits in force in Redis (another process may have
        set them: adjust_rate), by the members last seen or the fleet's configured size,
        whichever is larger (a process started or joined during an outage is seen by no
        one). Phased (the default): no burst when it has company."""
        if self._phased:
            return share_phased(self._fleet, self._fleet_size())
        return share(self._fleet, self._fleet_size())

    def _fleet_size(self) -> int:
        peers = self._peers() if self._peers is not None else 1
        return max(self._members, self._expected, peers)

    # Phased shares (the default): the members of a fleet that lost Redis grant in turn on
    # the wall clock's grid (_policy/bucket.py). Tests turn it off to show the unphased ones.
    _phased = True

    def _phase(self) -> Phase | None:
        """This member's turn while Redis is away, or None (alone, or unphased): its rank
        as heard with the largest member count (its own, or a sibling bucket's, whose order
        is the same), among the fleet's size. Never heard one: a rank from its id."""
        n = self._fleet_size()
        if n <= 1 or not self._phased:
            return None
        best = self._phase_heard
        sibling = self._phases() if self._phases is not None else None
        if sibling is not None and (best is None or sibling.members > best.members):
            best = sibling
        rank = best.rank if best is not None else int(self._member, 16)
        return Phase(rank % n, n)

    def _wall_minus_clock(self) -> float:
        """The wall clock minus the bucket's, read back to back (the smallest of three)."""
        clock = self._clock
        best = math.inf
        for _ in range(3):
            before = clock.monotonic()
            wall = clock.time()
            after = clock.monotonic()
            if after - before < best:
                best, offset = after - before, wall - (before + after) / 2
        return offset

    @property
    def mode(self) -> Literal["local", "shared", "fallback"]:
        """``local`` (no Redis), ``shared`` (on the Redis bucket) or ``fallback`` (Redis
        cannot serve: on this process's share)."""
        if self._link is None:
            return "local"
        return "fallback" if self._falling_back else "shared"

    def mode_summary(self) -> dict[str, Any]:
        """What a run's summary shows of this bucket: its :attr:`mode`, the members last
        seen and configured, its turn (``[rank, members]``, or None) and the outages it
        fell back through."""
        phase = self._phase_heard
        return {
            "mode": self.mode,
            "members_seen": self._members,
            "members_configured": self._expected,
            "phase": None if phase is None else [phase.rank, phase.members],
            "fallbacks": self._fallbacks,
        }

    @property
    def phase(self) -> Phase | None:
        """This bucket's turn among its members (rank, count) as last heard from Redis, or
        None before its first mark."""
        return self._phase_heard

    def _reserve_share(self, max_wait: float | None, tokens: int, *, empty: bool) -> _Ticket:
        """A local reservation of ``tokens`` on this process's share (``empty``: Redis cannot
        serve; a fallback that starts here starts with no burst)."""
        with self._lock:
            now = self._clock.monotonic()  # after the failed call: it may have taken 0.5 s
            self._charging = False  # a debt sent in a call that failed was not handed over
            limits = self._share()
            phase = self._phase()
            state = self._state
            started = empty and not self._falling_back
            if started:
                self._falling_back = True
                self._fallbacks += 1
                if self._heard_from_redis or self._expected > 1:
                    # Tokens reserved in Redis before it went are still to be used (callers
                    # sleeping until their slots), and the others may just have emptied the
                    # bucket: the share starts empty once the fleet's reservations are done
                    # (phased: an interval per member after them, each other member may
                    # have reserved one more since this one last heard).
                    if phase is not None:
                        state = start_phased(
                            state, self._fleet, now, self._reserved_until, phase.members
                        )
                    else:
                        state = start_empty(state, limits, max(now, self._reserved_until))
                self._floor = state.tat
            if phase is not None:
                if started or self._wall_offset is None:
                    self._wall_offset = self._wall_minus_clock()
                wall = now + self._wall_offset
                if started:  # callers asleep until shared slots: onto this member's turns
                    state = self._rephase_waiters(state, phase, now, wall)
                reservation = reserve_phased(state, self._fleet, phase, now, wall, max_wait, tokens)
            elif tokens == 1:
                reservation = reserve(state, limits, now, max_wait)
            else:
                reservation = reserve_tokens(state, limits, now, tokens, max_wait)
            self._state = reservation.state
        if started:
            log.info(
                "%s: Redis cannot serve; granting this process's share, %g/s (1 of %d members%s)",
                self._what,
                limits.rate,
                self._fleet_size(),
                "" if phase is None else f", in turn {phase.rank}",
            )
        return _Ticket(reservation.granted, reservation.wait, reservation)

    def _rephase_waiters(
        self, state: BucketState, phase: Phase, now: float, wall: float
    ) -> BucketState:
        """Move the callers asleep until shared slots onto this member's turns (the policy's
        :func:`rephase`; each sees on waking that its slot moved and sleeps the rest).
        Under the lock."""
        waiters = self._queue.waiters
        if not waiters:
            return state
        starts = [w.start for w in waiters]
        state, moved = rephase(
            state, self._fleet, phase, now, wall, starts, [w.deadline for w in waiters]
        )
        for waiter, start in zip(waiters, moved, strict=True):
            waiter.start = start
        waiters.sort(key=lambda w: w.start)  # one kept for its deadline may now be ahead
        return state

    def _give_back(self, ticket: _Ticket) -> Flow[None]:
        if ticket.shared is not None:
            yield from self._script("release", *ticket.shared)
        if ticket.local is not None:
            with self._lock:
                self._state = release(self._state, ticket.local)

    def _record(self, wait: float) -> None:
        with self._lock:
            self._granted += 1
            if wait > 0:
                self._wait_count += 1
                self._wait_total += wait
                self._wait_max = max(self._wait_max, wait)

    # -- steering --------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """No token for anyone sharing this bucket before ``seconds`` from now.

        A pause never shortens one already set, and the bucket restarts empty afterwards.
        """
        drive(self._pause(seconds))

    async def apause(self, seconds: float) -> None:
        """The asyncio form of :meth:`pause`."""
        await adrive(self._pause(seconds))

    def _pause(self, seconds: float) -> Flow[None]:
        seconds = clamp_pause(seconds)
        # Locally too, so that a Redis outage right after still obeys it.
        with self._lock:
            before = self._state
            self._state = pause(before, self._limits, self._clock.monotonic(), seconds)
            if self._state.tat > before.tat:
                self._before_pause = before.tat  # what resume() restores
            self._floor = max(self._floor, self._state.tat)  # a pause is no grant (debt())
        yield from self._script("pause", repr(seconds * _US))

    def resume(self) -> None:
        """End a pause (one the provider asked for, or :meth:`pause`) now, for everyone
        sharing this bucket: the bucket restarts empty, one token now and the rest at the
        steady rate. Callers already asleep until a slot behind the pause (in this process
        or another) keep their slots, and new callers queue behind them. No pause: no-op."""
        drive(self._resume())

    async def aresume(self) -> None:
        """The asyncio form of :meth:`resume`."""
        await adrive(self._resume())

    def _resume(self) -> Flow[None]:
        with self._lock:
            now = self._clock.monotonic()
            self._state = resume(self._state, self._limits, now, self._before_pause)
            self._floor = min(self._floor, self._state.tat)  # tokens from here on are grants
        yield from self._script("resume")

    def adjust_rate(self, new_rate: float, new_capacity: int | None = None) -> None:
        """Change the rate (and optionally the capacity) in force, keeping tokens owed.

        On a shared bucket the change applies to every process until :meth:`reset_rate`, or
        until the bucket has been idle for ``idle_ttl`` seconds (its key then expires).
        """
        drive(self._adjust_rate(new_rate, new_capacity))

    async def aadjust_rate(self, new_rate: float, new_capacity: int | None = None) -> None:
        """The asyncio form of :meth:`adjust_rate`."""
        await adrive(self._adjust_rate(new_rate, new_capacity))

    def _adjust_rate(self, new_rate: float, new_capacity: int | None) -> Flow[None]:
        limits = Limits(new_rate, self.capacity if new_capacity is None else new_capacity)
        self._set_limits(limits)
        yield from self._script("rate", repr(limits.rate), str(limits.capacity))

    def reset_rate(self) -> None:
        """Go back to the configured rate and capacity (undoes :meth:`adjust_rate`)."""
        drive(self._reset_rate())

    async def areset_rate(self) -> None:
        """The asyncio form of :meth:`reset_rate`."""
        await adrive(self._reset_rate())

    def _reset_rate(self) -> Flow[None]:
        self._set_limits(self._configured)
        yield from self._script("rate", "", "")

    def configure(self, rate: float, capacity: int) -> None:
        """Replace the configured rate and capacity (a shared override stays in force)."""
        limits = Limits(rate, capacity)
        self._configured = limits
        self._set_limits(limits)

    def _set_limits(self, limits: Limits) -> None:
        with self._lock:
            now = self._clock.monotonic()
            self._state = rescale(self._state, self._limits, limits, now)
            self._limits = limits
            self._fleet = limits  # until Redis says otherwise (its next acquire reply)

    # -- stats -----------------------------------------------------------------------------

    def stats(self) -> BucketStats:
        """Rate, capacity, tokens available now, pause, and this process's counters."""
        return drive(self._stats())

    async def astats(self) -> BucketStats:
        """The asyncio form of :meth:`stats`."""
        return await adrive(self._stats())

    def _stats(self) -> Flow[BucketStats]:
        reply = yield from self._script("peek")
        if reply is not None:
            now_us, tat_us, paused_us, rate, capacity = (float(_text(v)) for v in reply)
            limits = Limits(rate, int(capacity))
            now = now_us / _US
            state = BucketState(tat=tat_us / _US, paused_until=paused_us / _US)
            # The Redis server clock is UNIX time already.
            paused_until = state.paused_until if state.paused_until > now else None
        else:
            with self._lock:
                state, now = self._state, self._clock.monotonic()
                # A shared bucket falling back grants on its share: report that.
                limits = self._limits if self._link is None else self._share()
            ahead = state.paused_until - now
            paused_until = self._clock.time() + ahead if ahead > 0 else None
        with self._lock:
            waits = WaitStats(count=self._wait_count, total=self._wait_total, max=self._wait_max)
            granted = self._granted
        return BucketStats(
            rate=limits.rate,
            capacity=limits.capacity,
            available_tokens=available_tokens(state, limits, now),
            granted=granted,
            waits=waits,
            paused_until=paused_until,
            shared=reply is not None,
        )

    # -- Redis -----------------------------------------------------------------------------

    def _args(self, op: str, extra: tuple[Any, ...]) -> list[Any]:
        c = self._configured
        return [op, repr(c.rate), str(c.capacity), self._idle_ms, "", *extra]

    @staticmethod
    def _us_or_blank(seconds: float | None) -> str:
        return "" if seconds is None else repr(seconds * _US)

    def _script(self, op: str, *extra: Any) -> Flow[Any]:
        """The script's reply, or None without Redis or when it cannot serve (fail open)."""
        link = self._link
        if link is None or not link.available:
            return None
        args = self._args(op, extra)
        return (yield RedisCall(link, self._what, script=_SCRIPT, keys=self._keys, args=args))

    # -- several tokens at once (the design's ``tokens=``) -----------------------------------

    def _take(self, tokens: int, max_wait: float | None) -> Flow[float]:
        """:meth:`acquire`'s flow for ``tokens`` taken together: all of them or none."""
        if tokens == 1:
            return (yield from self.acquire_flow(max_wait))
        if tokens > self.capacity:
            raise ConfigurationError(
                f"{self._what}: {tokens} tokens at once exceed its capacity of {self.capacity}"
            )
        if self._link is not None:  # one script call reserves them all (ARGV[10])
            ticket = yield from self._shared_ticket(max_wait, tokens)
        else:
            with self._lock:
                now = self._clock.monotonic()
                reservation = reserve_tokens(self._state, self._limits, now, tokens, max_wait)
                self._state = reservation.state
            ticket = _Ticket(reservation.granted, reservation.wait, reservation)
        if not ticket.granted:
            raise RateLimitTimeout(self.provider, ticket.wait)
        wait = ticket.wait
        if wait > 0:
            wait = yield from self._wait_turn(ticket, max_wait, queued=False)
        self._record(wait)
        return wait


class RateLimiter(LinkOwner):
    """Token buckets by provider name, local or shared through Redis.

    ``redis`` may be a ``redis.Redis``, a ``redis.asyncio.Redis``, a URL, or a
    :class:`tunegate._redis.RedisLink` shared with the cache and the breakers. Keys are
    ``{key_prefix}{provider}`` with the provider in braces (one cluster slot per provider);
    an idle bucket's key expires ``idle_ttl`` seconds after it is full and unpaused.
    ``member_ttl``: seconds after its last acquire that a process still counts as one of the
    bucket's members, whose number sets each one's share while Redis is lost.
    ``members``: how many processes the fleet is expected to have; a share is never more
    than ``1 / members`` of the quota, even for a process that could not count the others
    (it started, or they joined, while Redis was away). Default 1: the count seen in Redis.
    """

    def __init__(
        self,
        redis: RedisLike | None = None,
        *,
        clock: Clock | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        idle_ttl: float = DEFAULT_IDLE_TTL,
        member_ttl: float = DEFAULT_MEMBER_TTL,
        members: int = 1,
    ) -> None:
        if not idle_ttl > 0:
            raise ConfigurationError(f"idle_ttl must be positive seconds, not {idle_ttl!r}")
        self._adopt(redis)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._key_prefix = key_prefix
        self._idle_ttl = idle_ttl
        self._member_ttl = _member_ttl(member_ttl)
        self._expected = _expected_members(members)
        # One member id for all its buckets: a bucket that never heard its own rank takes
        # a sibling's, which orders the same processes the same way.
        self._member = secrets.token_hex(8)
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()  # guards creating buckets, never acquiring
        self._meters: dict[str, ConsumptionMeter] = {}  # consumption, for get_stats

    @property
    def buckets(self) -> Mapping[str, TokenBucket]:
        """The configured buckets by provider (read-only view)."""
        return MappingProxyType(self._buckets)

    @property
    def shared(self) -> bool:
        return self._link is not None

    def configure_provider(self, provider: str, rate: float, capacity: int) -> TokenBucket:
        """Set ``provider``'s rate (tokens per second) and capacity (largest burst).

        Reconfiguring keeps the tokens already owed. Raises ConfigurationError on bad values.
        """
        return self._configure(provider, rate, capacity, replace=True)

    def ensure_provider(self, provider: str, rate: float, capacity: int) -> TokenBucket:
        """Configure ``provider`` only if it is not configured yet (clients' defaults)."""
        return self._configure(provider, rate, capacity, replace=False)

    def _configure(
        self, provider: str, rate: float, capacity: int, *, replace: bool
    ) -> TokenBucket:
        if not isinstance(provider, str) or not provider:
            raise ConfigurationError(f"provider must be a non-empty string, not {provider!r}")
        with self._lock:
            bucket = self._buckets.get(provider)
            if bucket is None:
                bucket = TokenBucket(
                    provider,
                    rate,
                    capacity,
                    clock=self._clock,
                    redis=self._link,
                    key_prefix=self._key_prefix,
                    idle_ttl=self._idle_ttl,
                    member_ttl=self._member_ttl,
                    members=self._expected,
                    peers=self._members_seen,
                    member=self._member,
                    phases=self._phase_seen,
                )
                self._buckets[provider] = bucket
            elif replace:
                bucket.configure(rate, capacity)
            return bucket

    def _members_seen(self) -> int:
        """The most members any of this limiter's buckets last saw in Redis."""
        return max((b.members for b in tuple(self._buckets.values())), default=1)

    def _phase_seen(self) -> Phase | None:
        """The turn heard with the largest member count by any of this limiter's buckets."""
        heard = [b.phase for b in tuple(self._buckets.values()) if b.phase is not None]
        return max(heard, key=lambda p: p.members, default=None)

    def _bucket(self, provider: str) -> TokenBucket:
        bucket = self._buckets.get(provider)
        if bucket is None and provider in PROVIDER_DEFAULTS:
            # A known provider nobody configured gets its usual limits, as the clients do.
            bucket = self.ensure_provider(provider, *PROVIDER_DEFAULTS[provider])
        if bucket is None:
            raise ConfigurationError(
                f"no rate limit configured for provider {provider!r}; call "
                f"limiter.configure_provider({provider!r}, rate=..., capacity=...) first"
                " (tunegate.providers.spec has the usual values)"
            )
        return bucket

    @overload
    def acquire(self, provider: str, *, timeout: float | None = None) -> Granted: ...

    @overload
    def acquire(
        self, provider: str, *, tokens: int = 1, blocking: bool, timeout: float | None = None
    ) -> Granted | Literal[False]: ...

    @overload
    def acquire(
        self, provider: str, *, tokens: int, blocking: bool = True, timeout: float | None = None
    ) -> Granted | Literal[False]: ...

    def acquire(
        self,
        provider: str,
        *,
        tokens: int | None = None,
        blocking: bool | None = None,
        timeout: float | None = None,
    ) -> Granted | Literal[False]:
        """Take a token (or ``tokens`` at once) for ``provider``, waiting for it.

        Two forms, told apart by their keywords (all keyword-only, so that the design's
        ``acquire(p, 5)``, meaning 5 tokens, and tunegate's old ``acquire(p, 0.5)``, meaning
        a timeout, are both a TypeError rather than one silently meaning the other):

        - tunegate's, ``acquire(p)`` or ``acquire(p, timeout=s)``: returns the seconds waited
          (a :class:`Granted`, a float that is always true); when the wait would be longer
          than ``timeout`` it raises :class:`RateLimitTimeout` at once, taking nothing.
        - the design's, with ``blocking=`` and/or ``tokens=``: the same on success, ``False``
          instead of the exception. ``blocking=False`` takes the tokens only if they are
          there now; ``blocking=True`` with a ``timeout`` refuses at once (without waiting
          the timeout out) when the wait would exceed it. Several tokens are taken together
          or not at all; more than the bucket's capacity is a ConfigurationError.
        """
        if self._free_token(provider, tokens):
            return _NO_WAIT  # the local hot path: no flow, no driver, nothing allocated here
        return drive(self._acquire_tokens(provider, tokens, blocking, timeout))

    @overload
    async def aacquire(self, provider: str, *, timeout: float | None = None) -> Granted: ...  # noqa: ASYNC109

    @overload
    async def aacquire(
        self,
        provider: str,
        *,
        tokens: int = 1,
        blocking: bool,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Granted | Literal[False]: ...

    @overload
    async def aacquire(
        self,
        provider: str,
        *,
        tokens: int,
        blocking: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Granted | Literal[False]: ...

    async def aacquire(
        self,
        provider: str,
        *,
        tokens: int | None = None,
        blocking: bool | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - bounds the reserved wait up front
    ) -> Granted | Literal[False]:
        """The asyncio form of :meth:`acquire`."""
        if self._free_token(provider, tokens):
            return _NO_WAIT  # as in acquire: nothing to await
        return await adrive(self._acquire_tokens(provider, tokens, blocking, timeout))

    def acquire_flow(self, provider: str, timeout: float | None = None) -> Flow[float]:
        """:meth:`acquire` as a flow of effects, to compose with ``yield from``.

        An unconfigured provider raises ConfigurationError here, before the flow starts.
        """
        return self._bucket(provider).acquire_flow(timeout)

    def pause(self, provider: str, seconds: float) -> None:
        """No token for ``provider`` before ``seconds`` from now, in every sharing process."""
        self._bucket(provider).pause(seconds)

    async def apause(self, provider: str, seconds: float) -> None:
        """The asyncio form of :meth:`pause`."""
        await self._bucket(provider).apause(seconds)

    def resume(self, provider: str) -> None:
        """End ``provider``'s pause now (one set by a ``Retry-After`` or :meth:`pause`), in
        every sharing process: see :meth:`TokenBucket.resume`."""
        self._bucket(provider).resume()

    async def aresume(self, provider: str) -> None:
        """The asyncio form of :meth:`resume`."""
        await self._bucket(provider).aresume()

    def adjust_from_headers(
        self, provider: str, headers: Mapping[str, str], status: int | None = None
    ) -> float | None:
        """Pause ``provider`` as the response asks; return the pause in seconds, or None.

        Headers that count (any Mapping; names case-insensitive):

        - ``Retry-After`` (delta-seconds or HTTP-date) pauses for that long.
        - ``X-RateLimit-Remaining: 0`` with ``X-RateLimit-Reset`` (UNIX time, or seconds
          when below 10**9) pauses until the reset.
        - The longer of the two wins; pauses are capped at one day.
        - ``status=429`` with neither readable pauses one second.
        - ``X-RateLimit-Limit`` is ignored: its window is unknown, so the configured rate holds.
        """
        return drive(self.adjust_flow(provider, headers, status))

    async def aadjust_from_headers(
        self, provider: str, headers: Mapping[str, str], status: int | None = None
    ) -> float | None:
        """The asyncio form of :meth:`adjust_from_headers`."""
        return await adrive(self.adjust_flow(provider, headers, status))

    def adjust_flow(
        self, provider: str, headers: Mapping[str, str], status: int | None = None
    ) -> Flow[float | None]:
        """:meth:`adjust_from_headers` as a flow of effects, to compose with ``yield from``."""
        bucket = self._bucket(provider)
        seconds = pause_from_headers(headers, self._clock.time(), status)
        if seconds is not None:
            yield from self._provider_asked(bucket, seconds)
        return seconds

    def refused(self, provider: str, retry_after: float | None = None) -> float:
        """The provider refused a call over its quota in the body of its answer (Last.fm's
        error 29 over HTTP 200, MusicBrainz's 503 throttling text): pause ``provider`` for
        every sharer exactly as a ``429`` with ``Retry-After: retry_after`` would (one
        second without it, as a bare 429). Returns the pause in seconds."""
        return drive(self.refused_flow(provider, retry_after))

    async def arefused(self, provider: str, retry_after: float | None = None) -> float:
        """The asyncio form of :meth:`refused`."""
        return await adrive(self.refused_flow(provider, retry_after))

    def refused_flow(self, provider: str, retry_after: float | None = None) -> Flow[float]:
        """:meth:`refused` as a flow of effects, to compose with ``yield from``."""
        bucket = self._bucket(provider)
        wait = retry_after if retry_after is not None and retry_after > 0 else None
        seconds = RATE_LIMITED_PAUSE if wait is None else clamp_pause(wait)
        yield from self._provider_asked(bucket, seconds)
        return seconds

    @staticmethod
    def _provider_asked(bucket: TokenBucket, seconds: float) -> Flow[None]:
        """The pause a provider asked for, by its headers or in its body: the one path."""
        log.info("%s: pausing %.3fs as the provider asked", bucket.provider, seconds)
        yield from bucket._pause(seconds)

    def get_stats(self) -> dict[str, LimiterStats]:
        """Per provider: rate, capacity, available_tokens, granted, waits, paused_until,
        shared, and consumption (:class:`LimiterStats`)."""
        return {p: self._with_usage(p, b.stats()) for p, b in list(self._buckets.items())}

    async def aget_stats(self) -> dict[str, LimiterStats]:
        """The asyncio form of :meth:`get_stats`."""
        return {p: self._with_usage(p, await b.astats()) for p, b in list(self._buckets.items())}

    # -- the design's acquire, and consumption ------------------------------------------------

    def _meter(self, provider: str) -> ConsumptionMeter:
        meter = self._meters.get(provider)
        if meter is None:
            with self._lock:
                meter = self._meters.setdefault(provider, ConsumptionMeter())
        return meter

    def _free_token(self, provider: str, tokens: int | None) -> bool:
        """acquire's hot path: one token asked of a local bucket (metered already) that has
        one now, taken (:meth:`TokenBucket._take_now`). False: nothing taken."""
        bucket = self._buckets.get(provider)
        return (
            bucket is not None
            and bucket._metered
            and (tokens is None or (type(tokens) is int and tokens == 1))
            and bucket._take_now()
        )

    def _acquire_tokens(
        self, provider: str, tokens: int | None, blocking: bool | None, timeout: float | None
    ) -> Flow[Granted | Literal[False]]:
        """:meth:`acquire`: ``tokens`` or ``blocking`` given (not None) is the design's form."""
        design = tokens is not None or blocking is not None
        n = 1 if tokens is None else tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigurationError(f"tokens must be a positive int, not {tokens!r}")
        bucket = self._bucket(provider)
        meter = self._meter(provider)
        if meter.empty:  # a first sample, so that the first get_stats() has a rate
            meter.observe(self._clock.monotonic(), bucket._granted)
            # From now on a local bucket's free token needs no flow (acquire's hot path).
            bucket._metered = bucket._link is None
        max_wait = 0.0 if blocking is False else _max_wait(timeout)
        try:
            if n == 1:  # the common case: the one-token flow itself, one generator less
                waited = yield from bucket.acquire_flow(max_wait)
            else:
                waited = yield from bucket._take(n, max_wait)
        except RateLimitTimeout:
            if design:
                return False
            raise
        if n > 1:
            meter.add_extra(n - 1)
        return Granted(waited)

    def _with_usage(self, provider: str, stats: BucketStats) -> LimiterStats:
        meter = self._meter(provider)
        consumed = meter.observe(self._clock.monotonic(), stats["granted"])
        figures = usage(
            consumed=consumed,
            consumption_rate=meter.rate(),
            window=meter.window,
            available=stats["available_tokens"],
            capacity=stats["capacity"],
            refill_rate=stats["rate"],
        )
        return cast(LimiterStats, {**stats, **figures})

    def stats_for(self, provider: str) -> LimiterStats:
        """One provider's :meth:`get_stats` entry (for a scrape-time gauge: one bucket read,
        not all of them). ConfigurationError for a provider with no bucket."""
        return self._with_usage(provider, self._bucket(provider).stats())

    async def astats_for(self, provider: str) -> LimiterStats:
        """The asyncio form of :meth:`stats_for`."""
        return self._with_usage(provider, await self._bucket(provider).astats())


class Granted(float):
    """The seconds a granted :meth:`RateLimiter.acquire` waited: a float, and always true
    (``if limiter.acquire(p, blocking=False):`` holds for a grant without a wait)."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"Granted({float(self)!r})"


class LimiterStats(BucketStats, Usage):
    """:class:`BucketStats` and the consumption figures of :class:`tunegate._consumption.Usage`
    (``consumed``, ``consumption_rate``, ``consumption_window``, ``fill_ratio``,
    ``seconds_to_exhaustion``): one provider in :meth:`RateLimiter.get_stats`."""


_NO_WAIT = Granted(0.0)  # acquire's answer when a token was there: one object, made once
