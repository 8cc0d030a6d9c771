"""The Redis backend against a real redis-server: one round trip per hit, SCAN + UNLINK,
glob parity, and failing open while Redis is stopped (then recovering by itself)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._redis_server import RedisServer, free_port
from tunegate._policy.keys import compile_glob
from tunegate._redis import RedisLink
from tunegate.cache import CacheManager, FrozenDict
from tunegate.exceptions import ConfigurationError
from tunegate.testing import FakeClock

pytestmark = pytest.mark.redis

TRACK: dict[str, Any] = {
    "id": "4uLU6hMCjMI75M1A2tKUQC",
    "name": "Strobe",
    "artists": [{"name": "deadmau5"}],
}


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def cache(redis_url: str) -> Iterator[CacheManager]:
    manager = CacheManager(redis_url)
    yield manager
    manager.close()


def _commands(raw: redis.Redis) -> int:
    return int(raw.info("stats")["total_commands_processed"])


def test_roundtrip_with_the_designs_client(redis_url: str) -> None:
    """The design passes redis.Redis(decode_responses=True); values still round-trip."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    cache = CacheManager(client, default_ttl=604800)
    key = cache.key("spotify:search", "Deadmau5", "Strobe")
    cache.store(key, TRACK)
    entry = cache.lookup(key)
    assert entry is not None
    assert entry.value == TRACK
    assert type(entry.value) is FrozenDict
    assert (entry.provider, entry.kind, entry.negative, entry.stale) == (
        "spotify",
        "spotify:search",
        False,
        False,
    )
    assert cache.get_stats()["backend"] == "redis"
    assert cache.invalidate_pattern("spotify:*") == 1
    cache.close()
    client.ping()  # close() leaves a caller's client alone
    client.close()


def test_one_round_trip_per_hit(cache: CacheManager, raw: redis.Redis) -> None:
    """A hit is a single GET: Redis processes exactly one command for it."""
    key = cache.key("spotify:track", TRACK["id"])
    cache.store(key, TRACK)
    cache.lookup(key)  # connection already open
    baseline = _commands(raw)
    baseline = _commands(raw) - baseline  # what reading the counter itself costs
    before = _commands(raw)
    assert cache.lookup(key) is not None
    assert _commands(raw) - before - baseline == 1


def test_redis_drops_entries_after_the_grace(cache: CacheManager, raw: redis.Redis) -> None:
    """SET PX covers TTL plus grace, so Redis frees dead entries itself."""
    key = cache.key("spotify:search", "a", "b")
    cache.store(key, 1, ttl=100.0)
    pttl = raw.pttl(key)
    grace = cache.policy.stale_grace
    assert (90.0 + grace) * 1000 <= pttl <= (100.0 + grace) * 1000 + 1
    neg = cache.key("spotify:search", "c", "d")
    cache.store(neg, None, negative=True)
    assert 0.9 * cache.policy.negative_ttl * 1000 <= raw.pttl(neg) <= 3600 * 1000 + 1


def test_ttl_stale_and_negative(redis_url: str) -> None:
    """The stamps travel in the entry's header: fresh, stale, then gone."""
    clock = FakeClock(wall=time.time())
    cache = CacheManager(redis_url, clock=clock, jitter=0.0, stale_grace=50.0)
    key = cache.key("lastfm:track_tags", "a", "b")
    cache.store(key, ["rock"], ttl=10.0)
    neg = cache.key("musicbrainz:isrc", "XX")
    cache.store(neg, None, negative=True)
    negative = cache.lookup(neg)
    assert negative is not None
    assert negative.negative
    clock.advance(10.0)
    entry = cache.lookup(key)
    assert entry is not None
    assert entry.stale
    assert entry.value == ["rock"]
    clock.advance(50.0)
    assert cache.lookup(key) is None
    cache.close()


def test_invalidate_pattern_scans_and_unlinks(cache: CacheManager, raw: redis.Redis) -> None:
    """Deletes in SCAN + UNLINK batches, never KEYS; user data stays literal."""
    raw.config_resetstat()
    for i in range(1200):
        cache.store(cache.key("spotify:search", "many", str(i)), i)
    cache.store(cache.key("spotify:search", "*", "x"), 1)
    cache.store(cache.key("spotify:track", "keep"), 1)
    other = CacheManager(raw, namespace="other")
    other.store(other.key("spotify:search", "many", "0"), 1)
    assert cache.invalidate_pattern(cache.pattern("spotify:search", "*")) == 1
    assert cache.invalidate_pattern(cache.pattern("spotify:search", "many")) == 1200
    assert cache.invalidate_pattern("spotify:search:*") == 0
    assert cache.invalidate("spotify:track", "keep") == 1
    assert other.get(other.key("spotify:search", "many", "0")) == 1
    stats = raw.info("commandstats")
    assert "cmdstat_keys" not in stats
    assert stats["cmdstat_scan"]["calls"] >= 3
    assert stats["cmdstat_unlink"]["calls"] >= 4  # 1 + 3 batches of <= 500 + 1


