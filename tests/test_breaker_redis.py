"""Shared breakers: the Lua twin against the Python machine, and breakers across processes."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._redis_server import RedisServer
from tests.test_redis_link import (
    BOUND,
    SICKNESSES,
    in_thread,
    refusing_writes,
    server_clients,
    stalled_redis,
)
from tunegate._policy import breaker as policy
from tunegate._policy.breaker import (
    TRANSITIONS,
    BreakerConfig,
    BreakerState,
    CircuitState,
    Event,
    Guard,
    Permit,
)
from tunegate._redis import LuaScript, RedisLink, load_lua
from tunegate.breaker import DEFAULT_CACHE_TTL, CircuitBreaker, CircuitBreakerRegistry
from tunegate.exceptions import CircuitBreakerOpenError, ProviderUnavailable
from tunegate.testing import FakeClock

pytestmark = pytest.mark.redis

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
WAIT = 10.0
SCRIPT = LuaScript(load_lua("breaker.lua"))


# -- parity: the Lua script and the Python machine on the same inputs ----------------------


class Twins:
    """One breaker run twice: by the Python machine and by the Lua script with ``now`` given."""

    def __init__(self, client: redis.Redis, cfg: BreakerConfig) -> None:
        self.client = client
        self.cfg = cfg
        name = uuid.uuid4().hex
        self.keys = [f"tunegate:cb:{{{name}}}", f"tunegate:cb:{{{name}}}:probes"]
        self.state = BreakerState()

    def lua(self, op: str, now: float, epoch: int = 0, token: str = "") -> list[Any]:
        cfg = self.cfg
        argv = [
            op,
            epoch,
            token,
            cfg.failure_threshold,
            cfg.success_threshold,
            repr(float(cfg.timeout)),
            cfg.half_open_max_calls,
            repr(float(cfg.probe_lease)),
            86_400_000,
            repr(now),
        ]
        return [
            x.decode() if isinstance(x, bytes) else x
            for x in SCRIPT.run(self.client, self.keys, argv)
        ]

    def step(
        self, op: str, now: float, permit: Permit | None = None, token: str = ""
    ) -> Permit | None:
        """Apply one operation to both and check they agree on everything."""
        s = self.state
        admitted: Permit | None = None
        if op == "allow":
            s, decision = policy.allow(s, self.cfg, now, token)
            admitted = decision if isinstance(decision, Permit) else None
        elif op == "reset":
            s = policy.reset(s, now)
        elif op == "peek":
            s = policy.advance(s, self.cfg, now)
        else:
            assert permit is not None
            s = policy.record(s, self.cfg, now, Event(op), permit)
        self.state = s
        reply = self.lua(op, now, permit.epoch if permit else 0, permit.probe if permit else token)
        retry_at = policy.retry_at(s, self.cfg)
        expected = [
            s.state.value,
            str(s.epoch),
            str(s.failures),
            str(s.successes),
            "" if s.opened_at is None else s.opened_at,
            int(admitted is not None),
            "" if retry_at is None else retry_at,
            len(s.probes),
        ]
        got = [*reply[1:6], reply[6], reply[7], reply[8]]
        got[4] = float(got[4]) if got[4] else ""
        got[6] = float(got[6]) if got[6] else ""
        assert got == expected, (op, now)
        raw: list[tuple[bytes, float]] = self.client.zrange(self.keys[1], 0, -1, withscores=True)  # type: ignore[assignment]
        leases = {(member.decode(), score) for member, score in raw}
        assert leases == set(s.probes), (op, now)
        return admitted


CFG = BreakerConfig(
    failure_threshold=2, success_threshold=2, timeout=10.0, half_open_max_calls=2, probe_lease=5.0
)


def walk(t: Twins) -> set[tuple[CircuitState, Event, Guard]]:
    """A path through every row of the table; returns the rows it claims to visit."""
    seen: set[tuple[CircuitState, Event, Guard]] = set()
    A, S, F, I = Event.ALLOW, Event.SUCCESS, Event.FAILURE, Event.IGNORED  # noqa: E741

    def do(row: tuple[CircuitState, Event, Guard], op: str, now: float, *args: Any) -> Any:
        before = policy.advance(t.state, t.cfg, now).state
        if row[1] is Event.ALLOW and row[0] is OPEN:
            before = t.state.state  # the ELAPSED row starts OPEN and lands HALF_OPEN
        assert before is row[0], (row, before)
        seen.add(row)
        return t.step(op, now, *args)

    p0 = do((CLOSED, A, Guard.ANY), "allow", 0.0)
    do((CLOSED, I, Guard.CURRENT), "ignored", 0.0, p0)
    do((CLOSED, F, Guard.BELOW), "failure", 1.0, p0)
    do((CLOSED, S, Guard.CURRENT), "success", 1.0, p0)
    do((CLOSED, F, Guard.BELOW), "failure", 2.0, p0)
    do((CLOSED, Event.RESET, Guard.ANY), "reset", 2.0)
    do((CLOSED, S, Guard.STALE), "success", 3.0, p0)
    do((CLOSED, F, Guard.STALE), "failure", 3.0, p0)
    do((CLOSED, I, Guard.STALE), "ignored", 3.0, p0)
    p1 = do((CLOSED, A, Guard.ANY), "allow", 4.0)
    do((CLOSED, F, Guard.BELOW), "failure", 4.0, p1)
    do((CLOSED, F, Guard.REACHED), "failure", 4.25, p1)
    assert do((OPEN, A, Guard.WAITING), "allow", 5.0) is None
    do((OPEN, S, Guard.STALE), "success", 5.0, p1)
    do((OPEN, F, Guard.STALE), "failure", 5.0, p1)
    do((OPEN, I, Guard.STALE), "ignored", 5.0, p1)
    do((OPEN, Event.RESET, Guard.ANY), "reset", 6.0)
    p3 = do((CLOSED, A, Guard.ANY), "allow", 7.0)
    do((CLOSED, F, Guard.BELOW), "failure", 7.0, p3)
    do((CLOSED, F, Guard.REACHED), "failure", 7.1, p3)
    pa = do((OPEN, A, Guard.ELAPSED), "allow", 17.1, None, "a")
    pb = do((HALF_OPEN, A, Guard.SLOT_FREE), "allow", 17.6, None, "b")
    assert do((HALF_OPEN, A, Guard.SLOTS_FULL), "allow", 18.0, None, "c") is None
    do((HALF_OPEN, S, Guard.STALE), "success", 18.0, p3)
    do((HALF_OPEN, F, Guard.STALE), "failure", 18.0, p3)
    do((HALF_OPEN, I, Guard.STALE), "ignored", 18.0, p3)
    do((HALF_OPEN, I, Guard.CURRENT), "ignored", 18.5, pa)
    do((HALF_OPEN, S, Guard.BELOW), "success", 19.0, pb)
    pd = do((HALF_OPEN, A, Guard.SLOT_FREE), "allow", 19.0, None, "d")
    do((HALF_OPEN, S, Guard.REACHED), "success", 19.5, pd)
    p6 = do((CLOSED, A, Guard.ANY), "allow", 20.0)
    do((CLOSED, F, Guard.BELOW), "failure", 20.0, p6)
    do((CLOSED, F, Guard.REACHED), "failure", 20.0, p6)
    pe = do((OPEN, A, Guard.ELAPSED), "allow", 30.0, None, "e")
    do((HALF_OPEN, F, Guard.CURRENT), "failure", 31.0, pe)
    t.step("peek", 41.0)
    do((HALF_OPEN, A, Guard.SLOT_FREE), "allow", 41.0, None, "f")
    do((HALF_OPEN, A, Guard.SLOT_FREE), "allow", 42.0, None, "g")
    do((HALF_OPEN, A, Guard.SLOTS_FULL), "allow", 45.9, None, "h")
    do((HALF_OPEN, A, Guard.SLOT_FREE), "allow", 46.0, None, "h")  # f's lease ran out at 46
    do((HALF_OPEN, Event.RESET, Guard.ANY), "reset", 46.0)
    return seen


def test_lua_and_python_agree_on_every_row_of_the_table(redis_url: str) -> None:
    """A walk through all rows: after each step both twins hold the same state and leases."""
    client = redis.Redis.from_url(redis_url)
    try:
        seen = walk(Twins(client, CFG))
    finally:
        client.close()
    assert seen == {(t.state, t.event, t.guard) for t in TRANSITIONS}


OPS = st.sampled_from(
    ["allow", "allow", "allow", "success", "failure", "failure", "ignored", "reset", "peek"]
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(
    steps=st.lists(
        st.tuples(OPS, st.sampled_from([0.0, 0.0, 0.25, 1.0, 2.5, 5.0, 10.0]), st.integers(0, 7)),
        min_size=1,
        max_size=40,
    ),
    cfg=st.builds(
        BreakerConfig,
        failure_threshold=st.integers(1, 3),
        success_threshold=st.integers(1, 3),
        timeout=st.sampled_from([2.5, 10.0]),
        half_open_max_calls=st.integers(1, 3),
        probe_lease=st.sampled_from([1.0, 5.0]),
    ),
)
def test_lua_and_python_agree_on_random_histories(
    redis_server: RedisServer, steps: list[tuple[str, float, int]], cfg: BreakerConfig
) -> None:
    """Random operations at random times, with old and current permits: the twins agree."""
    client = redis_server.client()
    try:
        twins = Twins(client, cfg)
        permits: list[Permit] = [Permit(0)]
        now = 1_700_000_000.125
        for i, (op, dt, pick) in enumerate(steps):
            now += dt
            if op == "allow":
                permit = twins.step(op, now, None, f"t{i}")
                if permit is not None:
                    permits.append(permit)
            elif op in ("reset", "peek"):
                twins.step(op, now)
            else:
                twins.step(op, now, permits[-1 - pick % len(permits)])
    finally:
        client.close()


def test_an_unknown_operation_is_an_error(redis_url: str) -> None:
    """A typo in the operation name fails loudly instead of reading as a no-op."""
    client = redis.Redis.from_url(redis_url)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match="unknown operation"):
            Twins(client, CFG).lua("succes", 1.0)
    finally:
        client.close()


# -- the shared driver ----------------------------------------------------------------------


def fail() -> None:
    raise ProviderUnavailable("down", provider="spotify", status=503)


def trip(b: CircuitBreaker) -> None:
    for _ in range(b.config.failure_threshold):
        with pytest.raises(ProviderUnavailable):
            b.call(fail)


@pytest.fixture
def links(redis_url: str) -> Iterator[list[RedisLink]]:
    """Two independent links to the same Redis, as two processes would have."""
    made = [RedisLink(redis_url), RedisLink(redis_url)]
    yield made
    for link in made:
        if link._sync is not None:
            link._sync.close()


def test_keys_are_hash_tagged_and_expire(redis_url: str) -> None:
    """The state lives at tunegate:cb:{name} with a TTL; a CLOSED breaker writes nothing."""
    b = CircuitBreakerRegistry(redis=redis_url).register("spotify", failure_threshold=2)
    client = redis.Redis.from_url(redis_url)
    try:
        b.call(lambda: None)
        assert client.keys("*") == []
        trip(b)
        assert client.hget("tunegate:cb:{spotify}", "st") == b"open"
        assert 0 < client.pttl("tunegate:cb:{spotify}") <= 86_400_000
    finally:
        client.close()


def test_a_closed_breaker_asks_redis_once_per_outcome_not_per_allow(redis_url: str) -> None:
    """With the cache fresh, allow makes no Redis call; each success or failure makes one
    (which also refreshes the cache), and a success with no failures on record writes nothing."""
    clock = FakeClock()
    b = CircuitBreaker("spotify", redis=redis_url, clock=clock, failure_threshold=50)
    client = redis.Redis.from_url(redis_url)

    def script_calls() -> int:
        stats = client.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

    try:
        b.allow()  # fetches the state (and loads the script, if this server lacks it)
        before = script_calls()  # the server counts for the whole session
        for _ in range(100):
            b.allow()
        assert script_calls() - before == 0
        for _ in range(100):
            b.call(lambda: None)
        assert script_calls() - before == 100  # one per success, none per allow
        assert not client.exists(b._keys[0])  # ... and none of them wrote anything
        clock.advance(0.4)
        b.allow()
        assert script_calls() - before == 100  # the last success refreshed the cache
        with pytest.raises(ProviderUnavailable):
            b.call(fail)
        assert script_calls() - before == 101  # the failure went to Redis
        b.call(lambda: None)
        assert script_calls() - before == 102  # and the success cleared it there
        assert b.get_stats()["failures"] == 0
    finally:
        b.close()
        client.close()


def test_a_breaker_tripped_by_one_link_is_open_for_another(links: list[RedisLink]) -> None:
    """Two registries on two connections: one trips it, the other refuses calls."""
    clock_a, clock_b = FakeClock(), FakeClock()  # they only age the cached answers
    a = CircuitBreakerRegistry(redis=links[0], clock=clock_a).register(
        "spotify", failure_threshold=3
    )
    b = CircuitBreakerRegistry(redis=links[1], clock=clock_b).register(
        "spotify", failure_threshold=3
    )
    b.call(lambda: None)  # b caches CLOSED
    trip(a)
    clock_b.advance(DEFAULT_CACHE_TTL)  # b's cached answer is now too old
    with pytest.raises(CircuitBreakerOpenError) as info:
        b.call(lambda: None)
    assert info.value.provider == "spotify"
    assert 0 < info.value.retry_after <= 60
    assert b.get_stats()["state"] == "open"
    b.reset()
    assert a.state is OPEN  # a still trusts its cache for a moment...
    clock_a.advance(DEFAULT_CACHE_TTL)
    assert a.state is CLOSED  # ...then sees the reset made by b


CHILD = """
import sys
from tunegate.breaker import CircuitBreakerRegistry
b = CircuitBreakerRegistry(redis=sys.argv[1]).register("spotify", failure_threshold=3, timeout=60)
if sys.argv[2] == "trip":
    for _ in range(3):
        b.record_failure(b.allow())
