"""CacheManager over the in-memory backend: TTLs, stale-if-error, negatives, stats, LRU,
frozen values. SQLite and Redis have their own files."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tunegate._policy.freshness import DAY
from tunegate.cache import (
    CacheEntry,
    CacheManager,
    FrozenDict,
    FrozenList,
    MemoryBackend,
    freeze,
    thaw,
)
from tunegate.cache import frozen as frozen_module
from tunegate.cache._backend import BackendError
from tunegate.exceptions import ConfigurationError, InvalidInput
from tunegate.testing import FakeClock

TRACK: dict[str, Any] = {
    "id": "4uLU6hMCjMI75M1A2tKUQC",
    "name": "Strobe",
    "artists": [{"name": "deadmau5", "id": "2CIMQHirSU0MQqyYHq0eOx"}],
    "duration_ms": 637_000,
    "explicit": False,
    "popularity": None,
    "markets": ["US", "GB"],
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> CacheManager:
    return CacheManager(clock=clock, jitter=0.0)


def test_store_then_lookup_is_a_hit(cache: CacheManager) -> None:
    """A stored value comes back fresh, with its provider and kind, as equal data."""
    key = cache.key("spotify:search", "Deadmau5", "Strobe")
    assert cache.lookup(key) is None
    cache.store(key, TRACK)
    entry = cache.lookup(key)
    assert entry is not None
    assert (entry.value, entry.stale, entry.negative) == (TRACK, False, False)
    assert (entry.provider, entry.kind) == ("spotify", "spotify:search")
    assert cache.get(key) == TRACK
    assert cache.get(cache.key("spotify:search", "deadmau5", "strobe")) == TRACK


def test_memory_hit_returns_the_stored_object_without_decoding(
    cache: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path: the same frozen object every time, and no decode call at all."""
    key = cache.key("spotify:track", TRACK["id"])
    stored = cache.store(key, TRACK)

    def no_decode(*args: object) -> None:
        raise AssertionError("a memory hit decoded")

    monkeypatch.setattr(orjson, "loads", no_decode)
    monkeypatch.setattr(frozen_module, "decode", no_decode)
    first, second = cache.lookup(key), cache.lookup(key)
    assert first is second  # the stored entry itself: no allocation on a fresh hit
    assert first is not None
    assert first.value is stored


def test_values_cannot_be_corrupted_by_callers(cache: CacheManager) -> None:
    """Mutating a returned value raises, and mutating the stored original changes nothing."""
    original: dict[str, Any] = json.loads(json.dumps(TRACK))
    key = cache.key("spotify:track", TRACK["id"])
    cache.store(key, original)
    original["artists"][0]["name"] = "changed"
    value = cache.get(key)
    assert value["artists"][0]["name"] == "deadmau5"
    mutations: list[Callable[[], object]] = [
        lambda: value.__setitem__("name", "x"),
        lambda: value.update(name="x"),
        lambda: value.pop("name"),
        lambda: value.setdefault("new", 1),
        lambda: value.clear(),
        lambda: value["artists"].append({}),
        lambda: value["artists"].__setitem__(0, {}),
        lambda: value["artists"][0].__delitem__("name"),
        lambda: value["markets"].sort(),
        lambda: value["markets"].extend(["FR"]),
    ]
    for mutate in mutations:
        with pytest.raises(TypeError):
            mutate()
    with pytest.raises(TypeError):
        value |= {"x": 1}
    assert cache.get(key) == TRACK


