"""The shared (Redis) token bucket: processes sharing one bucket, Lua/Python parity, fail-open."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import subprocess
import sys
import time
import uuid
from email.utils import formatdate
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._redis_server import RedisServer, free_port
from tests.test_redis_link import (
    BOUND,
    SICKNESSES,
    in_thread,
    refusing_writes,
    server_clients,
    stalled_redis,
)
from tunegate._clock import SystemClock
from tunegate._policy.bucket import (
    BucketState,
    Limits,
    pause,
    release,
    rescale,
    reserve,
    reserve_tokens,
    resume,
)
from tunegate._redis import RedisLink
from tunegate.exceptions import RateLimitTimeout
from tunegate.ratelimit import _SCRIPT, RateLimiter, caller

pytestmark = pytest.mark.redis

KEY = "tunegate:rl:{spotify}"


class AsyncGate(SystemClock):
    """Real time (the shared bucket uses the Redis clock anyway); asleep blocks until released."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self._event: asyncio.Event | None = None

    async def asleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self._event = self._event or asyncio.Event()
        await asyncio.wait_for(self._event.wait(), 10)


# -- several processes, one bucket -------------------------------------------------------


# One worker process: acquire from the shared bucket until a common deadline, then print the
# grant times. A plain interpreter (not multiprocessing's spawn, which would re-import this
# module and pytest) keeps start-up short; stdin carries the common start time.
_SHARE_WORKER = """
import json, sys, time
from tunegate.exceptions import RateLimitTimeout
from tunegate.ratelimit import RateLimiter
url, rate, capacity, seconds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
limiter = RateLimiter(redis=url)
limiter.configure_provider("spotify", rate=rate, capacity=capacity)
limiter.get_stats()  # connect and load the script before the clock starts
print("ready", flush=True)
end = float(sys.stdin.readline()) + seconds
grants = []
for _ in range(10_000):
    left = end - time.time()
    if left <= 0:
        break
    try:
        limiter.acquire("spotify", timeout=left)  # never reserve past the deadline
    except RateLimitTimeout:
        break
    grants.append(time.time())  # after the sleep: when the caller really goes
print(json.dumps(grants), flush=True)
"""