print(b.state.value)
"""


def test_a_breaker_tripped_in_another_process_is_open_here(redis_url: str) -> None:
    """A second Python process trips the breaker; this process then refuses calls."""
    clock = FakeClock()
    here = CircuitBreakerRegistry(redis=redis_url, clock=clock).register(
        "spotify", failure_threshold=3, timeout=60
    )
    assert here.call(lambda: "ok") == "ok"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, redis_url, "trip"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert child.stdout.strip() == "open"
    clock.advance(DEFAULT_CACHE_TTL)
    with pytest.raises(CircuitBreakerOpenError):
        here.call(lambda: "must not run")
    here.reset()
    other = subprocess.run(
        [sys.executable, "-c", CHILD, redis_url, "look"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert other.stdout.strip() == "closed"


def _race(breakers: list[CircuitBreaker], callers: int) -> int:
    """``callers`` threads, spread over ``breakers``, ask for a permit at once; count grants."""
    start = threading.Barrier(callers, timeout=WAIT)

    def ask(b: CircuitBreaker) -> bool:
        start.wait()
        try:
            b.allow()  # a probe that never reports: its lease holds the slot
        except CircuitBreakerOpenError:
            return False
        return True

    with ThreadPoolExecutor(callers) as pool:
        futures = [pool.submit(ask, breakers[i % len(breakers)]) for i in range(callers)]
        return sum(f.result(timeout=WAIT) for f in futures)


@pytest.mark.parametrize("max_probes", [1, 3])
def test_half_open_probes_across_two_links_are_limited_to_n(
    links: list[RedisLink], max_probes: int
) -> None:
    """20 threads on two connections in HALF_OPEN: exactly half_open_max_calls probes in all."""
    breakers = [
        CircuitBreaker(
            "spotify",
            redis=link,
            failure_threshold=2,
            timeout=0.2,
            half_open_max_calls=max_probes,
            probe_lease=30,
        )
        for link in links
    ]
    trip(breakers[0])
    time.sleep(0.25)  # past the open timeout (Redis' clock decides; this only waits for it)
    assert _race(breakers, 20) == max_probes
    stats = breakers[1].get_stats()
    assert (stats["state"], stats["half_open_in_flight"]) == ("half_open", max_probes)


async def test_half_open_probes_across_links_with_asyncio_tasks(redis_url: str) -> None:
    """20 tasks over two asyncio-only links in HALF_OPEN: exactly 2 probes."""
    clients = [redis.asyncio.Redis.from_url(redis_url) for _ in range(2)]
    breakers = [
        CircuitBreaker(
            "lastfm",
            redis=client,
            failure_threshold=1,
            timeout=0.2,
            half_open_max_calls=2,
            probe_lease=30,
        )
        for client in clients
    ]
    try:
        with pytest.raises(TimeoutError):
            await breakers[0].acall(_async_timeout)
        await asyncio.sleep(0.25)

        async def ask(b: CircuitBreaker) -> bool:
            try:
                await b.aallow()
            except CircuitBreakerOpenError:
                return False
            return True

        granted = await asyncio.wait_for(
            asyncio.gather(*(ask(breakers[i % 2]) for i in range(20))), WAIT
        )
        assert sum(granted) == 2
    finally:
        for client in clients:
            await client.aclose()
        for b in breakers:
            assert b._link is not None
            if b._link._sync is not None:
                b._link._sync.close()


async def _async_timeout() -> None:
    raise TimeoutError


def test_a_crashed_prober_does_not_wedge_the_breaker(links: list[RedisLink]) -> None:
    """A probe that never reports frees its slot once its lease runs out."""
    a, b = (
        CircuitBreaker("spotify", redis=link, failure_threshold=1, timeout=0.1, probe_lease=1.0)
        for link in links
    )
    trip(a)
    time.sleep(0.15)
    a.allow()  # a crashes here: no outcome ever comes back
    with pytest.raises(CircuitBreakerOpenError) as info:
        b.allow()
    assert 0 < info.value.retry_after <= 1.0
    time.sleep(1.05)  # Redis' clock expires the lease; this only waits for it
    probe = b.allow()
    b.record_success(probe)
    b.record_success(b.allow())
    assert b.state is CLOSED


def test_listeners_hear_transitions_made_elsewhere(links: list[RedisLink]) -> None:
    """A process hears of a transition another process made when it next talks to Redis."""
    a = CircuitBreaker("spotify", redis=links[0], failure_threshold=2, cache_ttl=0)
    b = CircuitBreaker("spotify", redis=links[1], failure_threshold=2, cache_ttl=0)
    heard_a: list[tuple[str, CircuitState, CircuitState]] = []
    heard_b: list[tuple[str, CircuitState, CircuitState]] = []
    a.add_listener(lambda *args: heard_a.append(args))
    b.add_listener(lambda *args: heard_b.append(args))
    trip(a)
    assert heard_a == [("spotify", CLOSED, OPEN)]
    assert heard_b == []
    assert b.state is OPEN
    assert heard_b == [("spotify", CLOSED, OPEN)]
    b.reset()
    assert heard_b == [("spotify", CLOSED, OPEN), ("spotify", OPEN, CLOSED)]


def test_works_with_a_decode_responses_client(redis_url: str) -> None:
    """The design's client (decode_responses=True) drives a shared breaker."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        b = CircuitBreakerRegistry(client).register("spotify", failure_threshold=2, timeout=60)
        trip(b)
        stats = b.get_stats()
        assert stats["state"] == "open"
        assert stats["shared"] is True
        assert stats["retry_at"] == pytest.approx(stats["opened_at"] + 60)  # type: ignore[operator]
    finally:
        client.close()


