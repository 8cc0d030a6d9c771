"""Phased fallback shares: a fleet that loses Redis takes turns on the wall clock's grid.

The bound. While Redis is away, member ``k`` of ``n`` grants only at the start of a slot
``j`` of the grid (slot ``j`` is ``[j / rate, (j + 1) / rate)`` in UNIX seconds) with
``j % n == k``, one grant per slot (capacity 1). So two grants of the fleet are never
closer than ``1 / rate``: at most ``ceil(W * rate)`` start in any window of ``W`` seconds,
the shared bucket's ``capacity + W * rate`` bound with a capacity of 1 (the strictest quota
a shared bucket keeps, MusicBrainz's 1 request/s at rate 1). The schedule is checked on
the policy itself; with real Redis stopped, grant times are read after each acquire
returns, later than their slot's start by the wake-up delay only (well under the 0.25 s
slot here), so the check there is that no two grants fall in one slot of the grid.

The control: the unphased shares (rate / members each, unsynchronised) let two members
grant in the same slot, which is what made two ``enrich`` processes send MusicBrainz two
requests in one second.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from tests._redis_server import RedisServer
from tunegate._policy.bucket import (
    BucketState,
    Limits,
    Phase,
    member_rank,
    phase_slot,
    rephase,
    reserve_phased,
    share_phased,
    start_phased,
)
from tunegate._redis import RedisLink
from tunegate.ratelimit import _SCRIPT, RateLimiter

PROVIDER = "phase"
KEY = f"tunegate:rl:{{{PROVIDER}}}"
RATE = 4.0  # slots of 0.25 s: wider than a thread's wake-up delay on this machine


def slot(t: float, rate: float = RATE) -> int:
    return math.floor(t * rate)


# -- the policy ---------------------------------------------------------------------------


def test_phase_slot_is_the_next_start_of_an_own_slot() -> None:
    # rate 2: slots of 0.5 s; member 1 of 3 owns slots 1, 4, 7, ... (0.5 s, 2.0 s, 3.5 s)
    phase = Phase(1, 3)
    assert phase_slot(0.0, 2.0, phase) == 0.5
    assert phase_slot(0.5, 2.0, phase) == 0.5  # at its start: that slot
    assert phase_slot(0.5000001, 2.0, phase) == 0.5  # within float noise of it: still
    assert phase_slot(0.51, 2.0, phase) == 2.0  # past its start: the next own slot
    assert phase_slot(1_700_000_000.2, 2.0, Phase(0, 2)) == 1_700_000_001.0
    assert phase_slot(1.3, 2.0, Phase(0, 1)) == 1.5  # alone: every slot


def test_share_phased_has_no_burst_with_company() -> None:
    assert share_phased(Limits(10.0, 10), 2) == Limits(5.0, 1)
    assert share_phased(Limits(1.0, 1), 3) == Limits(1.0 / 3, 1)
    assert share_phased(Limits(10.0, 10), 1) == Limits(10.0, 10)  # alone: the whole


def test_start_phased_waits_an_interval_a_member_after_the_fleet_reservations() -> None:
    limits = Limits(2.0, 4)
    assert start_phased(BucketState(), limits, 10.0, 12.0, 2).tat == 13.0
    assert start_phased(BucketState(), limits, 10.0, 12.0, 3).tat == 13.5
    assert start_phased(BucketState(), limits, 10.0, 3.0, 2).tat == 11.0  # done: from now
    assert start_phased(BucketState(tat=20.0), limits, 10.0, 12.0, 2).tat == 20.0


def test_member_rank_counts_the_ids_before_it() -> None:
    assert member_rank("b", ["c", "a", "b"]) == 1
    assert member_rank("a", ["a"]) == 0
    assert member_rank("z", []) == 0


@given(
    members=st.integers(min_value=2, max_value=5),
    rate=st.sampled_from([0.5, 1.0, 4.0, 10.0, 50.0]),
    arrivals=st.lists(
        st.tuples(st.integers(min_value=0, max_value=4), st.floats(min_value=0, max_value=20)),
        min_size=1,
        max_size=60,
    ),
    offsets=st.lists(st.floats(min_value=-1e5, max_value=1e9), min_size=5, max_size=5),
    tokens=st.integers(min_value=1, max_value=3),
)
def test_phased_members_never_grant_closer_than_one_interval(
    members: int,
    rate: float,
    arrivals: list[tuple[int, float]],
    offsets: list[float],
    tokens: int,
) -> None:
    """Any members, any arrivals (each member's clock with its own offset from the wall
    clock), several tokens at once included: the merged slot starts are at least one fleet
    interval apart, each on its member's own slot of the grid."""
    limits = Limits(rate, 8)
    wall0 = 1_700_000_000.0
    states = [BucketState() for _ in range(members)]
    starts: list[tuple[float, int]] = []
    for who, at in sorted(arrivals, key=lambda a: a[1]):
        k = who % members
        now = offsets[k] + at  # this member's own clock
        r = reserve_phased(states[k], limits, Phase(k, members), now, wall0 + at, None, tokens)
        assert r.granted
        states[k] = r.state
        starts.append((wall0 + at + r.wait, k))
    merged = sorted(starts)
    for (a, _), (b, _) in itertools.pairwise(merged):
        assert b - a >= 1 / rate - 1e-6
    for t, k in merged:
        assert round(t * rate) % members == k
        assert abs(t * rate - round(t * rate)) < 1e-3  # at a slot's start


