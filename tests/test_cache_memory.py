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

from tunegate._policy.freshness import CacheEntry
from tunegate.cache.frozen import decode, encode, freeze
from tunegate.cache.memory import MemoryBackend, resident_size


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


def test_eviction_follows_resident_size() -> None:
    """Entries go once the resident total passes max_bytes, and the total never exceeds it."""
    value = decode(encode(freeze(_search_body(1))))
    one = resident_size(value)
    backend = MemoryBackend(max_entries=10_000, max_bytes=10 * one)
    for i in range(50):
        v = decode(encode(freeze(_search_body(i))))
        backend.put(f"spotify:search:{i}", _entry(v), orjson.dumps(v), 0.0)
        assert backend.total_bytes <= backend.max_bytes
    # The JSON is several times smaller than the objects: counting it would keep ~30 entries.
    assert 5 <= len(backend) < 10
    assert backend.get("spotify:search:49") is not None
    assert backend.get("spotify:search:0") is None
    assert backend.total_bytes == sum(backend._sizes.values())


def test_shared_objects_counted_once() -> None:
    """An object reachable twice (e.g. an interned string) is counted once."""
    s = "x" * 10_000
    assert resident_size([s, s]) < resident_size([s, "y" * 10_000])


def test_lock_free_reads_beside_writers_stay_consistent() -> None:
    """Readers take no lock: with writers putting, deleting and evicting in other threads
    (and thread switches forced often), a read finds the right entry or none, and the byte
    and entry accounting ends exact."""
    backend = MemoryBackend(max_entries=40, max_bytes=40 * 2000)
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

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        threads += [threading.Thread(target=writer, args=(s,)) for s in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
    finally:
        sys.setswitchinterval(old)
    assert raised == []
    assert wrong == []
    assert len(backend) <= 40
    assert 0 < backend.total_bytes <= backend.max_bytes
    for key in keys:
        backend.delete(key)
    assert len(backend) == 0
    assert backend.total_bytes == 0