def test_redis_stopped_mid_test_then_restarted(
    restartable_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis goes away: the last state is kept and guarded locally; then shared again."""
    link = RedisLink(restartable_redis.url, retry_interval=0.05)
    other = RedisLink(restartable_redis.url, retry_interval=0.05)
    b = CircuitBreaker("spotify", redis=link, failure_threshold=2, timeout=60, cache_ttl=0)
    peer = CircuitBreaker("spotify", redis=other, failure_threshold=2, timeout=60, cache_ttl=0)
    try:
        trip(b)
        with caplog.at_level(logging.WARNING, logger="tunegate.redis"):
            restartable_redis.stop()
            with pytest.raises(CircuitBreakerOpenError):  # the last shared state, kept locally
                b.call(lambda: "must not run")
            assert b.get_stats()["shared"] is False
            b.reset()  # Redis is away: resets the local machine
            assert b.call(lambda: "served") == "served"
            trip(b)  # ...which still guards calls on its own
            with pytest.raises(CircuitBreakerOpenError):
                b.call(lambda: "must not run")
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1  # one warning per outage, not one per call

        restartable_redis.start()  # an empty Redis: the shared state starts CLOSED again
        for _ in range(200):
            if b.get_stats()["shared"]:
                break
            time.sleep(0.01)
        assert b.get_stats()["shared"] is True
        assert b.state is CLOSED
        trip(peer)  # shared again: the peer's trip is seen here
        with pytest.raises(CircuitBreakerOpenError):
            b.call(lambda: "must not run")
    finally:
        for lk in (link, other):
            if lk._sync is not None:
                lk._sync.close()


async def test_async_fail_open(restartable_redis: RedisServer) -> None:
    """The async forms fall back to the local machine too, and never raise a Redis error."""
    link = RedisLink(restartable_redis.url, retry_interval=0.05)
    b = CircuitBreaker("musicbrainz", redis=link, failure_threshold=1, timeout=30, cache_ttl=0)
    try:
        assert await b.acall(_async_value) == "value"
        restartable_redis.stop()
        with pytest.raises(TimeoutError):
            await b.acall(_async_timeout)
        with pytest.raises(CircuitBreakerOpenError):
            await b.acall(_async_value)
        assert (await b.aget_stats())["shared"] is False
        await b.areset()
        assert await b.acall(_async_value) == "value"
    finally:
        await link.aio.aclose()


async def _async_value() -> str:
    return "value"


async def test_async_shared_cycle(links: list[RedisLink]) -> None:
    """aallow / arecord_* / aget_stats / areset drive the shared state through a full cycle."""
    a, b = (
        CircuitBreaker("spotify", redis=link, failure_threshold=2, timeout=0.1, cache_ttl=0)
        for link in links
    )
    try:
        for _ in range(2):
            await a.arecord_failure(await a.aallow())
        assert (await b.aget_stats())["state"] == "open"
        await asyncio.sleep(0.15)  # past the open timeout on Redis' clock
        probe = await b.aallow()
        await b.arecord_ignored(probe)  # a 429: slot back, nothing counted
        await b.arecord_success(await b.aallow())
        await a.arecord_success(await a.aallow())
        assert (await a.aget_stats())["state"] == "closed"
        await a.arecord_failure(await a.aallow())
        assert (await b.aget_stats())["failures"] == 1
        await b.areset()
        assert (await a.aget_stats())["failures"] == 0
    finally:
        for link in links:
            await link.aio.aclose()


# -- failures count as consecutive across processes ----------------------------------------

# A second process that reports one success per line it reads, trusting its cached state for
# a minute (the worst case: it never refreshes that state on its own).
SUCCEEDER = """
import sys
from tunegate.breaker import CircuitBreaker
b = CircuitBreaker("spotify", redis=sys.argv[1], failure_threshold=3, cache_ttl=60)
b.record_success(b.allow())
print("ready", flush=True)
for line in sys.stdin:
    b.record_success(b.allow())
    print("ok", flush=True)
"""


def test_failures_interleaved_with_another_process_successes_do_not_open(redis_url: str) -> None:
    """Two processes: F here, S there, F, S, F (threshold 3, caches never stale) leaves the
    breaker CLOSED, as the same sequence does in one process; three F in a row open it."""
    here = CircuitBreaker("spotify", redis=redis_url, failure_threshold=3, cache_ttl=60)
    there = subprocess.Popen(
        [sys.executable, "-c", SUCCEEDER, redis_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert there.stdin is not None
    assert there.stdout is not None
    try:
        assert there.stdout.readline().strip() == "ready"
        for _ in range(2):
            here.record_failure(here.allow())
            there.stdin.write("S\n")
            there.stdin.flush()
            assert there.stdout.readline().strip() == "ok"
        here.record_failure(here.allow())
        assert here.state is CLOSED
        assert here.get_stats()["failures"] == 1
        for _ in range(2):
            here.record_failure(here.allow())
        assert here.state is OPEN
    finally:
        there.stdin.close()
        there.wait(30)
        there.stdout.close()
        here.close()


async def test_async_interleaved_outcomes_are_not_consecutive(links: list[RedisLink]) -> None:
    """The same through two links and the async forms, each side's cache never going stale."""
    a, b = (
        CircuitBreaker("spotify", redis=link, clock=FakeClock(), failure_threshold=3)
        for link in links
    )
    try:
        await b.arecord_success(await b.aallow())
        for _ in range(2):
            await a.arecord_failure(await a.aallow())
            await b.arecord_success(await b.aallow())
        await a.arecord_failure(await a.aallow())
        assert (await a.aget_stats())["state"] == "closed"
        for _ in range(2):
            await a.arecord_failure(await a.aallow())
        assert await a.astate() is OPEN
    finally:
        for link in links:
            await link.aclose()


# -- Redis stalled, full, read-only or broken: never a hang, never an error ----------------


def test_a_breaker_is_bounded_when_redis_stalls_behind_a_client_without_timeout() -> None:
    """allow and record against a Redis that never answers, through a caller's client with
    no socket timeout, return within the link's timeout; the local machine still trips."""
    with stalled_redis() as port:
        user = redis.Redis(host="127.0.0.1", port=port)
        b = CircuitBreakerRegistry(redis=user).register("spotify", failure_threshold=2)
        for _ in range(2):
            in_thread(lambda: b.record_failure(b.allow()))
        with pytest.raises(CircuitBreakerOpenError):
            in_thread(b.allow)
        assert in_thread(b.get_stats)["shared"] is False
        user.close()


async def test_async_breaker_is_bounded_when_redis_stalls() -> None:
    """The same with a caller's asyncio client and the async forms."""
    with stalled_redis() as port:
        user = redis.asyncio.Redis(host="127.0.0.1", port=port)
        b = CircuitBreaker("spotify", redis=user, failure_threshold=2)
        for _ in range(2):
            permit = await asyncio.wait_for(b.aallow(), BOUND)
            await asyncio.wait_for(b.arecord_failure(permit), BOUND)
        with pytest.raises(CircuitBreakerOpenError):
            await asyncio.wait_for(b.aallow(), BOUND)
        await b.aclose()
        await user.aclose()


@pytest.mark.parametrize("sickness", SICKNESSES)
def test_failures_count_locally_while_redis_refuses_writes(
    restartable_redis: RedisServer, sickness: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of memory, or a read-only replica after a failover: recording raises nothing,
    one warning is logged, and the local machine trips the breaker."""
    link = RedisLink(restartable_redis.url, retry_interval=30)
    b = CircuitBreaker("spotify", redis=link, failure_threshold=2, timeout=60)
    assert b.call(lambda: "ok") == "ok"
    cure = refusing_writes(restartable_redis, sickness)
    with caplog.at_level(logging.WARNING, logger="tunegate.redis"):
        for _ in range(2):
            with pytest.raises(ProviderUnavailable):
                b.call(fail)
        with pytest.raises(CircuitBreakerOpenError):
            b.call(lambda: "must not run")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert b.get_stats()["shared"] is False
    cure()
    link.close()


@pytest.mark.parametrize("sickness", SICKNESSES)
async def test_async_failures_count_locally_while_redis_refuses_writes(
    restartable_redis: RedisServer, sickness: str
) -> None:
    """The async forms fall back the same way and raise no Redis error."""
    b = CircuitBreaker(
        "spotify", redis=RedisLink(restartable_redis.url, retry_interval=30), failure_threshold=2
    )
    assert await b.acall(_async_value) == "value"
    cure = refusing_writes(restartable_redis, sickness)
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.acall(_async_timeout), BOUND)
    with pytest.raises(CircuitBreakerOpenError):
        await b.acall(_async_value)
    await b.areset()
    assert (await b.aget_stats())["state"] == "closed"
    cure()


def test_a_script_error_falls_back_and_is_logged_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A breaker key holding something else (a bug, not an outage) breaks no call: the
    local machine decides, one error is logged, and the link stays up."""
    raw = redis.Redis.from_url(redis_url)
    raw.set("tunegate:cb:{spotify}", "not a hash")
    link = RedisLink(redis_url)
    b = CircuitBreaker("spotify", redis=link, failure_threshold=2, cache_ttl=0)
    with caplog.at_level(logging.WARNING, logger="tunegate.redis"):
        for _ in range(3):
            assert b.call(lambda: "ok") == "ok"
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert link.available
    raw.close()
    link.close()


# -- connections: one per process and loop, closed with the loop or by close() -------------


def test_asyncio_run_cycles_do_not_pile_up_connections(restartable_redis: RedisServer) -> None:
    """20 asyncio.run(acall) cycles leave no Redis connection behind."""
    b = CircuitBreaker("spotify", redis=restartable_redis.url)
    for _ in range(20):
        assert asyncio.run(b.acall(_async_value)) == "value"
    assert server_clients(restartable_redis, 1) == 1  # only the one asking


async def test_close_and_aclose_close_what_the_breakers_opened(
    restartable_redis: RedisServer,
) -> None:
    """A registry or a breaker closes the connections it opened; a breaker of a registry
    leaves the registry's alone."""
    registry = CircuitBreakerRegistry(redis=restartable_redis.url)
    member, solo = (
        registry.register("spotify"),
        CircuitBreaker("lastfm", redis=restartable_redis.url),
    )
    for b in (member, solo):
        assert b.call(lambda: "ok") == "ok"
        assert await b.acall(_async_value) == "value"
    assert server_clients(restartable_redis, 5) == 5  # two links x (sync + this loop) + asker
    await member.aclose()
    member.close()
    assert server_clients(restartable_redis, 5) == 5
    await registry.aclose()
    await solo.aclose()
    assert server_clients(restartable_redis, 1) == 1
    assert member.call(lambda: "ok") == "ok"  # still usable: it connects again
    registry.close()
    assert server_clients(restartable_redis, 1) == 1


# -- the local bound: CLOSED answered without a round trip, another's trip seen within it --

TRIPPER = """
import sys
from tunegate.breaker import CircuitBreaker
b = CircuitBreaker("spotify", redis=sys.argv[1], failure_threshold=1, timeout=60)
b.record_failure(b.allow())
print(b.get_stats()["state"], flush=True)
"""


def _script_calls(server: RedisServer) -> int:
    client = server.client()
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))


