"""Byte accounting of the memory backend: it counts what an entry keeps resident."""

from __future__ import annotations

import gc
import random
import sys
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tunegate._policy.freshness import CacheEntry
from tunegate.cache.frozen import decode, encode, freeze
from tunegate.cache.memory import _HOT_OVERHEAD, MemoryBackend, resident_size
from tunegate.emulator.catalog import Catalog
from tunegate.emulator.spotify import track_json
from tunegate.exceptions import ConfigurationError


def _search_body(i: int) -> dict[str, Any]:
    """A search answer shaped like Spotify's: nested dicts, lists, strings and numbers."""
    return {
        "tracks": {
            "href": f"https://api.spotify.com/v1/search?q=track{i}&type=track",
            "items": [
                {
                    "id": f"{i:011d}{j:011d}",
                    "name": f"Song {i} take {j}",
                    "duration_ms": 180_000 + j,
                    "popularity": j % 100,
                    "explicit": False,
                    "artists": [{"id": f"a{i}{j}", "name": f"Artist {j}", "type": "artist"}],
                    "album": {"id": f"al{i}{j}", "name": f"Album {i}", "images": []},
                    "external_ids": {"isrc": f"USRC1{i:07d}"},
                }
                for j in range(10)
            ],
            "limit": 10,
            "offset": 0,
            "total": 10_000 + i,
        }
    }


def _entry(value: Any) -> CacheEntry:
    return CacheEntry(value, False, False, "spotify", "search", 1e12, 1e12)


def test_resident_size_tracks_tracemalloc() -> None:
    """The accounted size of decoded values is within 25% of what tracemalloc sees them take.

    Many values, so the interpreter's freelists (which keep a few freed dicts allocated) and
    orjson's key cache (filled by the warm-up decode) do not swamp the per-value figure."""
    payloads = [encode(freeze(_search_body(i))) for i in range(300)]
    decode(payloads[0])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        values = [decode(p) for p in payloads]
        measured = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    accounted = sum(resident_size(v) for v in values) + sys.getsizeof(values)
    assert measured > 2 * sum(map(len, payloads))  # the decoded form is bigger than its JSON
    assert 0.75 * measured <= accounted <= 1.25 * measured


def _fill(backend: MemoryBackend, n: int, first: int = 0) -> list[bytes]:
    """``n`` search answers put as the manager puts them (frozen value, orjson bytes)."""
    payloads = []
    for i in range(first, first + n):
        value = decode(encode(freeze(_search_body(i))))
        payload = orjson.dumps(value)
        payloads.append(payload)
        backend.put(f"spotify:search:{i}", _entry(value), payload, 0.0)
        assert backend.total_bytes <= backend.max_bytes
        assert backend.hot_total <= backend.hot_bytes
    return payloads


@pytest.mark.parametrize("hot_bytes", [0, None, 1 << 30])
def test_accounted_bytes_track_tracemalloc(hot_bytes: int | None) -> None:
    """What ``total_bytes`` counts is within 20% of what the entries take (tracemalloc),
    whether entries keep only their JSON, the default hot share is decoded, or all are."""
    keys = [f"spotify:search:{i}" for i in range(400)]  # the caller's, made before
    bodies = [encode(freeze(_search_body(i))) for i in range(400)]  # as read from the wire
    backend = MemoryBackend(max_entries=10_000, max_bytes=1 << 31, hot_bytes=hot_bytes)
    decode(bodies[0])  # orjson's key cache filled before measuring
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for key, body in zip(keys, bodies, strict=True):
            value = decode(body)
            backend.put(key, _entry(value), orjson.dumps(value), 0.0)
        del value  # what stays is the cache's own
        gc.collect()
        measured = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    held = measured + sum(sys.getsizeof(k) for k in keys)
    assert 0.8 * held <= backend.total_bytes <= 1.2 * held