def test_frozen_values_behave_like_json_data() -> None:
    """Frozen values are real dicts and lists: indexing, json, orjson, pickle, copies."""
    value = freeze(TRACK)
    assert isinstance(value, dict)
    assert isinstance(value["artists"], list)
    assert type(value) is FrozenDict
    assert type(value["artists"]) is FrozenList
    assert json.loads(json.dumps(value)) == TRACK
    assert orjson.loads(orjson.dumps(value)) == TRACK
    assert pickle.loads(pickle.dumps(value)) == TRACK
    assert type(pickle.loads(pickle.dumps(value))) is FrozenDict
    for mutable in (thaw(value), copy.deepcopy(value)):
        mutable["artists"][0]["name"] = "x"  # plain, deep, mutable
        assert type(mutable["artists"]) is list
    shallow = value.copy()
    shallow["name"] = "x"
    assert type(value | {"a": 1}) is dict
    assert type(value["markets"] + ["FR"]) is list
    assert value["markets"][:1] == ["US"]
    assert freeze(("a", ["b"])) == ["a", ["b"]]
    assert freeze(value) is value


@pytest.mark.parametrize("bad", [{1: "int key"}, {"set": {1, 2}}, object(), [b"bytes"]])
def test_non_json_values_are_refused(cache: CacheManager, bad: object) -> None:
    """Only JSON-like values can be cached, so every backend returns what was stored."""
    with pytest.raises(TypeError):
        cache.store(cache.key("spotify:track", "x"), bad)


# -- TTLs ------------------------------------------------------------------------------------


def test_ttl_expiry_then_stale_then_gone(clock: FakeClock) -> None:
    """Fresh for the TTL, then stale (marked) for the grace period, then a plain miss."""
    cache = CacheManager(clock=clock, jitter=0.0, stale_grace=100.0)
    key = cache.key("spotify:search", "a", "b")
    cache.store(key, {"v": 1}, ttl=60.0)
    clock.advance(59.9)
    entry = cache.lookup(key)
    assert entry is not None
    assert not entry.stale
    clock.advance(0.2)
    entry = cache.lookup(key)
    assert entry is not None
    assert entry.stale
    assert entry.value == {"v": 1}
    assert cache.get(key) is None  # get() is fresh-only
    clock.advance(100.0)
    assert cache.lookup(key) is None


def test_design_ttl_table_applies_by_kind(clock: FakeClock) -> None:
    """Spotify track 30 d, search 7 d, MusicBrainz ISRC 30 d, Last.fm tags 7 d; others
    default_ttl; overrides by kind."""
    cache = CacheManager(clock=clock, jitter=0.0, default_ttl=3600.0, ttls={"lastfm:x": 5.0})
    now = clock.time()
    expected = {
        cache.key("spotify:track", "id"): 30 * DAY,
        cache.key("spotify:search", "a", "t"): 7 * DAY,
        cache.key("musicbrainz:isrc", "USIR20400500"): 30 * DAY,
        cache.key("lastfm:track_tags", "a", "t"): 7 * DAY,
        cache.key("musicbrainz:recording", "mbid"): 3600.0,
        cache.key("lastfm:x", "y"): 5.0,
    }
    for key, ttl in expected.items():
        cache.store(key, 1)
        entry = cache.lookup(key)
        assert entry is not None
        assert entry.fresh_until - now == pytest.approx(ttl)


def test_jitter_spreads_entries_written_together(clock: FakeClock) -> None:
    """Entries written at the same instant get distinct expiries within 10% below the TTL."""
    cache = CacheManager(clock=clock)  # default jitter 0.1
    stamps = []
    for i in range(50):
        key = cache.key("spotify:search", "a", str(i))
        cache.store(key, i, ttl=1000.0)
        entry = cache.lookup(key)
        assert entry is not None
        stamps.append(entry.fresh_until - clock.time())
    assert all(900.0 <= s <= 1000.0 for s in stamps)
    assert len(set(stamps)) > 40
    assert max(stamps) - min(stamps) > 50.0


def test_explicit_ttl_and_bad_ttl(cache: CacheManager, clock: FakeClock) -> None:
    """An explicit ttl wins; a non-positive one is refused."""
    key = cache.key("spotify:track", "x")
    cache.set(key, 1, ttl=5.0)
    clock.advance(5.0)
    assert cache.get(key) is None
    with pytest.raises(InvalidInput):
        cache.set(key, 1, ttl=0)


# -- negative caching and stale-if-error ----------------------------------------------------