_GLOB_CHARS = st.sampled_from(["a", "b", "é", ":", "*", "?", "[", "]", "^", "-", "\\", "%"])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(_GLOB_CHARS, min_size=1, max_size=5).map("".join),
        min_size=1,
        max_size=6,
        unique=True,
    ),
    st.lists(_GLOB_CHARS, min_size=1, max_size=6).map("".join),
)
def test_glob_parity_with_redis(raw: redis.Redis, names: list[str], pattern: str) -> None:
    """compile_glob (memory and SQLite) matches the same keys as Redis SCAN MATCH."""
    raw.flushdb()
    for name in names:
        raw.set(name, 1)
    by_redis = {k.decode() for k in raw.scan_iter(match=pattern, count=100)}
    ours = {n for n in names if compile_glob(pattern).match(n.encode())}
    assert ours == by_redis


def test_foreign_value_is_a_miss_and_an_error(cache: CacheManager, raw: redis.Redis) -> None:
    """Something else written under our key reads as a miss, counted as an error."""
    key = cache.key("spotify:track", "x")
    raw.set(key, b"\x00\xffnot ours")
    assert cache.lookup(key) is None
    assert cache.get_stats()["errors"] == 1


async def test_async_api(redis_url: str) -> None:
    """The async twins on redis.asyncio, with a URL and with a caller's asyncio client."""
    async with CacheManager(redis_url) as cache:
        key = cache.key("spotify:track", "x")
        await cache.astore(key, TRACK)
        entry = await cache.alookup(key)
        assert entry is not None
        assert entry.value == TRACK
        assert cache.lookup(key) is not None  # sync and async clients share the data
        assert await cache.ainvalidate("spotify:track", "x") == 1
        await cache.aset(cache.key("spotify:search", "a", "b"), 1)
        assert await cache.ainvalidate_pattern("spotify:*") == 1
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    cache = CacheManager(client)
    await cache.astore(cache.key("spotify:track", "y"), [1])
    assert await cache.aget(cache.key("spotify:track", "y")) == [1]
    await cache.aclose()
    await client.aclose()


# -- decoded once per stored string ----------------------------------------------------------


def _cmd_calls(raw: redis.Redis, command: str) -> int:
    stats = raw.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_hit_reuses_the_decoded_value_until_the_stored_bytes_change(
    cache: CacheManager, redis_url: str
) -> None:
    """Two hits on the same stored string share one frozen object (decoded once), which
    refuses mutation; a write by another process changes the bytes, and the next hit reads
    it, still one GET each."""
    key = cache.key("spotify:track", TRACK["id"])
    cache.store(key, TRACK)
    first, second = cache.get(key), cache.get(key)
    assert first is second
    assert first == TRACK
    with pytest.raises(TypeError):
        first["name"] = "changed"
    with pytest.raises(TypeError):
        first["artists"].append({"name": "someone"})
    with pytest.raises(TypeError):
        first["artists"][0]["name"] = "changed"
    other = CacheManager(redis_url)  # another process sharing the Redis
    try:
        other.store(key, {**TRACK, "name": "Strobe (Radio Edit)"})
        third = cache.get(key)
        assert third is not first
        assert third["name"] == "Strobe (Radio Edit)"
        assert type(third) is FrozenDict
        assert cache.get(key) is third
        other.invalidate("spotify:track", TRACK["id"])
        assert cache.get(key) is None  # Redis answers every hit: gone means gone
    finally:
        other.close()
    assert cache.get_stats()["hits"] == 4