def test_eviction_follows_resident_bytes() -> None:
    """Entries go once the resident total passes max_bytes; the JSON, not orjson's output
    buffer (several times longer), is what an entry keeps."""
    one = len(orjson.dumps(_search_body(1)))
    backend = MemoryBackend(max_entries=10_000, max_bytes=20 * one, hot_bytes=3 * one)
    _fill(backend, 60)
    # Cold entries hold their JSON plus a few hundred bytes; three fit decoded besides.
    assert 10 <= len(backend) < 20
    assert backend.get("spotify:search:59") is not None
    assert backend.get("spotify:search:0") is None
    for i in range(60):
        backend.delete(f"spotify:search:{i}")
    assert len(backend) == 0
    assert backend.total_bytes == backend.hot_total == 0


def test_hot_hits_share_one_object_and_cold_ones_decode_once() -> None:
    """A hot entry's hits return the very object the cache holds; a cooled entry's hit
    decodes an equal value with the same stamps, which is then hot (the same object again)
    and cools the least recently used hot entry in turn."""
    one = resident_size(decode(encode(freeze(_search_body(1)))))
    backend = MemoryBackend(max_entries=100, max_bytes=1 << 30, hot_bytes=2 * one + 500)
    stored = CacheEntry(freeze(_search_body(0)), True, False, "spotify", "search", 5.0, 9.0)
    backend.put("spotify:search:0", stored, encode(stored.value), 0.0)
    first = backend.get("spotify:search:0")
    assert first is not None
    assert first.value is stored.value
    assert backend.get("spotify:search:0") is first
    _fill(backend, 2, first=1)  # entries 1 and 2 are the hot ones now; 0 is cold
    assert backend.hot_total <= backend.hot_bytes
    again = backend.get("spotify:search:0")
    assert again is not None
    assert again.value == stored.value
    assert again.value is not stored.value
    assert (again.negative, again.provider, again.kind) == (True, "spotify", "search")
    assert (again.fresh_until, again.stale_until, again.stale) == (5.0, 9.0, False)
    assert backend.get("spotify:search:0") is again  # hot again: no second decode
    with pytest.raises(TypeError):
        again.value["tracks"] = None  # decoded values are frozen too
    hit = backend.get("spotify:search:1")  # it went cold when 0 came back
    assert hit is not None
    assert backend.get("spotify:search:1") is hit


def test_a_value_too_big_for_the_hot_share_is_kept_as_json() -> None:
    backend = MemoryBackend(max_entries=10, max_bytes=1 << 20, hot_bytes=1000)
    value = freeze({"s": "x" * 5000})
    backend.put("spotify:search:big", _entry(value), encode(value), 0.0)
    assert backend.hot_total == 0
    a, b = backend.get("spotify:search:big"), backend.get("spotify:search:big")
    assert a is not None
    assert b is not None
    assert a.value == b.value == value
    assert backend.hot_total == 0


@pytest.mark.parametrize("hot_bytes", [-1, 2.5, 1 << 30])
def test_hot_bytes_is_checked(hot_bytes: Any) -> None:
    with pytest.raises(ConfigurationError):
        MemoryBackend(max_bytes=1 << 20, hot_bytes=hot_bytes)


def test_shared_objects_counted_once() -> None:
    """An object reachable twice (e.g. an interned string) is counted once."""
    s = "x" * 10_000
    assert resident_size([s, s]) < resident_size([s, "y" * 10_000])


