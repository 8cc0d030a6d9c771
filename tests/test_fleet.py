"""A fleet of processes sharing a limiter through Redis stays under quota when Redis is lost.

Real processes (plain interpreters) against a private redis-server that the tests stop and
start again. Grant times are read by the workers after each acquire returns, i.e. when the
caller really goes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from tests._redis_server import RedisServer, free_port
from tests.pipeline.test_round_trips import ANSWER, Monitor
from tunegate._policy.bucket import BucketState, Limits, charge, debt, reserve, share, start_empty
from tunegate._redis import RedisLink
from tunegate.exceptions import ConfigurationError, RateLimitTimeout
from tunegate.ratelimit import _SCRIPT, RateLimiter

pytestmark = pytest.mark.redis

PROVIDER = "fleet"
KEY = f"tunegate:rl:{{{PROVIDER}}}"

# One worker: join the shared bucket, wait for the common start time on stdin, then
# acquire until ``active`` seconds after it and print the grant times (UNIX seconds).
_WORKER = """
import json, sys, time
from tunegate._redis import RedisLink
from tunegate.exceptions import RateLimitTimeout
from tunegate.ratelimit import RateLimiter
url, rate, capacity, active, member_ttl = sys.argv[1:6]
limiter = RateLimiter(redis=RedisLink(url, retry_interval=0.2), member_ttl=float(member_ttl))
limiter.configure_provider("fleet", rate=float(rate), capacity=int(capacity))
limiter.acquire("fleet")  # joins the members and loads the script before the clock starts
print("ready", flush=True)
end = float(sys.stdin.readline()) + float(active)
grants = []
for _ in range(100_000):
    left = end - time.time()
    if left <= 0:
        break
    try:
        limiter.acquire("fleet", timeout=left)  # never reserve past the end
    except RateLimitTimeout:
        break
    grants.append(time.time())
bucket = limiter.buckets["fleet"]
print(json.dumps({"grants": grants, "members": bucket.members}), flush=True)
"""


@contextmanager
def workers(url: str, rate: float, capacity: int, active: Sequence[float]) -> Iterator[Any]:
    """Start one worker per ``active`` duration; yields a function that sends the common
    start time and one that collects each worker's result (bounded waits throughout)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, url, str(rate), str(capacity), str(seconds), "30"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for seconds in active
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"

        def start() -> float:
            t0 = time.time() + 0.2
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"{t0!r}\n")
                p.stdin.flush()
            return t0

        def results() -> list[dict[str, Any]]:
            return [json.loads(p.communicate(timeout=30)[0]) for p in procs]

        yield start, results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def count(grants: Sequence[float], start: float, end: float) -> int:
    return sum(1 for g in grants if start <= g < end)


@pytest.mark.slow
def test_two_processes_fall_back_to_half_each_and_return_to_the_shared_bucket(
    restartable_redis: RedisServer,
) -> None:
    """2 processes at 20/s shared (capacity 2). Redis stopped: each grants ~10/s on its own,
    not 20/s. Redis back: the shared bucket again, which gives the whole rate to the one
    process left once the other stops."""
    rate, capacity = 20.0, 2
    # a: the whole run; b: stops 9.5 s in, so that a alone shows which bucket it is on.
    with workers(restartable_redis.url, rate, capacity, active=[13.0, 9.5]) as (start, results):
        t0 = start()
        sleep_until(t0 + 3.0)
        restartable_redis.stop()
        stopped = time.time()
        sleep_until(t0 + 7.0)
        restartable_redis.start()
        restarted = time.time()
        a, b = results()
    # Tolerances: each process's share is 10/s with capacity 1 and starts without a burst;
    # a grant may slip by one across a window's edge (the time is read after the caller
    # wakes on a loaded 2-core machine), so +2 per window per process.
    window = (stopped + 0.5, restarted)  # past the first failed call
    seconds = window[1] - window[0]
    for worker in (a, b):
        own = count(worker["grants"], *window)
        assert own <= rate / 2 * seconds + 1 + 2, f"{own} grants in {seconds:.1f}s on a half share"
        assert own >= rate / 2 * seconds * 0.5, "the fallback barely granted: proves nothing"
    both = count(a["grants"], *window) + count(b["grants"], *window)
    assert both <= rate * seconds + capacity + 2
    # Shared before the outage: both together at most the one bucket's bound.
    before = (t0 + 0.5, stopped)
    shared = count(a["grants"], *before) + count(b["grants"], *before)
    assert shared <= rate * (before[1] - before[0]) + capacity + 2
    assert a["members"] == b["members"] == 2
    # Over the whole run while both were at work, hand-overs at both ends included: no 1 s
    # window above one bucket's bound (+2 for the measured wake-up times, as above).
    both_active = sorted(g for g in a["grants"] + b["grants"] if t0 <= g < t0 + 9.5)
    busiest = max(sum(1 for h in both_active if g <= h < g + 1.0) for g in both_active)
    assert busiest <= rate + capacity + 2, f"{busiest} grants in one second"
    # After the outage, b gone: a alone gets the whole rate from the shared bucket. On its
    # own share it would get half (10/s); with b still there, the two would share 20/s.
    alone = (t0 + 10.0, t0 + 13.0)
    own = count(a["grants"], *alone)
    assert own >= rate * 3.0 * 0.75, f"{own} grants in 3s: a is not back on the shared bucket"
    assert own <= rate * 3.0 + capacity + 2
    client = restartable_redis.client()
    assert client.exists(KEY), "the shared bucket is in Redis again"
    client.close()