@pytest.mark.parametrize("bound", [DEFAULT_CACHE_TTL, 0.25])
def test_closed_is_answered_locally_and_another_process_trip_is_seen_within_the_bound(
    redis_server: RedisServer, redis_url: str, bound: float
) -> None:
    """A CLOSED state learned from Redis (by an outcome, or by an allow) answers allow()
    with no script call while it is younger than ``cache_ttl`` (1 s by default); once it
    is that old, the next allow() asks Redis and sees the trip another process made."""
    clock = FakeClock()
    kwargs: dict[str, Any] = {} if bound == DEFAULT_CACHE_TTL else {"cache_ttl": bound}
    here = CircuitBreaker("spotify", redis=redis_url, clock=clock, timeout=60, **kwargs)
    try:
        here.record_failure(here.allow())  # the reply of the outcome says CLOSED, 1 failure
        before = _script_calls(redis_server)
        clock.advance(bound / 2)
        here.record_ignored(here.allow())  # from the view: no script call at all
        assert _script_calls(redis_server) == before
        tripped = subprocess.run(
            [sys.executable, "-c", TRIPPER, redis_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert tripped.stdout.strip() == "open"
        before = _script_calls(redis_server)  # the other process's calls counted too
        clock.advance(bound / 4)  # still inside the bound: this process does not know yet
        here.record_ignored(here.allow())
        assert _script_calls(redis_server) == before
        clock.advance(bound / 4)  # the view is now `bound` old: ask Redis
        with pytest.raises(CircuitBreakerOpenError):
            here.allow()
        assert _script_calls(redis_server) == before + 1
        assert here.state is OPEN
    finally:
        here.close()