def _race(targets: list[Callable[[int], None]]) -> None:
    """Run ``targets[i](i)`` in threads at once, switching threads every 10 us (races
    show), each bounded at 60 s."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=fn, args=(i,)) for i, fn in enumerate(targets)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
    finally:
        sys.setswitchinterval(old)


def test_lock_free_reads_beside_writers_stay_consistent() -> None:
    """Readers take no lock: with writers putting, deleting and evicting in other threads
    (and thread switches forced often), a read finds the right entry or none, and the byte
    and entry accounting ends exact."""
    backend = MemoryBackend(max_entries=40, max_bytes=40 * 2000, hot_bytes=4000)
    keys = [f"spotify:search:{i}" for i in range(120)]
    values = {k: freeze({"key": k, "items": [k] * (i % 9)}) for i, k in enumerate(keys)}
    wrong: list[str] = []
    raised: list[BaseException] = []

    def guarded(work: Callable[[int], None]) -> Callable[[int], None]:
        def run(seed: int) -> None:
            try:
                work(seed)
            except BaseException as exc:  # a thread's exception must fail the test
                raised.append(exc)

        return run

    @guarded
    def reader(seed: int) -> None:
        pick = random.Random(seed).choice
        for _ in range(30_000):
            key = pick(keys)
            entry = backend.get(key)
            if entry is not None and entry.value["key"] != key:
                wrong.append(key)

    @guarded
    def writer(seed: int) -> None:
        rand = random.Random(seed)
        for n in range(4_000):
            key = rand.choice(keys)
            if n % 11 == 0:
                backend.delete(key)
            elif n % 97 == 0:
                backend.delete_matching("spotify:search:1*")
            else:
                value = values[key]
                backend.put(key, _entry(value), orjson.dumps(value), 0.0)

    _race([reader] * 3 + [writer] * 2)
    assert raised == []
    assert wrong == []
    assert len(backend) <= 40
    assert 0 < backend.total_bytes <= backend.max_bytes
    for key in keys:
        backend.delete(key)
    assert len(backend) == 0
    assert backend.total_bytes == 0


def test_a_key_being_rewritten_is_never_read_as_absent() -> None:
    """Overwriting a present key replaces its slot in one step: a lock-free reader beside
    the writer always finds it (a pop before the insert read as a miss, and the manager
    counted a present entry as a miss under threads)."""
    backend = MemoryBackend(max_entries=100, max_bytes=1 << 20)
    value = freeze({"n": 1})
    payload = orjson.dumps(value)
    backend.put("spotify:search:k", _entry(value), payload, 0.0)
    absent = 0
    done = threading.Event()

    def writer() -> None:
        for _ in range(20_000):
            backend.put("spotify:search:k", _entry(value), payload, 0.0)
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        thread = threading.Thread(target=writer)
        thread.start()
        reads = 0
        while not done.is_set() and reads < 2_000_000:
            reads += 1
            if backend.get("spotify:search:k") is None:
                absent += 1
        thread.join(timeout=60)
    finally:
        sys.setswitchinterval(old)
    assert absent == 0
    assert len(backend) == 1


# -- decoded sizes estimated from the payload's length ---------------------------------------

_BASE = "https://api.spotify.com"


@pytest.fixture(scope="module")
def answers() -> Callable[[int, int], tuple[str, Any, bytes]]:
    """Search answers built from the emulator's catalogue (its own track objects, in its
    paging envelope): ``answer(i, n)`` is query ``i``'s key, frozen value and JSON, with
    ``n`` tracks."""
    cat = Catalog(10_000, 0)
    on_spotify = [i for i in range(4000) if cat.track(i).spotify_id is not None]

    def answer(i: int, n: int) -> tuple[str, Any, bytes]:
        items = [
            track_json(cat, on_spotify[(i * 7 + j) % len(on_spotify)], _BASE) for j in range(n)
        ]
        body = {
            "tracks": {
                "href": f"{_BASE}/v1/search?query=q{i}&type=track&offset=0&limit=10",
                "items": items,
                "limit": 10,
                "next": None,
                "offset": 0,
                "previous": None,
                "total": n,
            }
        }
        value = decode(encode(freeze(body)))  # as read from the wire
        return f"tunegate:v1:spotify:search:q{i}", value, orjson.dumps(value)

    return answer


def _decoded_added(backend: MemoryBackend, key: str, value: Any, payload: bytes) -> int:
    """The decoded bytes ``put`` accounted for a new hot entry (its walk or its estimate)."""
    before = backend.hot_total
    backend.put(key, _entry(value), payload, 0.0)
    return backend.hot_total - before - _HOT_OVERHEAD


def test_estimates_of_one_shape_stay_within_the_margin(
    answers: Callable[[int, int], tuple[str, Any, bytes]],
) -> None:
    """Bodies of one shape (ten tracks each): no estimate is more than 5% below its walk,
    the total is not below the walks' total, and most puts were estimated, not walked."""
    backend = MemoryBackend(max_entries=10_000, max_bytes=1 << 32, hot_bytes=1 << 31)
    walked = estimated = exact = 0
    for i in range(400):
        key, value, payload = answers(i, 10)
        added, walk = _decoded_added(backend, key, value, payload), resident_size(value)
        assert added >= 0.95 * walk, i
        walked, estimated, exact = walked + walk, estimated + added, exact + (added == walk)
    assert estimated >= walked
    assert estimated <= 1.1 * walked
    assert exact <= 8 + 400 // 32 + 10  # the walks (an estimate may hit the walk by chance)