def test_negative_entries(clock: FakeClock) -> None:
    """'Not found' is cached with negative_ttl, counted apart, and gets no stale grace."""
    cache = CacheManager(clock=clock, jitter=0.0, negative_ttl=600.0)
    key = cache.key("musicbrainz:isrc", "XX0000000000")
    cache.store(key, None, negative=True)
    entry = cache.lookup(key)
    assert entry is not None
    assert entry.negative
    assert entry.value is None
    assert cache.get(key, "default") == "default"
    assert cache.get_stats()["negative_hits"] == 2
    assert cache.get_stats()["hits"] == 0
    clock.advance(600.0)
    assert cache.lookup(key) is None  # no grace for negatives


def test_positive_store_replaces_negative(cache: CacheManager) -> None:
    """A later positive answer overwrites a cached 'not found'."""
    key = cache.key("spotify:track", "x")
    cache.store(key, None, negative=True)
    cache.store(key, {"id": "x"})
    entry = cache.lookup(key)
    assert entry is not None
    assert not entry.negative


def test_stale_if_error_flow(clock: FakeClock) -> None:
    """The pipeline's stale-if-error: lookup finds a stale entry (a miss), the provider
    fails, the pipeline serves it and reports it: stale_hits counts what was served."""
    cache = CacheManager(clock=clock, jitter=0.0, stale_grace=3600.0)
    key = cache.key("lastfm:track_tags", "Daft Punk", "One More Time")
    cache.store(key, ["house", "french house"], ttl=60.0)
    clock.advance(120.0)
    entry = cache.lookup(key)
    assert entry is not None
    assert entry.stale
    assert entry.value == ["house", "french house"]
    cache.record_stale_served(key)
    cache.record_stale_served("lastfm")
    stats = cache.get_stats()
    assert (stats["stale_hits"], stats["misses"], stats["hits"]) == (2, 1, 0)
    assert stats["per_provider"]["lastfm"]["stale_hits"] == 2


# -- stats ---------------------------------------------------------------------------------


def test_stats_per_provider(cache: CacheManager) -> None:
    """Counts by the kind's first segment; hit_ratio counts negative hits as hits."""
    assert cache.get_stats()["hit_ratio"] == 0.0
    s_key = cache.key("spotify:search", "a", "b")
    m_key = cache.key("musicbrainz:isrc", "x")
    cache.lookup(s_key)
    cache.store(s_key, 1)
    cache.lookup(s_key)
    cache.lookup(s_key)
    cache.store(m_key, None, negative=True)
    cache.lookup(m_key)
    stats = cache.get_stats()
    assert stats["backend"] == "memory"
    assert (stats["hits"], stats["misses"], stats["negative_hits"], stats["errors"]) == (
        2,
        1,
        1,
        0,
    )
    assert stats["hit_ratio"] == pytest.approx(3 / 4)
    assert stats["per_provider"]["spotify"]["hit_ratio"] == pytest.approx(2 / 3)
    assert stats["per_provider"]["musicbrainz"]["negative_hits"] == 1
    cache.reset_stats()
    assert cache.get_stats()["per_provider"] == {}


def test_stats_are_exact_under_threads(cache: CacheManager) -> None:
    """Four threads hammering lookups and stores lose no counts."""
    keys = [cache.key("spotify:search", "a", str(i)) for i in range(20)]
    for key in keys[:10]:
        cache.store(key, 1)

    def work() -> None:
        for _ in range(250):
            for key in keys:
                cache.lookup(key)
            cache.store(keys[0], 2)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    stats = cache.get_stats()
    assert stats["hits"] == 4 * 250 * 10
    assert stats["misses"] == 4 * 250 * 10


# -- invalidation --------------------------------------------------------------------------


def test_invalidate_uses_key_normalisation(cache: CacheManager) -> None:
    """invalidate(kind, *parts) removes exactly the entry key() names."""
    cache.store(cache.key("spotify:search", "Deadmau5", "Strobe"), 1)
    cache.store(cache.key("spotify:search", "Deadmau5", "Ghosts"), 2)
    assert cache.invalidate("spotify:search", " DEADMAU5 ", "strobe") == 1
    assert cache.invalidate("spotify:search", "Deadmau5", "Strobe") == 0
    assert cache.get(cache.key("spotify:search", "deadmau5", "ghosts")) == 2