def test_reserve_phased_refuses_past_max_wait_and_keeps_the_state() -> None:
    limits = Limits(1.0, 1)
    state = BucketState()
    r = reserve_phased(state, limits, Phase(1, 2), 100.0, 1_000.0, max_wait=0.5)
    assert not r.granted
    assert r.state == state
    assert r.wait == pytest.approx(1.0)  # its next own slot: 1001.0
    alone = reserve_phased(state, limits, Phase(0, 1), 100.0, 1_000.3)
    assert alone.granted
    assert alone.wait == 0.0


# -- the rank in the Lua script ------------------------------------------------------------


def _acquire(
    client: redis.Redis, now_us: float, mark: str, ranked: str, known: str
) -> list[object]:
    args = ["acquire", "100.0", "100", "60000", repr(now_us), "", "", mark, "10000", ""]
    args += [ranked, known]
    return list(_SCRIPT.run(client, [KEY, f"{KEY}:members"], args))


def test_lua_rank_matches_the_policy(redis_url: str) -> None:
    """The script's rank is member_rank over the members seen within the TTL, counted when
    it marks a member, or when asked (ARGV[11]) by a caller whose count is out of date."""
    client = redis.Redis.from_url(redis_url)
    now_us = 1_700_000_000_000_000.0
    ttl_us = 10_000 * 1000
    ids = ["0a3f", "9c01", "5e77", "f0f0", "12ab", "77aa"]
    seen = {m: now_us - 1_000_000.0 * i for i, m in enumerate(ids)}
    seen["dead"] = now_us - ttl_us - 1  # out of the TTL: not counted
    client.zadd(f"{KEY}:members", seen)
    live = {m for m, at in seen.items() if at >= now_us - ttl_us}
    for member in ["5e77", "0000", "ffff", "9c01"]:
        reply = _acquire(client, now_us, member, "", "")
        live.add(member)  # marked: live from now
        assert reply[4] == len(live)
        assert reply[8] == member_rank(member, live)
    # Not marking: ranked again only when the count the caller knows is out of date.
    assert _acquire(client, now_us, "", "77aa", str(len(live)))[8] == -1
    assert _acquire(client, now_us, "", "77aa", str(len(live) - 1))[8] == member_rank("77aa", live)
    assert _acquire(client, now_us, "", "77aa", "")[8] == member_rank("77aa", live)
    assert "dead" not in live
    assert _acquire(client, now_us, "", "dead", "")[8] == member_rank("dead", live)
    client.close()


# -- real Redis, stopped: threads, each with its own limiter ---------------------------------


@contextmanager
def fleet(url: str, n: int, *, phased: bool) -> Iterator[list[RateLimiter]]:
    links = [RedisLink(url, retry_interval=30) for _ in range(n)]
    limiters = [RateLimiter(redis=link) for link in links]
    for lim in limiters:
        bucket = lim.configure_provider(PROVIDER, rate=RATE, capacity=1)
        bucket._phased = phased
    try:
        yield limiters
    finally:
        for link in links:
            link.close()


def run_members(limiters: Sequence[RateLimiter], until: float) -> list[list[float]]:
    """Each limiter acquires in its own thread until the UNIX time ``until``; the grant
    times of each (read when acquire returns)."""
    grants: list[list[float]] = [[] for _ in limiters]
    go = threading.Barrier(len(limiters))

    def work(i: int) -> None:
        go.wait(5)
        for _ in range(1000):
            left = until - time.time()
            if left <= 0:
                return
            try:
                limiters[i].acquire(PROVIDER, timeout=left)
            except Exception:
                return
            grants[i].append(time.time())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(limiters))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(until - time.time() + 10)
    return grants


