"""``track_sources()``: where each answer came from (api, cache, stale), per provider, for
the CLI's records and the service's ``X-Cache``; sync and async clients alike."""

from __future__ import annotations

from tests.clients.conftest import Driver
from tunegate.emulator import Emulator
from tunegate.observability import track_sources
from tunegate.testing import FakeClock

DAY = 86_400.0


def test_api_then_cache_then_stale(driver: Driver, emulator: Emulator) -> None:
    clock = FakeClock()
    client = driver.spotify(clock=clock, cache_manager=driver.cache(clock=clock))
    track_id = emulator.describe_track(0)["spotify_id"]
    with track_sources() as first:
        driver.call(client, "get_track", track_id)
    assert first.by_provider == {"spotify": "api"}
    with track_sources() as second:
        driver.call(client, "get_track", track_id)
    assert (second.by_provider, second.last) == ({"spotify": "cache"}, "cache")
    clock.advance(31 * DAY)  # expired, within the stale grace
    emulator.set_faults("spotify/track:error=503")
    with track_sources() as third:
        driver.call(client, "get_track", track_id)
    assert third.by_provider == {"spotify": "stale"}


def test_not_found_counts_and_nothing_is_recorded_outside_a_block(
    driver: Driver, emulator: Emulator
) -> None:
    client = driver.lastfm()
    driver.call(client, "get_track_tags", "Deadmau5", "Strobe")  # no block: nothing to record
    with track_sources() as sources:
        driver.call(client, "get_track_tags", "Deadmau5", "Strobe")
        driver.call(client, "get_track_tags", "Nobody Knows", "This Song At All")
    assert sources.by_provider == {"lastfm": "api"}
    assert sources.last == "api"