def test_invalidate_pattern(cache: CacheManager) -> None:
    """Unprefixed patterns; patterns built from user data cannot widen."""
    for artist, title in [("Deadmau5", "Strobe"), ("Deadmau5", "Ghosts"), ("*", "x")]:
        cache.store(cache.key("spotify:search", artist, title), 1)
    cache.store(cache.key("spotify:track", "abc"), 1)
    cache.store(cache.key("lastfm:track_tags", "Deadmau5", "Strobe"), 1)
    other = CacheManager(backend=cache.backend, namespace="other")
    other.store(other.key("spotify:track", "abc"), 1)

    assert cache.invalidate_pattern(cache.pattern("spotify:search", "*")) == 1
    assert cache.invalidate_pattern(cache.pattern("spotify:search", "DEADMAU5")) == 2
    assert cache.invalidate_pattern("spotify:*") == 1
    assert cache.invalidate_pattern("spotify:*") == 0
    assert cache.get(cache.key("lastfm:track_tags", "Deadmau5", "Strobe")) == 1
    assert other.get(other.key("spotify:track", "abc")) == 1  # other namespace untouched
    with pytest.raises(InvalidInput):
        cache.invalidate_pattern("")


# -- LRU bounds ----------------------------------------------------------------------------


def test_lru_bounded_by_entries(clock: FakeClock) -> None:
    """The least recently used entry goes first."""
    cache = CacheManager.memory(max_entries=3, clock=clock)
    keys = [cache.key("spotify:track", str(i)) for i in range(4)]
    for key in keys[:3]:
        cache.store(key, 1)
    cache.lookup(keys[0])  # now most recently used
    cache.store(keys[3], 1)
    assert cache.lookup(keys[1]) is None
    assert all(cache.lookup(k) is not None for k in (keys[0], keys[2], keys[3]))


def test_lru_bounded_by_bytes(clock: FakeClock) -> None:
    """Byte accounting evicts old entries and refuses a value bigger than the whole cache."""
    backend = MemoryBackend(max_entries=1000, max_bytes=5000)
    cache = CacheManager(backend=backend, clock=clock)
    keys = [cache.key("spotify:track", str(i)) for i in range(10)]
    for key in keys:
        cache.store(key, "x" * 1000)
    assert backend.total_bytes <= 5000
    # Each: its JSON (1002 B), key and overhead; the newest also decoded (a 1049 B str).
    assert len(backend) == 2
    assert cache.lookup(keys[-1]) is not None
    assert cache.lookup(keys[0]) is None
    cache.store(keys[-1], "y" * 10_000)  # too big: dropped, and the old value goes too
    assert cache.lookup(keys[-1]) is None
    for key in keys:
        backend.delete(key)
    assert backend.total_bytes == 0  # the accounting followed every write exactly


# -- API edges -----------------------------------------------------------------------------


def test_foreign_keys_and_kind_mismatch_are_refused(cache: CacheManager) -> None:
    """Keys must come from key(); a kind that contradicts the key is a bug."""
    foreign = ("spotify:track:x", "other:v1:spotify:track:x", "tunegate:v1:", "tunegate:v1:x")
    for key in foreign:
        with pytest.raises(InvalidInput):
            cache.lookup(key)
        with pytest.raises(InvalidInput):
            asyncio.run(cache.alookup(key))
        with pytest.raises(InvalidInput):
            cache.store(key, 1)
    for key in ("tunegate:v1:", "tunegate:v1:x"):  # with our prefix, so not a provider name
        with pytest.raises(InvalidInput):
            cache.record_stale_served(key)
    assert cache.get_stats()["misses"] == 0  # refused before any counting
    with pytest.raises(InvalidInput):
        cache.store(cache.key("spotify:track", "x"), 1, kind="spotify:search")
    cache.store(cache.key("spotify:track", "x"), 1, kind="spotify:track")