@pytest.mark.slow
def test_without_members_each_process_would_take_the_whole_rate(
    restartable_redis: RedisServer,
) -> None:
    """The baseline the fleet share fixes, measured the same way: a process that never
    heard of the others (it last saw 1 member) falls back to the whole rate."""
    rate, capacity = 20.0, 2
    with workers(restartable_redis.url, rate, capacity, active=[4.0]) as (start, results):
        t0 = start()
        sleep_until(t0 + 1.0)
        restartable_redis.stop()
        stopped = time.time()
        (a,) = results()
    window = (stopped + 0.5, t0 + 4.0)
    seconds = window[1] - window[0]
    own = count(a["grants"], *window)
    assert a["members"] == 1
    assert own >= rate * seconds * 0.75, "alone, its share is the whole rate"


def test_member_count_expires_when_a_process_goes_away(restartable_redis: RedisServer) -> None:
    """Another process acquires and exits: it counts as a member, then no longer once
    member_ttl has passed; the share a fallback then takes is the whole rate again."""
    link = RedisLink(restartable_redis.url, retry_interval=30)
    # A TTL well above a subprocess's start-up on this loaded machine (~1-2 s).
    limiter = RateLimiter(redis=link, member_ttl=4.0)
    bucket = limiter.configure_provider(PROVIDER, rate=10.0, capacity=4)
    limiter.acquire(PROVIDER)
    assert bucket.members == 1
    code = (
        "import sys\n"
        "from tunegate.ratelimit import RateLimiter\n"
        "limiter = RateLimiter(redis=sys.argv[1], member_ttl=4.0)\n"
        "limiter.configure_provider('fleet', rate=10.0, capacity=4)\n"
        "limiter.acquire('fleet')\n"
        "print(limiter.buckets['fleet'].members)\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, restartable_redis.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert other.stdout.strip() == "2", "it saw this process as a member"
    limiter.acquire(PROVIDER)
    assert bucket.members == 2
    assert limiter.get_stats()[PROVIDER]["rate"] == 10.0  # shared: the whole bucket
    deadline = time.monotonic() + 10.0
    while bucket.members != 1 and time.monotonic() < deadline:  # TTL 4 s, marks every 1 s
        time.sleep(0.1)
        limiter.acquire(PROVIDER)
    assert bucket.members == 1, "the gone process still counts after its TTL"
    restartable_redis.stop()
    limiter.acquire(PROVIDER)  # falls back
    stats = limiter.get_stats()[PROVIDER]
    assert not stats["shared"]
    assert (stats["rate"], stats["capacity"]) == (10.0, 4)
    link.close()


def test_fallback_share_follows_the_members_last_seen(restartable_redis: RedisServer) -> None:
    """Three buckets share one; with Redis gone each grants at a third of the rate, with no
    burst (phased shares: capacity 1), each in its own turn, and starts without a burst."""
    links = [RedisLink(restartable_redis.url, retry_interval=30) for _ in range(3)]
    limiters = [RateLimiter(redis=link) for link in links]
    buckets = [lim.configure_provider(PROVIDER, rate=9.0, capacity=6) for lim in limiters]
    for lim in limiters * 2:
        lim.acquire(PROVIDER)
    assert [b.members for b in buckets] == [3, 3, 3]
    restartable_redis.stop()
    for lim in limiters:
        lim.acquire(PROVIDER, timeout=1.0)  # Redis refused: on its share from here
        stats = lim.get_stats()[PROVIDER]
        assert (stats["shared"], stats["rate"], stats["capacity"]) == (False, 3.0, 1)
        # The fallback started empty and took one token: the next is a full interval away.
        assert stats["available_tokens"] < 1.0
    assert sorted(b._phase() or (-1, 0) for b in buckets) == [(0, 3), (1, 3), (2, 3)]
    for link in links:
        link.close()


def test_the_member_mark_adds_no_round_trip(redis_server: RedisServer, redis_url: str) -> None:
    """Acquires mark the member inside the bucket's own script call: one round trip per
    acquire, as the server counts them (MONITOR, commands run by scripts left out)."""
    limiter = RateLimiter(redis=redis_url, member_ttl=0.5)  # a mark due every 0.125 s
    limiter.configure_provider(PROVIDER, rate=100.0, capacity=100)
    limiter.acquire(PROVIDER)  # connects and loads the script
    monitor = Monitor(redis_server)
    for _ in range(20):
        limiter.acquire(PROVIDER)
        time.sleep(0.02)  # a few marks fall due during the loop
    client = redis_server.client()
    client.echo(ANSWER)
    calls, _ = monitor.split()
    assert len(calls) == 20
    assert all(c.upper().startswith('"EVALSHA"') or c.upper().startswith("EVALSHA") for c in calls)
    member = limiter.buckets[PROVIDER]._member
    # EVALSHA sha numkeys key key ARGV... joined by single spaces (blanks kept): ARGV[8], the
    # member to mark, is the 13th word (the id rides as ARGV[11] on the others, to be ranked)
    marks = sum(1 for c in calls if c.split(" ")[12] == member)
    assert 1 <= marks < 20, "marks ride on some acquires, not all"
    assert client.zcard(f"{KEY}:members") == 1
    limiter.close()
    client.close()


def test_debt_granted_on_a_share_is_handed_to_the_shared_bucket(
    restartable_redis: RedisServer,
) -> None:
    """Tokens a process reserved on its own while Redis was away (callers queued into the
    future) are owed by the shared bucket once it answers: another process waits for them."""
    url = restartable_redis.url
    link = RedisLink(url, retry_interval=0.05)
    away = RateLimiter(redis=link)
    away.configure_provider(PROVIDER, rate=2.0, capacity=1)
    away.acquire(PROVIDER)
    restartable_redis.stop()
    # 4 callers queue on its share (members: 1, so 2/s): slots 0.5 s apart, the last ~2 s
    # ahead. They sleep while Redis comes back.
    queued = [threading.Thread(target=away.acquire, args=(PROVIDER,)) for _ in range(4)]
    for t in queued:
        t.start()
    for _ in range(100):  # bounded: until all four hold a slot
        if away.buckets[PROVIDER]._state.tat - time.monotonic() > 1.5:
            break
        time.sleep(0.01)
    restartable_redis.start()
    time.sleep(0.06)  # past the link's retry interval
    with pytest.raises(RateLimitTimeout):  # back: hands over what is owed, reserves nothing
        away.acquire(PROVIDER, timeout=0.0)
    assert away.get_stats()[PROVIDER]["shared"]
    stayed = RateLimiter(redis=url)  # Redis restarted empty: only the handed debt is there
    stayed.configure_provider(PROVIDER, rate=2.0, capacity=1)
    with pytest.raises(RateLimitTimeout) as refused:
        stayed.acquire(PROVIDER, timeout=0.0)
    # Over a second of slots still owed (about 2 s minus the restart); without the handover
    # a fresh bucket would grant at once.
    assert refused.value.retry_after > 1.0
    for t in queued:
        t.join(10)
    away.close()
    stayed.close()


def test_a_pause_set_while_redis_was_away_reaches_the_shared_bucket(
    restartable_redis: RedisServer,
) -> None:
    """A Retry-After seen during the outage pauses every sharer once Redis is back, and
    is not counted as tokens granted on top of the pause."""
    url = restartable_redis.url
    link = RedisLink(url, retry_interval=0.05)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider(PROVIDER, rate=100.0, capacity=5)
    limiter.acquire(PROVIDER)
    restartable_redis.stop()
    limiter.acquire(PROVIDER)  # on its share from here
    limiter.pause(PROVIDER, 20.0)
    restartable_redis.start()
    time.sleep(0.06)  # past the link's retry interval
    with pytest.raises(RateLimitTimeout):
        limiter.acquire(PROVIDER, timeout=0.0)  # back, and still paused: says so to Redis
    assert limiter.get_stats()[PROVIDER]["shared"]
    other = RateLimiter(redis=url)
    other.configure_provider(PROVIDER, rate=100.0, capacity=5)
    stats = other.get_stats()[PROVIDER]
    assert stats["paused_until"] is not None
    assert time.time() + 15 < stats["paused_until"] < time.time() + 21
    with pytest.raises(RateLimitTimeout) as refused:
        other.acquire(PROVIDER, timeout=0.0)
    assert refused.value.retry_after < 21, "the pause was charged as tokens on top of itself"
    limiter.close()
    other.close()


# -- the arithmetic, and its Lua twin ---------------------------------------------------------


def test_share_divides_rate_and_capacity() -> None:
    assert share(Limits(10.0, 10), 2) == Limits(5.0, 5)
    assert share(Limits(5.0, 5), 2) == Limits(2.5, 2)  # rounded down: shares add up to <= 5
    assert share(Limits(1.0, 1), 3) == Limits(1.0 / 3, 1)  # never below one token
    assert share(Limits(1.0, 1), 0) == Limits(1.0, 1)


def test_start_empty_leaves_no_burst() -> None:
    limits = Limits(4.0, 3)
    state = start_empty(BucketState(), limits, 10.0)
    first = reserve(state, limits, 10.0)
    assert first.wait == pytest.approx(0.25)
    # The empty start is no grant: only the token reserved on top of it is owed.
    assert debt(state, limits, 10.0, floor=state.tat) == 0.0
    assert debt(first.state, limits, 10.0, floor=state.tat) == pytest.approx(1.0)
    assert debt(first.state, limits, 10.0) == pytest.approx(4.0)


def test_lua_charge_matches_python(redis_url: str) -> None:
    """The script's acquire with a charge is policy.charge then policy.reserve."""
    client = redis.Redis.from_url(redis_url)
    limits = Limits(4.0, 3)
    t0 = 1_000.0
    base = 1_700_000_000_000_000.0
    state = BucketState()
    for at, owed in [(0.0, 2.5), (0.1, 0.0), (0.2, 4.0), (5.0, 1.0)]:
        now = t0 + at
        state = charge(state, limits, now, owed)
        expected = reserve(state, limits, now)
        state = expected.state
        args = ["acquire", repr(limits.rate), str(limits.capacity), "60000"]
        args += [repr(base + at * 1e6), "", repr(owed) if owed else "", "m", "1000"]
        reply = _SCRIPT.run(client, [KEY, f"{KEY}:members"], args)
        assert (bool(reply[0]), reply[1]) == (True, pytest.approx(expected.wait * 1e6, abs=1))
        assert float(reply[2]) == pytest.approx(base + (state.tat - t0) * 1e6, abs=1)
        assert reply[4] == 1
    client.close()


def test_the_share_is_of_the_limits_in_force_in_redis(restartable_redis: RedisServer) -> None:
    """Another process slowed the fleet (adjust_rate, a shared override): this one's fallback
    share is of the slowed rate, not of the rate it was configured with."""
    link = RedisLink(restartable_redis.url, retry_interval=30)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider(PROVIDER, rate=10.0, capacity=10)
    other = RateLimiter(redis=restartable_redis.url)
    other.configure_provider(PROVIDER, rate=10.0, capacity=10)
    other.buckets[PROVIDER].adjust_rate(4.0, 4)
    other.acquire(PROVIDER)
    limiter.acquire(PROVIDER)
    assert limiter.buckets[PROVIDER].members == 2
    restartable_redis.stop()
    limiter.acquire(PROVIDER, timeout=5.0)
    stats = limiter.get_stats()[PROVIDER]
    assert (stats["shared"], stats["rate"], stats["capacity"]) == (False, 2.0, 1)
    other.close()
    link.close()


async def test_aacquire_falls_back_to_the_share_too(restartable_redis: RedisServer) -> None:
    """The asyncio driver runs the same flow: two buckets, Redis gone, half each; then back."""
    links = [RedisLink(restartable_redis.url, retry_interval=0.05) for _ in range(2)]
    limiters = [RateLimiter(redis=link) for link in links]
    for lim in limiters:
        lim.configure_provider(PROVIDER, rate=50.0, capacity=4)
    for lim in limiters * 2:
        await lim.aacquire(PROVIDER)
    restartable_redis.stop()
    for lim in limiters:
        await lim.aacquire(PROVIDER, timeout=1.0)
        stats = await lim.aget_stats()
        assert (stats[PROVIDER]["shared"], stats[PROVIDER]["rate"]) == (False, 25.0)
        assert stats[PROVIDER]["capacity"] == 1  # phased: no burst
    restartable_redis.start()
    await asyncio.sleep(0.06)  # past the links' retry interval
    for lim in limiters:
        await lim.aacquire(PROVIDER, timeout=5.0)
        stats = await lim.aget_stats()
        assert (stats[PROVIDER]["shared"], stats[PROVIDER]["rate"]) == (True, 50.0)
    for lim, link in zip(limiters, links, strict=True):
        await lim.aclose()
        await link.aclose()
        link.close()


def test_a_process_started_during_the_outage_takes_the_configured_share() -> None:
    """A process that never reached Redis saw no member but itself; with the fleet's size
    configured (members=4) it grants a quarter of the rate, starting without a burst."""
    port = free_port()  # nothing listens there: Redis is down from the start
    link = RedisLink(f"redis://127.0.0.1:{port}", retry_interval=30)
    limiter = RateLimiter(redis=link, members=4)
    bucket = limiter.configure_provider(PROVIDER, rate=20.0, capacity=8)
    limiter.acquire(PROVIDER)
    stats = limiter.get_stats()[PROVIDER]
    assert bucket.members == 1  # it never heard of the others...
    assert (stats["shared"], stats["rate"], stats["capacity"]) == (False, 5.0, 1)  # ...but
    assert stats["available_tokens"] < 1.0  # no burst: the others may have just used it
    with pytest.raises(RateLimitTimeout) as err:
        limiter.acquire(PROVIDER, timeout=0)
    # Its next turn (a rank from its id: one slot in 4 of 0.05 s) is 0.2 s after the last
    # grant, which was up to 0.2 s ahead of now.
    assert 0.0 < err.value.retry_after <= 0.4 + 0.05
    unsized = RateLimiter(redis=link)  # the old behaviour, for comparison: the whole rate
    unsized.configure_provider(PROVIDER, rate=20.0, capacity=8)
    unsized.acquire(PROVIDER)
    assert unsized.get_stats()[PROVIDER]["rate"] == 20.0
    link.close()


def test_the_configured_size_bounds_the_share_of_a_process_that_counted_fewer(
    restartable_redis: RedisServer,
) -> None:
    """Two processes seen in Redis, three configured (one joined during the outage): each
    share is a third, not a half."""
    links = [RedisLink(restartable_redis.url, retry_interval=30) for _ in range(2)]
    limiters = [RateLimiter(redis=link, members=3) for link in links]
    buckets = [lim.configure_provider(PROVIDER, rate=9.0, capacity=6) for lim in limiters]
    for lim in limiters * 2:
        lim.acquire(PROVIDER)
    assert [b.members for b in buckets] == [2, 2]
    restartable_redis.stop()
    limiters[0].acquire(PROVIDER, timeout=1.0)
    stats = limiters[0].get_stats()[PROVIDER]
    assert (stats["shared"], stats["rate"], stats["capacity"]) == (False, 3.0, 1)
    for link in links:
        link.close()
    with pytest.raises(ConfigurationError, match="members"):
        RateLimiter(members=0)


def test_a_provider_not_used_before_the_outage_takes_the_share_its_siblings_saw(
    restartable_redis: RedisServer,
) -> None:
    """Two processes used one provider through Redis, never the other; with Redis gone, the
    unused provider's share is still a half (its own bucket counted no member: it would take
    the whole rate, and the fleet twice the quota)."""
    links = [RedisLink(restartable_redis.url, retry_interval=30) for _ in range(2)]
    limiters = [RateLimiter(redis=link) for link in links]
    for lim in limiters:
        lim.configure_provider(PROVIDER, rate=9.0, capacity=6)
        lim.configure_provider("unused", rate=4.0, capacity=2)
    for lim in limiters * 2:
        lim.acquire(PROVIDER)
    assert [lim.buckets[PROVIDER].members for lim in limiters] == [2, 2]
    assert [lim.buckets["unused"].members for lim in limiters] == [1, 1]
    restartable_redis.stop()
    limiters[0].acquire("unused", timeout=1.0)
    stats = limiters[0].get_stats()["unused"]
    assert (stats["shared"], stats["rate"], stats["capacity"]) == (False, 2.0, 1)
    lone_link = RedisLink(restartable_redis.url, retry_interval=30)
    alone = RateLimiter(redis=lone_link)
    alone.configure_provider("unused", rate=4.0, capacity=2)
    alone.acquire("unused", timeout=1.0)  # saw no one anywhere: the whole rate
    assert alone.get_stats()["unused"]["rate"] == 4.0
    for link in [*links, lone_link]:
        link.close()
