"""The key-first hit through the public clients on a memory cache: a miss reads the cache
once and hands its stale entry on to the call; an entry kept only as JSON answers like a
decoded one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients import conftest as client_fixtures
from tests.clients.conftest import Driver, requests_to
from tunegate._policy.retry import RetryPolicy
from tunegate.cache.memory import MemoryBackend
from tunegate.emulator import Emulator
from tunegate.observability import track_sources
from tunegate.testing import FakeClock

driver = client_fixtures.driver
emulator_settings = client_fixtures.emulator_settings
_no_url_overrides = client_fixtures._no_url_overrides

QUICK = RetryPolicy(max_attempts=2, base=0.01, cap=0.01, jitter="none", deadline=30.0)


def test_a_memory_miss_is_looked_up_once_and_its_stale_entry_answers_an_outage(
    driver: Driver, emulator: Emulator
) -> None:
    """The first call: one counted lookup (the in-memory try before it counts nothing, and
    the call does not look again). Expired and the provider down: the stale entry that the
    same single lookup found is served."""
    clock = FakeClock()
    cache = driver.cache(clock=clock, ttls={"spotify:search": 60.0}, jitter=0.0)
    client = driver.spotify(clock=clock, cache_manager=cache, retry=QUICK, retry_budget=False)
    first = driver.call(client, "search_track", "Deadmau5", "Strobe")
    assert first is not None
    assert (cache.get_stats()["hits"], cache.get_stats()["misses"]) == (0, 1)
    with track_sources() as sources:
        assert driver.call(client, "search_track", "Deadmau5", "Strobe") == first
    assert sources.by_provider == {"spotify": "cache"}
    clock.advance(120.0)
    emulator.set_faults("spotify/search:error=503,retry_after=0")
    try:
        with track_sources() as sources:
            stale = driver.call(client, "search_track", "Deadmau5", "Strobe")
    finally:
        emulator.clear_faults()
    assert stale == first
    assert sources.by_provider == {"spotify": "stale"}
    assert (cache.get_stats()["hits"], cache.get_stats()["misses"]) == (1, 2)
    stats: dict[str, Any] = client.get_stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["stale_served"]) == (1, 2, 1)
    assert requests_to(emulator, "spotify", "search") == 1 + QUICK.max_attempts


def test_an_entry_kept_as_json_only_answers_like_a_decoded_one(
    driver: Driver, emulator: Emulator
) -> None:
    """``hot_bytes=0``: every hit decodes the entry's JSON; the answer is equal, frozen,
    counted as a hit, and asks the provider nothing."""
    cache = driver.cache(backend=MemoryBackend(hot_bytes=0))
    client = driver.spotify(cache_manager=cache)
    first = driver.call(client, "search_track", "Deadmau5", "Strobe")
    assert first is not None
    assert cache.backend.hot_total == 0  # type: ignore[attr-defined]
    again = driver.call(client, "search_track", "Deadmau5", "Strobe")
    assert again == first
    with pytest.raises(TypeError):
        again["name"] = "changed"
    assert client.get_stats()["cache_hits"] == 1
    assert requests_to(emulator, "spotify", "search") == 1