@pytest.mark.slow
def test_four_processes_share_one_bucket(redis_url: str) -> None:
    """4 processes at 10/s for 5 s get at most 10*5 + 10 grants, and no 1 s window over 20."""
    rate, capacity, seconds, workers = 10.0, 10, 5.0, 4
    argv = [sys.executable, "-c", _SHARE_WORKER, redis_url, str(rate), str(capacity), str(seconds)]
    procs = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        start = f"{time.time()!r}\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(start)
            p.stdin.flush()
        per_process = [json.loads(p.communicate(timeout=30)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    grants = sorted(t for times in per_process for t in times)
    assert len(grants) <= rate * seconds + capacity
    assert len(grants) >= 30, "the processes barely ran; the test would prove nothing"
    assert all(per_process), "every process got a share"
    busiest = max(sum(1 for g in grants if t <= g < t + 1.0) for t in grants)
    # Times are read by the workers after they wake, so a worker descheduled for over 100 ms
    # on this shared 2-core machine can shift one grant into a neighbouring window. The exact
    # window bound of the schedule itself is proven by the policy property test and the
    # Lua/Python parity tests; here one grant of measurement slack keeps the test honest
    # without making it flaky.
    assert busiest <= rate + capacity + 1


def test_pause_set_by_one_process_holds_in_another(redis_url: str) -> None:
    """A Retry-After seen by another process pauses this process too."""
    code = (
        "import sys\n"
        "from tunegate.ratelimit import RateLimiter\n"
        "limiter = RateLimiter(redis=sys.argv[1])\n"
        "limiter.configure_provider('musicbrainz', rate=1.0, capacity=1)\n"
        "print(limiter.adjust_from_headers('musicbrainz', {'Retry-After': '30'}, status=503))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, redis_url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "30.0"
    limiter = RateLimiter(redis=redis_url)
    limiter.configure_provider("musicbrainz", rate=1.0, capacity=1)
    with pytest.raises(RateLimitTimeout) as err:
        limiter.acquire("musicbrainz", timeout=1.0)
    assert 25.0 < err.value.retry_after <= 30.0
    stats = limiter.get_stats()["musicbrainz"]
    assert stats["shared"]
    assert stats["paused_until"] == pytest.approx(time.time() + 30, abs=5)


def test_http_date_retry_after_pauses_every_sharer(redis_url: str) -> None:
    """Retry-After as an HTTP-date, seen by one limiter, pauses another on the same Redis."""
    seen, other = RateLimiter(redis=redis_url), RateLimiter(redis=redis_url)
    for limiter in (seen, other):
        limiter.configure_provider("spotify", rate=10.0, capacity=10)
    when = formatdate(time.time() + 60, usegmt=True)
    assert seen.adjust_from_headers("spotify", {"Retry-After": when}, status=429)
    with pytest.raises(RateLimitTimeout) as err:
        other.acquire("spotify", timeout=0)
    assert err.value.retry_after == pytest.approx(60, abs=3)


def test_resume_in_one_process_ends_the_pause_in_another(redis_url: str) -> None:
    """An operator's resume on one limiter ends a Retry-After pause for every sharer."""
    seen, other = RateLimiter(redis=redis_url), RateLimiter(redis=redis_url)
    for limiter in (seen, other):
        limiter.configure_provider("spotify", rate=10.0, capacity=10)
    assert seen.adjust_from_headers("spotify", {"Retry-After": "7200"}, status=429)
    assert other.acquire("spotify", blocking=False) is False
    other.resume("spotify")
    assert seen.get_stats()["spotify"]["paused_until"] is None
    assert seen.acquire("spotify", blocking=False) == 0.0
    assert other.acquire("spotify", blocking=False) is False  # restarted empty, shared
    assert other.acquire("spotify", timeout=1.0) <= 0.1 + 1e-5  # the reserved wait


async def test_aresume_on_the_shared_bucket(redis_url: str) -> None:
    """aresume is resume for asyncio; it also clears this process's own copy of the pause,
    so that a Redis outage right after does not bring the pause back."""
    limiter = RateLimiter(redis=redis_url)
    limiter.configure_provider("lastfm", rate=5.0, capacity=5)
    await limiter.apause("lastfm", 600)
    await limiter.aresume("lastfm")
    assert await limiter.aacquire("lastfm", blocking=False) == 0.0
    bucket = limiter.buckets["lastfm"]
    assert bucket._state.paused_until <= bucket._clock.monotonic()


def test_shared_timeout_does_not_consume(redis_url: str) -> None:
    """A refused shared acquire leaves the bucket's state exactly as it was."""
    limiter = RateLimiter(redis=redis_url)
    limiter.configure_provider("spotify", rate=1.0, capacity=1)
    limiter.acquire("spotify")
    client = redis.Redis.from_url(redis_url)
    before = client.hgetall(KEY)
    for _ in range(3):
        with pytest.raises(RateLimitTimeout) as err:
            limiter.acquire("spotify", timeout=0.2)
        assert err.value.retry_after == pytest.approx(1.0, abs=0.3)
    assert client.hgetall(KEY) == before
    assert limiter.get_stats()["spotify"]["granted"] == 1
    client.close()


def test_bucket_key_is_hash_tagged_and_expires(redis_url: str) -> None:
    """One hash per provider, hash-tagged, expiring idle_ttl after it is full and unpaused;
    beside it, in the same slot, its members, expiring member_ttl after the last one's mark."""
    limiter = RateLimiter(redis=redis_url, idle_ttl=60, member_ttl=20)
    limiter.configure_provider("spotify", rate=10.0, capacity=10)
    limiter.acquire("spotify")
    client = redis.Redis.from_url(redis_url)
    assert sorted(client.keys("*")) == [KEY.encode(), f"{KEY}:members".encode()]
    assert 59_000 < client.pttl(KEY) <= 60_200
    assert 19_000 < client.pttl(f"{KEY}:members") <= 20_000
    limiter.pause("spotify", 30)
    assert 89_000 < client.pttl(KEY) <= 91_200
    client.close()


def test_adjust_rate_reaches_every_process(redis_url: str) -> None:
    """adjust_rate on one limiter slows every limiter sharing the bucket; reset_rate undoes it."""
    admin, worker = RateLimiter(redis=redis_url), RateLimiter(redis=redis_url)
    for limiter in (admin, worker):
        limiter.configure_provider("spotify", rate=10.0, capacity=1)
    admin.buckets["spotify"].adjust_rate(new_rate=0.5)
    worker.acquire("spotify")
    with pytest.raises(RateLimitTimeout) as err:
        worker.acquire("spotify", timeout=0)
    assert err.value.retry_after == pytest.approx(2.0, abs=0.3)
    assert worker.get_stats()["spotify"]["rate"] == 0.5
    admin.buckets["spotify"].reset_rate()
    assert worker.get_stats()["spotify"]["rate"] == 10.0


async def test_asyncio_client_is_accepted(redis_url: str) -> None:
    """A redis.asyncio.Redis works for the async forms, and its sync twin for get_stats."""
    client = redis.asyncio.Redis.from_url(redis_url)
    limiter = RateLimiter(redis=client)
    limiter.configure_provider("lastfm", rate=100.0, capacity=2)
    assert await limiter.aacquire("lastfm") == 0.0
    await limiter.apause("lastfm", 5)
    stats = limiter.get_stats()["lastfm"]
    assert stats["shared"]
    assert stats["paused_until"] is not None
    await client.aclose()


async def test_a_shared_buckets_local_waiters_are_served_round_robin(redis_url: str) -> None:
    """On a shared bucket, this process's waiters take the slots it reserved in Redis in
    round-robin order by caller key: 20 of one key queued, then 2 of another."""
    gate = AsyncGate()
    limiter = RateLimiter(redis=redis_url, clock=gate)
    limiter.configure_provider("spotify", rate=1.0, capacity=1)  # slots 1 s apart
    await limiter.aacquire("spotify")

    async def one(key: str) -> tuple[str, float]:
        with caller(key):
            return key, await limiter.aacquire("spotify")

    tasks = []
    for key in ["heavy"] * 20 + ["light"] * 2:
        tasks.append(asyncio.create_task(one(key)))
        for _ in range(1000):  # until this one has its slot (bounded: ~5 s)
            if len(gate.slept) == len(tasks):
                break
            await asyncio.sleep(0.005)
    assert len(gate.slept) == 22
    assert gate._event is not None
    gate._event.set()
    done = await asyncio.gather(*tasks)
    # Sleeps add up to each slot counted from its own arrival: the 22 arrive well within 1 s.
    order = [key for key, _ in sorted(done, key=lambda item: item[1])]
    assert [i for i, key in enumerate(order) if key == "light"] == [1, 3]


def test_decode_responses_client_is_accepted(redis_url: str) -> None:
    """A client with decode_responses=True (the design's example) works the same."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    limiter = RateLimiter(redis=client)
    limiter.configure_provider("spotify", rate=10.0, capacity=2)
    assert limiter.acquire("spotify") == 0.0
    stats = limiter.get_stats()["spotify"]
    assert stats["shared"]
    assert stats["available_tokens"] == pytest.approx(1.0, abs=0.2)
    client.close()


async def test_cancelled_shared_waiter_gives_its_slot_back(redis_url: str) -> None:
    """A task cancelled while waiting on the shared bucket returns its slot to Redis."""
    gate = AsyncGate()
    link = RedisLink(redis_url)
    limiter = RateLimiter(redis=link, clock=gate)
    limiter.configure_provider("spotify", rate=1.0, capacity=1)
    await limiter.aacquire("spotify")
    task = asyncio.create_task(limiter.aacquire("spotify"))
    for _ in range(500):
        if gate.slept:
            break
        await asyncio.sleep(0.01)
    assert gate.slept, "the waiter never reserved"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(RateLimitTimeout) as err:
        await limiter.aacquire("spotify", timeout=0)
    assert err.value.retry_after < 1.5  # ~1 s: not ~2 s behind a phantom waiter
    await link.aio.aclose()


# -- fail open ---------------------------------------------------------------------------


def test_redis_outage_falls_back_locally_and_recovers(
    restartable_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis stopped, acquire still succeeds locally; after a restart it is shared again."""
    link = RedisLink(restartable_redis.url, retry_interval=0.05)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("spotify", rate=1000.0, capacity=5)
    limiter.acquire("spotify")
    assert limiter.get_stats()["spotify"]["shared"]

    restartable_redis.stop()
    with caplog.at_level(logging.INFO, logger="tunegate.redis"):
        for _ in range(5):
            assert limiter.acquire("spotify") >= 0.0
        assert not limiter.get_stats()["spotify"]["shared"]
        outage = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(outage) == 1, "one warning per outage"

        restartable_redis.start()
        client = restartable_redis.client()
        # An acquire made while Redis was still coming up fell back locally; wait for one
        # that reached Redis (its key), not just for Redis to answer a read.
        for _ in range(300):  # the link retries after 50 ms; allow ~3 s
            limiter.acquire("spotify")
            if client.exists(KEY):
                break
            time.sleep(0.01)
    assert limiter.get_stats()["spotify"]["shared"]
    assert client.exists(KEY)
    client.close()
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert limiter.get_stats()["spotify"]["granted"] >= 7


async def test_async_acquire_fails_open_when_redis_is_unreachable() -> None:
    """aacquire against a Redis nobody listens on falls back to the local bucket."""
    link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", retry_interval=30)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("spotify", rate=1000.0, capacity=2)
    assert await limiter.aacquire("spotify") == 0.0
    await limiter.apause("spotify", 10)  # honoured locally while Redis is away
    with pytest.raises(RateLimitTimeout):
        await limiter.aacquire("spotify", timeout=0)
    assert not limiter.get_stats()["spotify"]["shared"]
    await link.aio.aclose()


# -- Redis stalled, full, read-only or broken: never a hang, never an error --------------


def test_acquire_is_bounded_when_redis_stalls_behind_a_client_without_timeout() -> None:
    """A caller's redis.Redis has no socket timeout: acquire against a Redis that accepts
    and never answers still returns (from the local bucket) within the link's timeout."""
    with stalled_redis() as port:
        user = redis.Redis(host="127.0.0.1", port=port)
        limiter = RateLimiter(redis=user)
        limiter.configure_provider("spotify", rate=100.0, capacity=10)
        assert in_thread(lambda: limiter.acquire("spotify")) == 0.0
        assert in_thread(lambda: limiter.get_stats()["spotify"]["shared"]) is False
        limiter.close()
        user.close()


async def test_aacquire_is_bounded_when_redis_stalls() -> None:
    """The same with a caller's asyncio client and aacquire."""
    with stalled_redis() as port:
        user = redis.asyncio.Redis(host="127.0.0.1", port=port)
        limiter = RateLimiter(redis=user)
        limiter.configure_provider("spotify", rate=100.0, capacity=10)
        assert await asyncio.wait_for(limiter.aacquire("spotify"), BOUND) == 0.0
        stats = await asyncio.wait_for(limiter.aget_stats(), BOUND)
        assert stats["spotify"]["shared"] is False
        await limiter.aclose()
        await user.aclose()


def _tat(server: RedisServer) -> bytes | None:
    raw = server.client()
    try:
        return raw.hget(KEY, "tat")  # type: ignore[return-value]
    finally:
        raw.close()


@pytest.mark.parametrize("sickness", SICKNESSES)
def test_acquire_goes_on_locally_while_redis_refuses_writes(
    restartable_redis: RedisServer, sickness: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of memory, or a read-only replica after a failover: acquire and pause go on
    locally with one warning, and take the shared bucket again once Redis recovers."""
    link = RedisLink(restartable_redis.url, retry_interval=0.05)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("spotify", rate=1000.0, capacity=5)
    limiter.acquire("spotify")
    before = _tat(restartable_redis)
    cure = refusing_writes(restartable_redis, sickness)
    with caplog.at_level(logging.WARNING, logger="tunegate.redis"):
        for _ in range(3):
            assert limiter.acquire("spotify") >= 0.0
        limiter.pause("spotify", 0.001)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert _tat(restartable_redis) == before  # nothing reached Redis
    cure()
    for _ in range(300):  # the link tries again after 50 ms; allow ~3 s
        limiter.acquire("spotify")
        if _tat(restartable_redis) != before:
            break
        time.sleep(0.01)
    assert _tat(restartable_redis) != before
    limiter.close()


@pytest.mark.parametrize("sickness", SICKNESSES)
async def test_aacquire_goes_on_locally_while_redis_refuses_writes(
    restartable_redis: RedisServer, sickness: str
) -> None:
    """The async forms fall back the same way and raise nothing."""
    limiter = RateLimiter(redis=RedisLink(restartable_redis.url, retry_interval=30))
    limiter.configure_provider("spotify", rate=1000.0, capacity=5)
    cure = refusing_writes(restartable_redis, sickness)
    for _ in range(3):
        assert await asyncio.wait_for(limiter.aacquire("spotify"), BOUND) >= 0.0
    await limiter.apause("spotify", 0.001)
    assert await limiter.aadjust_from_headers("spotify", {"Retry-After": "0.001"}) == 0.001
    assert _tat(restartable_redis) is None
    cure()


def test_a_script_error_falls_back_and_is_logged_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bucket key holding something else (a bug, not an outage) does not break acquire:
    the local bucket serves, one error is logged, and the link stays up."""
    raw = redis.Redis.from_url(redis_url)
    raw.set(KEY, "not a hash")
    link = RedisLink(redis_url)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("spotify", rate=1000.0, capacity=5)
    with caplog.at_level(logging.WARNING, logger="tunegate.redis"):
        for _ in range(3):
            assert limiter.acquire("spotify") == 0.0
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert link.available
    raw.close()
    link.close()


# -- connections: one per process and loop, closed with the loop or by close() -----------


def test_asyncio_run_cycles_do_not_pile_up_connections(restartable_redis: RedisServer) -> None:
    """20 asyncio.run(aacquire) cycles leave no Redis connection behind."""
    limiter = RateLimiter(redis=restartable_redis.url)
    limiter.configure_provider("spotify", rate=1000.0, capacity=100)
    for _ in range(20):
        assert asyncio.run(limiter.aacquire("spotify")) == 0.0
    assert server_clients(restartable_redis, 1) == 1  # only the one asking


async def test_close_and_aclose_close_what_the_limiter_opened(
    restartable_redis: RedisServer,
) -> None:
    """aclose() closes the connections a limiter opened itself, close() its sync one; a
    RedisLink handed in stays open for its owner."""
    link = RedisLink(restartable_redis.url)
    owner, guest = RateLimiter(redis=restartable_redis.url), RateLimiter(redis=link)
    for limiter in (owner, guest):
        limiter.configure_provider("spotify", rate=1000.0, capacity=100)
        limiter.acquire("spotify")
        await limiter.aacquire("spotify")
    assert server_clients(restartable_redis, 5) == 5  # two links x (sync + this loop) + asker
    await owner.aclose()
    await guest.aclose()
    assert server_clients(restartable_redis, 3) == 3
    owner.close()  # idempotent; the owner reconnects if used again
    assert owner.acquire("spotify") == 0.0
    assert server_clients(restartable_redis, 4) == 4
    owner.close()
    await link.aclose()
    link.close()
    assert server_clients(restartable_redis, 1) == 1


# -- Lua / Python parity -----------------------------------------------------------------

# Any "now" works: the script takes it as an argument. Times on a 1/8 s grid and rates that
# are powers of two keep both sides' arithmetic exact, so the comparison can be strict.
BASE_US = 1_000_000_000_000
T0 = 1000.0
RATES = [(0.5, 1), (1.0, 2), (2.0, 3), (4.0, 1), (8.0, 4)]

Step = tuple[int, tuple[str, Any]]


def _lua(client: redis.Redis, key: str, cfg: Limits, now: float, op: str, *extra: str) -> Any:
    now_us = BASE_US + (now - T0) * 1e6
    args = [op, repr(cfg.rate), str(cfg.capacity), "3600000", repr(now_us), *extra]
    return _SCRIPT.run(client, [key], args)


def _seconds(us: float) -> float:
    return T0 + (us - BASE_US) / 1e6


def check_parity(client: redis.Redis, configured: Limits, steps: list[Step]) -> None:
    """Run the same steps through the Python policy and the Lua script; compare every answer."""
    key = f"tunegate:rl:{{parity-{uuid.uuid4().hex}}}"
    limits, state, now = configured, BucketState(), T0
    last: tuple[Any, Any] | None = None
    before = -math.inf
    for gap, (op, arg) in steps:
        now += gap / 8
        if op == "acquire":
            r = reserve(state, limits, now, arg)
            reply = _lua(
                client, key, configured, now, "acquire", "" if arg is None else repr(arg * 1e6)
            )
            assert (bool(reply[0]), reply[1]) == (r.granted, pytest.approx(r.wait * 1e6, abs=1))
            if r.granted:
                state, last = r.state, (r, reply)
        elif op == "take":
            tokens, max_wait = arg
            r = reserve_tokens(state, limits, now, tokens, max_wait)
            wait_arg = "" if max_wait is None else repr(max_wait * 1e6)
            reply = _lua(client, key, configured, now, "acquire", wait_arg, "", "", "", str(tokens))
            assert (bool(reply[0]), reply[1]) == (r.granted, pytest.approx(r.wait * 1e6, abs=1))
            if r.granted:
                state, last = r.state, (r, reply)
        elif op == "pause":
            after_pause = pause(state, limits, now, arg)
            if after_pause.tat > state.tat:
                before = state.tat  # as TokenBucket keeps it (Lua: its 'pre' field)
            state = after_pause
            _lua(client, key, configured, now, "pause", repr(arg * 1e6))
        elif op == "resume":
            was_paused = state.paused_until > now
            state = resume(state, limits, now, before)
            assert _lua(client, key, configured, now, "resume") == int(was_paused)
        elif op == "rate":
            new = configured if arg is None else Limits(*arg)
            state, limits = rescale(state, limits, new, now), new
            extra = ("", "") if arg is None else (repr(arg[0]), str(arg[1]))
            _lua(client, key, configured, now, "rate", *extra)
        elif op == "release" and last is not None:
            after = release(state, last[0])
            given_back = _lua(client, key, configured, now, "release", last[1][2], last[1][3])
            assert given_back == int(after != state)
            state = after
        lua_now, tat, paused, rate, cap = (
            float(v) for v in _lua(client, key, configured, now, "peek")
        )
        assert lua_now == BASE_US + (now - T0) * 1e6
        assert (rate, int(cap)) == (limits.rate, limits.capacity)
        # Both sides, as "not before now": a missing or past value means the same thing.
        assert _seconds(max(tat, lua_now)) == pytest.approx(max(state.tat, now), abs=1e-9)
        assert _seconds(max(paused, lua_now)) == pytest.approx(
            max(state.paused_until, now), abs=1e-9
        )


def test_lua_matches_python_on_a_scenario(redis_url: str) -> None:
    """A burst, a queue, a refusal, a give-back, pauses, rate changes: the same answers."""
    client = redis.Redis.from_url(redis_url)
    steps: list[Step] = [
        (0, ("acquire", None)),
        (0, ("acquire", None)),
        (0, ("acquire", None)),
        (0, ("acquire", None)),  # queues behind the burst
        (1, ("acquire", 0.0)),  # refused
        (0, ("take", (2, 0.5))),  # refused: the second slot is further off
        (0, ("take", (2, None))),  # both, at the second one's start
        (0, ("release", None)),  # both come back
        (1, ("release", None)),  # the last reservation comes back
        (2, ("pause", 1.5)),
        (1, ("acquire", 0.5)),  # refused: paused
        (1, ("pause", 0.25)),  # shorter: ignored
        (0, ("resume", None)),  # over now: one token now, the rest at the steady rate
        (0, ("acquire", 0.0)),
        (0, ("acquire", 0.0)),  # refused: the bucket restarted empty
        (0, ("resume", None)),  # not paused: nothing to do
        (0, ("acquire", None)),
        (0, ("pause", 4.0)),
        (0, ("acquire", None)),  # reserves a slot behind the pause...
        (1, ("resume", None)),  # ...which stands: so does the queue behind it
        (0, ("acquire", 0.0)),  # refused
        (0, ("pause", 1.5)),
        (0, ("rate", (8.0, 4))),  # faster while paused: owed time shrinks below the pause
        (0, ("acquire", None)),  # goes when the pause ends...
        (0, ("acquire", None)),  # ...and the next one an interval later, not at the same time
        (4, ("rate", (0.5, 1))),
        (0, ("acquire", None)),
        (0, ("acquire", 10.0)),
        (8, ("rate", None)),  # back to the configured rate
        (40, ("acquire", None)),
    ]
    check_parity(client, Limits(2.0, 3), steps)
    client.close()


_steps = st.lists(
    st.tuples(
        st.integers(0, 12),
        st.one_of(
            st.tuples(st.just("acquire"), st.sampled_from([None, None, 0.0, 0.125, 0.3, 1.0])),
            st.tuples(st.just("pause"), st.sampled_from([0.0, 0.25, 1.0, 2.5])),
            st.tuples(st.just("resume"), st.none()),
            st.tuples(
                st.just("take"),
                st.tuples(st.integers(1, 4), st.sampled_from([None, 0.0, 0.5, 2.0])),
            ),
            st.tuples(st.just("rate"), st.sampled_from([None, *RATES])),
            st.tuples(st.just("release"), st.none()),
        ),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=120, deadline=None)
@given(configured=st.sampled_from(RATES), steps=_steps)
def test_lua_matches_python_on_random_steps(
    redis_server: RedisServer, configured: tuple[float, int], steps: list[Step]
) -> None:
    """On any sequence of acquire/pause/rate/release, Lua and Python agree step by step."""
    client = redis_server.client()
    check_parity(client, Limits(*configured), steps)
    client.close()