def test_a_class_whose_bodies_grow_is_walked_again(
    answers: Callable[[int, int], tuple[str, Any, bytes]],
) -> None:
    """Learned on one-track answers, the class walks the first ten-track answer (more than
    1/8 longer than any walked), then estimates from ratios that include it."""
    backend = MemoryBackend(max_entries=10_000, max_bytes=1 << 32, hot_bytes=1 << 31)
    for i in range(20):
        _decoded_added(backend, *answers(i, 1))
    key, value, payload = answers(100, 10)
    assert _decoded_added(backend, key, value, payload) == resident_size(value)
    for i in range(101, 140):
        key, value, payload = answers(i, 10)
        assert _decoded_added(backend, key, value, payload) >= 0.95 * resident_size(value)


def test_short_bodies_after_long_ones_are_not_estimated_low(
    answers: Callable[[int, int], tuple[str, Any, bytes]],
) -> None:
    """The ratio falls as bodies grow: learned on ten-track answers, one-track ones (a
    shorter octave, their own class) are still estimated at or above their walk."""
    backend = MemoryBackend(max_entries=10_000, max_bytes=1 << 32, hot_bytes=1 << 31)
    for i in range(300):
        _decoded_added(backend, *answers(i, 10))
    for i in range(300, 340):
        key, value, payload = answers(i, 1)
        assert _decoded_added(backend, key, value, payload) >= 0.95 * resident_size(value), i


@pytest.mark.parametrize("form", ["read", "frozen"])
def test_mixed_body_sizes_are_not_overcounted(
    answers: Callable[[int, int], tuple[str, Any, bytes]], form: str
) -> None:
    """Answers of 1 to 10 tracks interleaved, as read from the wire (frozen lazily) or
    frozen whole: the hot bytes accounted stay within 6% of the values' walked sizes, never
    below (one ratio per kind counted them 1.11x and 1.62x)."""
    backend = MemoryBackend(max_entries=10_000, max_bytes=1 << 32, hot_bytes=1 << 31)
    accounted = walked = 0
    for i in range(600):
        key, value, payload = answers(i, 1 + i * 7 % 10)
        if form == "frozen":
            value = freeze(orjson.loads(payload))
        accounted += _decoded_added(backend, key, value, payload)
        walked += resident_size(value)
    assert walked <= accounted <= 1.06 * walked