def reservations_done(limiters: Sequence[RateLimiter]) -> None:
    """Sleep until the fleet's reservations in Redis are past: the latest end any member
    heard (the last reservation's reply has the shared bucket's end; read late, not early)."""
    buckets = [lim.buckets[PROVIDER] for lim in limiters]
    left = max(b._reserved_until - b._clock.monotonic() for b in buckets)
    assert left < 2 / RATE  # capacity 1: one slot ahead at the most (and the reply's delay)
    time.sleep(max(0.0, left))


def shared_slots(grants: Sequence[Sequence[float]], since: float) -> list[int]:
    """The slots of the grid in which two or more grants at or after ``since`` fell."""
    slots = [slot(t) for g in grants for t in g if t >= since]
    return sorted({s for s in slots if slots.count(s) > 1})


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3])
def test_redis_stopped_mid_run_members_never_share_a_slot(
    restartable_redis: RedisServer, n: int
) -> None:
    """n members acquire continuously; Redis stops mid-run. From the stop on (the hand-over
    included) no two grants fall in one slot, each member keeps to its own turn, and the
    fleet still grants about the whole rate."""
    with fleet(restartable_redis.url, n, phased=True) as limiters:
        for lim in limiters * 2:
            lim.acquire(PROVIDER)  # all members, each knowing the count and its rank
        assert sorted(lim.buckets[PROVIDER]._phase() or (-1, 0) for lim in limiters) == [
            (k, n) for k in range(n)
        ]
        started = time.time()
        stopper = threading.Timer(1.5, restartable_redis.stop)
        stopper.start()
        grants = run_members(limiters, started + 6.0)
        stopper.join(10)
        stopped = started + 1.5
    assert shared_slots(grants, stopped) == []
    for lim, own in zip(limiters, grants, strict=True):
        rank = lim.buckets[PROVIDER]._phase()
        assert rank is not None
        late = [t for t in own if t >= stopped + 1.5]  # past the shared slots and hand-over
        assert late, "a member granted nothing on its share"
        assert {slot(t) % n for t in late} == {rank.rank}
    after = sum(1 for g in grants for t in g if t >= stopped + 0.5)
    assert after >= RATE * 4.0 * 0.7, f"{after} grants in 4 s at {RATE}/s: proves little"


@pytest.mark.redis
@pytest.mark.parametrize("phased", [True, False])
def test_members_falling_back_together_share_a_slot_only_unphased(
    restartable_redis: RedisServer, phased: bool
) -> None:
    """Two members idle when Redis stops, then both busy at once: unphased (the old shares,
    rate / 2 each from the same moment) their grants land in the same slots; phased, never.
    This is the control that shows the check above can fail."""
    with fleet(restartable_redis.url, 2, phased=phased) as limiters:
        for lim in limiters * 2:
            lim.acquire(PROVIDER)
        reservations_done(limiters)  # so both start from now
        restartable_redis.stop()
        started = time.time()
        grants = run_members(limiters, started + 2.5)
    collisions = shared_slots(grants, started)
    assert all(len(g) >= 3 for g in grants), grants
    if phased:
        assert collisions == []
    else:
        assert collisions, "the unphased shares were expected to grant in one slot"


def test_rephase_moves_slots_reserved_before_the_outage_onto_own_turns() -> None:
    """Callers asleep until shared slots move onto this member's turns after the hand-over,
    in order, never earlier; one due now, or one a move would take past its deadline,
    keeps its slot."""
    limits = Limits(5.0, 1)  # slots of 0.2 s; member 1 of 2 owns the odd ones
    phase = Phase(1, 2)
    now, wall = 100.0, 1_000.0  # the wall clock is the bucket's + 900
    state = start_phased(BucketState(), limits, now, 101.0, 2)  # no grant before 101.4
    state, moved = rephase(
        state, limits, phase, now, wall, [99.0, 100.4, 100.6, 100.8], [None, None, 100.9, None]
    )
    assert moved[0] == 99.0  # due: it goes
    assert moved[1] == pytest.approx(101.4)  # wall 1001.4: slot 5007, odd
    assert moved[2] == 100.6  # 101.8 would be past its deadline
    assert moved[3] == pytest.approx(101.8)
    assert state.tat == pytest.approx(102.2)
    for t in (moved[1], moved[3]):
        assert round((t + 900.0) * 5) % 2 == 1