def test_decoded_entries_are_bounded_by_count_and_bytes(raw: redis.Redis, redis_url: str) -> None:
    """The oldest decoded entry goes first past ``decoded_entries`` or ``decoded_bytes``;
    one bigger than ``decoded_bytes`` is never kept; 0 keeps none."""
    from tunegate.cache import RedisBackend

    def decoded_again(cache: CacheManager, key: str) -> bool:
        return cache.get(key) is not cache.get(key)

    by_count = CacheManager(backend=RedisBackend(redis_url, decoded_entries=2))
    keys = [by_count.key("spotify:track", str(i)) for i in range(3)]
    for key in keys:
        by_count.store(key, TRACK)
    held = [by_count.get(k) for k in keys]  # key 0 decoded first, so evicted by key 2
    assert by_count.get(keys[0]) is not held[0]
    assert by_count.get(keys[2]) is held[2]
    by_count.close()

    sizes = [len(raw.get(k) or b"") for k in keys]  # stamps differ by a digit or two
    by_bytes = CacheManager(backend=RedisBackend(redis_url, decoded_bytes=2 * max(sizes)))
    held = [by_bytes.get(k) for k in keys]
    assert by_bytes.get(keys[0]) is not held[0]
    assert by_bytes.get(keys[2]) is held[2]
    by_bytes.close()

    too_small = CacheManager(backend=RedisBackend(redis_url, decoded_bytes=sizes[0] - 1))
    assert decoded_again(too_small, keys[0])
    too_small.close()
    off = CacheManager(backend=RedisBackend(redis_url, decoded_entries=0))
    assert decoded_again(off, keys[0])
    off.close()
    with pytest.raises(ConfigurationError):
        RedisBackend(redis_url, decoded_entries=-1)


def test_hit_flow_is_one_get_for_a_key_read_fresh_and_nothing_otherwise(
    redis_url: str, raw: redis.Redis
) -> None:
    """The request path's guess: a key this process read fresh is looked up with one plain
    GET (a hit, counted); an unknown key, an expired one, or one Redis dropped since
    returns None uncounted, so the caller looks it up its own way."""
    from tunegate._drive import drive

    clock = FakeClock()
    cache = CacheManager(redis_url, clock=clock, ttls={"spotify:track": 10.0}, jitter=0.0)
    key = cache.key("spotify:track", TRACK["id"])
    try:
        cache.store(key, TRACK)
        raw.config_resetstat()
        assert drive(cache.hit_flow(key)) is None  # never read here: no command at all
        assert _cmd_calls(raw, "get") == 0
        assert cache.lookup(key) is not None
        entry = drive(cache.hit_flow(key))
        assert entry is not None
        assert entry.value == TRACK
        assert _cmd_calls(raw, "get") == 2
        assert cache.get_stats()["hits"] == 2
        clock.advance(10.0)  # past fresh_until: no guess, no command
        assert drive(cache.hit_flow(key)) is None
        assert _cmd_calls(raw, "get") == 2
        clock.advance(-5.0)
        raw.delete(key)  # dropped behind our back: one GET, then None, uncounted
        assert drive(cache.hit_flow(key)) is None
        assert _cmd_calls(raw, "get") == 3
        assert cache.get_stats()["hits"] == 2
        assert cache.get_stats()["misses"] == 0
    finally:
        cache.close()


def test_packed_is_what_a_store_writes(redis_url: str, raw: redis.Redis) -> None:
    """The request path's write (``packed``) and the backend's put share one encoding and
    one expiry rule: the same string and a PX that ends with the stale grace."""
    clock = FakeClock()
    cache = CacheManager(redis_url, clock=clock, jitter=0.0)
    key = cache.key("spotify:search", "a", "b")
    try:
        value, stored, ttl_ms = cache.packed(key, TRACK, ttl=100.0)
        assert value == TRACK
        assert type(value) is FrozenDict
        assert ttl_ms == int((100.0 + cache.policy.stale_grace) * 1000) + 1
        cache.store(key, TRACK, ttl=100.0)
        assert raw.get(key) == stored
        assert ttl_ms - 5000 <= raw.pttl(key) <= ttl_ms
    finally:
        cache.close()


# -- Redis going away ------------------------------------------------------------------------