def test_a_denser_shape_of_the_same_length_is_relearned_within_32_puts() -> None:
    """A class learned on string-heavy bodies (few bytes decoded per byte of JSON) then fed
    bodies of many small numbers (many more): one of the next 32 puts walks, and the
    estimates after it do not fall short."""

    def sparse(i: int) -> Any:
        return freeze({"id": i, "text": f"{i:06d}" + "x" * 1500})

    def dense(i: int) -> Any:
        return freeze({"id": i, "n": [i % 7] * 700})  # ~1.4 kB, the octave of sparse ones

    backend = MemoryBackend(max_entries=10_000, max_bytes=1 << 32, hot_bytes=1 << 31)
    for i in range(40):
        value = sparse(i)
        _decoded_added(backend, f"spotify:search:s{i}", value, orjson.dumps(value))
    short = []
    for i in range(64):
        value = dense(i)
        added = _decoded_added(backend, f"spotify:search:d{i}", value, orjson.dumps(value))
        short.append(added < 0.95 * resident_size(value))
    assert any(short[:32])  # the ratio learned on sparse bodies is far too low for these
    assert not any(short[32:])


def test_max_bytes_bounds_a_cache_overfilled_with_search_answers(
    answers: Callable[[int, int], tuple[str, Any, bytes]],
) -> None:
    """Answers of 1 to 10 tracks, put past ``max_bytes`` several times over: the accounted
    bytes never pass either bound, and at the end they are within 15% of what the entries
    hold (each entry's JSON and bookkeeping, the hot ones' values walked)."""
    backend = MemoryBackend(max_entries=100_000, max_bytes=2 << 20, hot_bytes=512 << 10)
    put = 0
    for i in range(1200):
        key, value, payload = answers(i, 1 + i * 7 % 10)
        backend.put(key, _entry(value), payload, 0.0)
        put += len(payload)
        assert backend.total_bytes <= backend.max_bytes
        assert backend.hot_total <= backend.hot_bytes
    assert put > 4 * backend.max_bytes
    cold = sum(
        len(slot.payload) + sys.getsizeof(b"") + sys.getsizeof(key) + 300
        for key, slot in backend._data.items()
    )
    hot = sum(resident_size(slot.entry.value) + _HOT_OVERHEAD for slot in backend._hot.values())
    assert backend.total_bytes > 0.8 * backend.max_bytes  # full, not emptied by overcounting
    assert 0.85 * (cold + hot) <= backend.total_bytes <= 1.15 * (cold + hot)


def test_keys_of_other_shapes_share_a_bounded_table() -> None:
    """Keys that are not the scheme's are classed by their first two segments, and no
    number of distinct ones grows the table of classes past its bound."""
    backend = MemoryBackend(max_entries=100, max_bytes=1 << 30)
    value = freeze({"s": "x" * 400})
    payload = orjson.dumps(value)
    for i in range(1000):
        backend.put(f"user{i}:thing:{i}", _entry(value), payload, 0.0)
        backend.put(f"tunegate:v1:spotify:search:{i}", _entry(value), payload, 0.0)
    octave = len(payload).bit_length()
    assert ("spotify:search", octave) in backend._classes
    assert ("user0:thing", octave) in backend._classes
    assert len(backend._classes) <= 1025


def test_writers_on_one_class_in_threads_keep_exact_accounting(
    answers: Callable[[int, int], tuple[str, Any, bytes]],
) -> None:
    """Threads putting one class at once (the table is updated outside the lock) leave the
    byte accounting exact: deleting everything brings both totals back to zero."""
    puts = [answers(i, 1 + i % 10) for i in range(120)]
    backend = MemoryBackend(max_entries=60, max_bytes=1 << 20, hot_bytes=256 << 10)
    raised: list[BaseException] = []

    def writer(seed: int) -> None:
        try:
            rand = random.Random(seed)
            for _ in range(1500):
                key, value, payload = rand.choice(puts)
                backend.put(key, _entry(value), payload, 0.0)
        except BaseException as exc:  # a thread's exception must fail the test
            raised.append(exc)

    _race([writer] * 4)
    assert raised == []
    assert 0 < backend.total_bytes <= backend.max_bytes  # read mid-put, it can be over
    for key, _, _ in puts:
        backend.delete(key)
    assert backend.total_bytes == backend.hot_total == 0