def test_constructor_choices(tmp_path: Any) -> None:
    """Default is memory; Redis and backend= together are refused; bad settings raise."""
    assert CacheManager().get_stats()["backend"] == "memory"
    assert CacheManager.memory(max_entries=5).backend.name == "memory"
    with CacheManager.sqlite(tmp_path / "c.db") as sq:
        assert sq.get_stats()["backend"] == "sqlite"
    with pytest.raises(ConfigurationError):
        CacheManager("redis://127.0.0.1:1/0", backend=MemoryBackend())
    with pytest.raises(ConfigurationError):
        CacheManager(jitter=2.0)
    with pytest.raises(ConfigurationError):
        CacheManager.memory(max_bytes=0)


async def test_async_api(clock: FakeClock) -> None:
    """The a-prefixed twins behave like the sync methods."""
    async with CacheManager(clock=clock, jitter=0.0) as cache:
        key = cache.key("spotify:track", "x")
        assert await cache.alookup(key) is None
        assert await cache.astore(key, {"a": [1]}) == {"a": [1]}
        entry = await cache.alookup(key)
        assert isinstance(entry, CacheEntry)
        assert entry.value == {"a": [1]}
        await cache.aset(cache.key("spotify:track", "y"), 2)
        assert await cache.aget(cache.key("spotify:track", "y")) == 2
        assert await cache.ainvalidate("spotify:track", "x") == 1
        assert await cache.ainvalidate_pattern("spotify:track:*") == 1
        assert await cache.aget(key, "none") == "none"


class _BrokenBackend:
    """A backend whose every operation fails, as a dead Redis or a locked file does."""

    name = "broken"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _fail(self, op: str) -> Any:
        self.calls.append(op)
        raise BackendError(op)

    def get(self, key: str) -> CacheEntry | None:
        return self._fail("get")  # type: ignore[no-any-return]

    async def aget(self, key: str) -> CacheEntry | None:
        return self._fail("get")  # type: ignore[no-any-return]

    def put(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        self._fail("put")

    async def aput(self, key: str, entry: CacheEntry, payload: bytes, now: float) -> None:
        self._fail("put")

    def delete(self, key: str) -> int:
        return self._fail("delete")  # type: ignore[no-any-return]

    async def adelete(self, key: str) -> int:
        return self._fail("delete")  # type: ignore[no-any-return]

    def delete_matching(self, pattern: str) -> int:
        return self._fail("delete_matching")  # type: ignore[no-any-return]

    async def adelete_matching(self, pattern: str) -> int:
        return self._fail("delete_matching")  # type: ignore[no-any-return]

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def test_backend_failures_count_the_same_sync_and_async() -> None:
    """Every operation fails open with the same results and counters through either API."""
    caches = {mode: CacheManager(backend=_BrokenBackend()) for mode in ("sync", "async")}
    sync, aio = caches["sync"], caches["async"]
    key = sync.key("spotify:track", "x")
    results_sync = [
        sync.lookup(key),
        sync.get(key, "dflt"),
        sync.store(key, [1]),
        sync.invalidate("spotify:track", "x"),
        sync.invalidate_pattern("spotify:*"),
    ]

    async def the_async_api() -> list[Any]:
        return [
            await aio.alookup(key),
            await aio.aget(key, "dflt"),
            await aio.astore(key, [1]),
            await aio.ainvalidate("spotify:track", "x"),
            await aio.ainvalidate_pattern("spotify:*"),
        ]

    assert asyncio.run(the_async_api()) == results_sync == [None, "dflt", [1], 0, 0]
    assert sync.get_stats() == aio.get_stats()
    stats = sync.get_stats()
    assert (stats["misses"], stats["errors"]) == (2, 5)
    assert stats["per_provider"]["spotify"]["errors"] == 4  # the pattern's is unattributed
    assert sync.backend.calls == aio.backend.calls  # type: ignore[attr-defined]