def _outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_redis_stopped_mid_test_then_restarted(
    restartable_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """While Redis is down, reads miss and writes drop without raising, with one warning;
    after it restarts, the cache works again by itself."""
    caplog.set_level(logging.INFO, logger="tunegate.redis")
    link = RedisLink(restartable_redis.url, retry_interval=0.1)
    cache = CacheManager(link)
    key = cache.key("spotify:track", "x")
    cache.store(key, TRACK)
    assert cache.get(key) == TRACK

    restartable_redis.stop()
    for _ in range(20):
        assert cache.lookup(key) is None
        assert cache.store(key, TRACK) == TRACK
        assert cache.invalidate("spotify:track", "x") == 0
        assert cache.invalidate_pattern("spotify:*") == 0
    stats = cache.get_stats()
    assert stats["misses"] == 20
    assert stats["errors"] == 80
    assert len([m for m in _outage_warnings(caplog) if "unreachable" in m]) == 1

    restartable_redis.start()  # empty: the server does not persist
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        cache.store(key, {"back": True})
        if cache.get(key) == {"back": True}:
            break
        time.sleep(0.05)
    assert cache.get(key) == {"back": True}
    assert any("reachable again" in r.getMessage() for r in caplog.records)  # at INFO
    link.sync.close()


async def test_redis_stopped_mid_test_async(
    restartable_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The same outage and recovery through the asyncio client."""
    caplog.set_level(logging.WARNING)
    link = RedisLink(restartable_redis.url, retry_interval=0.1)
    cache = CacheManager(link)
    key = cache.key("spotify:track", "x")
    await cache.astore(key, TRACK)
    assert await cache.aget(key) == TRACK

    restartable_redis.stop()
    for _ in range(10):
        assert await cache.alookup(key) is None
        await cache.astore(key, TRACK)
        assert await cache.ainvalidate_pattern("spotify:*") == 0
    assert cache.get_stats()["errors"] == 30
    assert len([m for m in _outage_warnings(caplog) if "unreachable" in m]) == 1

    restartable_redis.start()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        await cache.astore(key, [1])
        if await cache.aget(key) == [1]:
            break
        await asyncio.sleep(0.05)
    assert await cache.aget(key) == [1]
    await link.aio.aclose()


def test_bad_url_is_a_configuration_error() -> None:
    """A malformed URL fails at construction, not on the first lookup."""
    with pytest.raises(ConfigurationError):
        CacheManager("http://not-redis")


def test_redis_never_there(caplog: pytest.LogCaptureFixture) -> None:
    """A cache pointed at a closed port works as an always-empty cache."""
    caplog.set_level(logging.WARNING)
    cache = CacheManager(f"redis://127.0.0.1:{free_port()}/0")
    key = cache.key("spotify:track", "x")
    for _ in range(5):
        assert cache.store(key, 1) == 1
        assert cache.get(key) is None
    assert cache.get_stats()["errors"] == 10
    assert len(_outage_warnings(caplog)) == 1
    cache.close()


async def test_async_twin_of_a_sync_client_is_closed(restartable_redis: RedisServer) -> None:
    """Async calls on a cache built from a sync client use a derived asyncio client, which
    aclose() closes (the caller's own client stays open)."""
    # A server of this test's own: the session server carries other tests' idle connections.
    raw = restartable_redis.client()
    client = redis.Redis.from_url(restartable_redis.url)
    cache = CacheManager(client)
    client.ping()
    await cache.astore(cache.key("spotify:track", "x"), 1)
    assert await cache.aget(cache.key("spotify:track", "x")) == 1
    assert len(raw.client_list()) == 3  # raw, the caller's client, the asyncio twin
    await cache.aclose()
    for _ in range(100):
        if len(raw.client_list()) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(raw.client_list()) == 2
    assert client.ping()
    raw.close()
    client.close()


# -- error replies, one implementation for both drivers, per-loop clients ------------------


_REFUSALS: dict[str, type[redis.exceptions.ResponseError]] = {
    "OOM": redis.exceptions.OutOfMemoryError,
    "READONLY": redis.exceptions.ReadOnlyError,
    "MISCONF": redis.exceptions.ResponseError,
}


def _make_unable(server: RedisServer, state: str) -> None:
    """Put ``server`` in a state where it answers reads but refuses writes with ``state``."""
    raw = server.client()
    if state == "OOM":
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", 1)
    elif state == "READONLY":
        raw.replicaof("127.0.0.1", free_port())  # a replica of nothing: read-only, serves reads
    else:  # MISCONF: after a failed background save, a server with a save point stops writes
        shutil.rmtree(server.dir)  # its working directory: BGSAVE cannot write there
        raw.config_set("save", "3600 1")
        raw.bgsave()
        for _ in range(250):
            if raw.info("persistence")["rdb_last_bgsave_status"] == "err":
                break
            time.sleep(0.02)
    with pytest.raises(_REFUSALS[state]) as refused:
        raw.set("probe", 1)
    assert state != "MISCONF" or str(refused.value).startswith("MISCONF")
    raw.close()


@pytest.mark.parametrize("state", ["OOM", "READONLY", "MISCONF"])
def test_error_replies_fail_open(
    restartable_redis: RedisServer,
    state: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis that answers but refuses writes (OOM, READONLY, MISCONF): store returns its
    value normally, lookup misses, sync and async alike, and one warning is logged."""
    _make_unable(restartable_redis, state)
    try:
        _fail_open_on_refused_writes(restartable_redis, caplog)
    finally:  # a server with a save point that cannot save refuses to shut down
        raw = restartable_redis.client()
        raw.config_set("save", "")
        raw.close()


def _fail_open_on_refused_writes(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    # A long retry interval: the outage must not end (and warn "reachable again") mid-test.
    link = RedisLink(server.url, retry_interval=60.0)
    cache = CacheManager(link)
    key = cache.key("spotify:track", "x")
    assert cache.lookup(key) is None  # reads still reach Redis before the first refusal
    for _ in range(3):
        assert cache.store(key, TRACK) == TRACK
        assert cache.lookup(key) is None

    async def the_async_api() -> None:
        for _ in range(3):
            assert await cache.astore(key, TRACK) == TRACK
            assert await cache.alookup(key) is None
        await link.aclose()

    asyncio.run(the_async_api())
    stats = cache.get_stats()
    assert (stats["hits"], stats["misses"]) == (0, 7)
    assert stats["errors"] >= 6  # every write; reads skipped while the link is down count too
    assert len(_outage_warnings(caplog)) == 1
    link.close()


def _command_calls(raw: redis.Redis) -> dict[str, int]:
    return {
        name: int(row["calls"])
        for name, row in raw.info("commandstats").items()
        if name not in ("cmdstat_config|resetstat", "cmdstat_info")
    }


async def test_sync_and_async_send_the_same_commands(
    restartable_redis: RedisServer,
) -> None:
    """Both drivers run the same operations: the same workload through the sync and the
    async API makes Redis process exactly the same commands."""
    raw = restartable_redis.client()
    cache = CacheManager(restartable_redis.url)
    calls = []
    for run_async in (False, True):
        raw.flushall()
        raw.config_resetstat()
        keys = [cache.key("spotify:search", "many", str(i)) for i in range(700)]
        for i, key in enumerate(keys):
            if run_async:
                await cache.astore(key, i)
                assert await cache.aget(key) == i
            else:
                cache.store(key, i)
                assert cache.get(key) == i
        if run_async:
            assert await cache.ainvalidate("spotify:search", "many", "0") == 1
            assert await cache.ainvalidate_pattern("spotify:search:*") == 699
        else:
            assert cache.invalidate("spotify:search", "many", "0") == 1
            assert cache.invalidate_pattern("spotify:search:*") == 699
        calls.append(_command_calls(raw))
    assert calls[0] == calls[1]
    assert calls[0]["cmdstat_unlink"] >= 3  # one, then 699 in batches of at most 500
    await cache.aclose()
    raw.close()


def _clients(raw: redis.Redis) -> int:
    return len(raw.client_list())


def _settled(raw: redis.Redis, want: int) -> int:
    """The server's client count once it reaches ``want`` (closes land asynchronously)."""
    for _ in range(100):
        if _clients(raw) == want:
            break
        time.sleep(0.01)
    return _clients(raw)


def test_asyncio_run_cycles_keep_no_connections(restartable_redis: RedisServer) -> None:
    """N asyncio.run() cycles that each end with ``await cache.aclose()`` leave the server
    with no connection of ours; aclose() releases the loop's client before the loop ends."""
    raw = restartable_redis.client()
    raw.ping()
    cache = CacheManager(restartable_redis.url)

    async def cycle(i: int) -> None:
        key = cache.key("spotify:track", str(i))
        await cache.astore(key, i)
        assert await cache.aget(key) == i
        assert _clients(raw) == 2  # raw and this loop's client
        await cache.aclose()
        assert await asyncio.to_thread(_settled, raw, 1) == 1  # released, loop still running

    for i in range(5):
        asyncio.run(cycle(i))
        assert _settled(raw, 1) == 1
    cache.store(cache.key("spotify:track", "sync"), 1)  # the sync client still works
    cache.close()
    assert _settled(raw, 1) == 1
    raw.close()


def test_shared_link_survives_cache_aclose(restartable_redis: RedisServer) -> None:
    """A RedisLink the caller gave (shared with the limiter and breakers) keeps serving after
    the cache's aclose(), and asyncio.run cycles still do not grow connections."""
    raw = restartable_redis.client()
    raw.ping()
    link = RedisLink(restartable_redis.url)

    async def cycle(i: int) -> None:
        cache = CacheManager(link)
        await cache.astore(cache.key("spotify:track", str(i)), i)
        await cache.aclose()
        assert await link.aio.ping()  # the link's loop client was not closed under it

    for i in range(5):
        asyncio.run(cycle(i))
        assert _settled(raw, 1) == 1  # the link closes each loop's client at the loop's end
    assert link.sync.ping()
    link.close()
    raw.close()
