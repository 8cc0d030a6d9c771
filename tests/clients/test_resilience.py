"""The clients under the emulator's faults: a 429 storm, an outage and its recovery, a
malformed body; and the cache controls (``use_cache=False``, invalidation, stale-if-error).
The clients run on a FakeClock, so backoffs, pauses and breaker timeouts take no real time."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients.conftest import Driver, requests_to, statuses
from tunegate._policy.retry import RetryPolicy
from tunegate.breaker import CircuitBreaker
from tunegate.emulator import Emulator
from tunegate.exceptions import (
    CircuitBreakerOpenError,
    MalformedResponse,
    ProviderUnavailable,
    RateLimited,
    RateLimitTimeout,
)
from tunegate.testing import FakeClock

DAY = 86_400.0


def spotify_on(driver: Driver, clock: FakeClock, **kwargs: Any) -> Any:
    return driver.spotify(clock=clock, cache_manager=driver.cache(clock=clock), **kwargs)


def test_429_with_a_long_retry_after_fails_fast_and_holds_everyone_back(
    driver: Driver, emulator: Emulator
) -> None:
    """Retry-After: 3600 is not slept on (spotipy's hours-long hang): the call raises
    RateLimited carrying it, the limiter holds later calls back without sending them,
    cached answers keep coming, and calls flow again once the pause is over."""
    clock = FakeClock()
    client = spotify_on(driver, clock)
    strobe = emulator.describe_track(0)["spotify_id"]
    assert driver.call(client, "get_track", strobe) is not None
    emulator.set_faults("spotify/search:error=429,retry_after=3600")
    err = driver.catch(client, "search_track", "Muse", "Hysteria")
    assert isinstance(err, RateLimited)
    assert err.retry_after == 3600
    sent = requests_to(emulator, "spotify")
    held = driver.catch(client, "get_track", emulator.describe_track(1)["spotify_id"])
    assert isinstance(held, RateLimitTimeout)
    assert requests_to(emulator, "spotify") == sent  # held back here, not refused there
    assert driver.call(client, "get_track", strobe)["name"] == "Strobe"  # cache hit
    emulator.clear_faults()
    clock.advance(3_601)
    assert driver.call(client, "search_track", "Muse", "Hysteria")["name"] == "Hysteria"
    assert client.get_stats()["circuit_breaker"]["state"] == "closed"  # 429 is no outage


def test_429_storm_is_ridden_out_with_retries(driver: Driver, emulator: Emulator) -> None:
    """Half the searches answered 429 (Retry-After: 0): every call still succeeds."""
    emulator.set_faults("spotify/search:error=429@0.5,retry_after=0")
    retry = RetryPolicy(max_attempts=10, base=0.01, cap=0.05, deadline=30.0)
    client = spotify_on(driver, FakeClock(), retry=retry)
    tracks = [emulator.describe_track(i) for i in range(8)]
    found = [driver.call(client, "search_track", t["artists"][0], t["title"]) for t in tracks]
    assert all(track is not None for track in found)
    assert statuses(emulator, "spotify", "search")["429"] >= 1
    assert client.get_stats()["retries"] == statuses(emulator, "spotify", "search")["429"]


def test_outage_opens_the_breaker_and_recovery_closes_it(
    driver: Driver, emulator: Emulator
) -> None:
    """Five failed attempts open the breaker; while open, nothing is sent and cached answers
    still come; after its timeout two successful probes close it again."""
    clock = FakeClock()
    breaker = CircuitBreaker("spotify", failure_threshold=5, timeout=60, clock=clock)
    client = spotify_on(driver, clock, circuit_breaker=breaker)
    assert driver.call(client, "search_track", "Deadmau5", "Strobe") is not None
    emulator.set_faults("spotify/search:outage=3600,retry_after=0")
    first = driver.catch(client, "search_track", "Muse", "Hysteria")
    assert isinstance(first, ProviderUnavailable)
    assert first.attempts == 3
    second = driver.catch(client, "search_track", "Muse", "Psycho")
    assert isinstance(second, CircuitBreakerOpenError)
    sent = requests_to(emulator, "spotify", "search")
    assert isinstance(driver.catch(client, "search_track", "U2", "One"), CircuitBreakerOpenError)
    assert requests_to(emulator, "spotify", "search") == sent
    assert driver.call(client, "search_track", "Deadmau5", "Strobe")["name"] == "Strobe"
    assert client.get_stats()["circuit_breaker"]["state"] == "open"

    emulator.clear_faults()
    clock.advance(61)
    assert driver.call(client, "search_track", "Muse", "Hysteria")["name"] == "Hysteria"
    assert client.get_stats()["circuit_breaker"]["state"] == "half_open"
    assert driver.call(client, "search_track", "Muse", "Psycho")["name"] == "Psycho"
    assert client.get_stats()["circuit_breaker"]["state"] == "closed"


def test_malformed_body(driver: Driver, emulator: Emulator) -> None:
    """A body that is not JSON raises MalformedResponse (retrying will not fix it); with an
    expired cached answer the stale one is served instead, unless use_cache=False."""
    clock = FakeClock()
    client = spotify_on(driver, clock)
    strobe, other = (emulator.describe_track(i)["spotify_id"] for i in (0, 1))
    emulator.set_faults("spotify/track:malformed=1,times=1")
    err = driver.catch(client, "get_track", other)
    assert isinstance(err, MalformedResponse)
    assert driver.call(client, "get_track", other)["name"] == "Mr. Brightside"

    assert driver.call(client, "get_track", strobe)["name"] == "Strobe"
    clock.advance(31 * DAY)  # past spotify:track's 30 days, within the stale grace
    emulator.set_faults("spotify/track:malformed=1,times=2")
    bypass = driver.catch(client, "get_track", strobe, use_cache=False)
    assert isinstance(bypass, MalformedResponse)
    assert driver.call(client, "get_track", strobe)["name"] == "Strobe"
    assert client.get_stats()["stale_served"] == 1
    assert driver.call(client, "get_track", strobe)["name"] == "Strobe"  # fault spent: fresh
    assert requests_to(emulator, "spotify", "track") == 6
    assert emulator.stats()["faults"]["spotify"]["track"] == {"malformed": 3}


def test_use_cache_false_skips_the_read_but_writes(driver: Driver, emulator: Emulator) -> None:
    """``use_cache=False`` always asks the provider and stores its answer for the next call."""
    client = driver.lastfm()
    driver.call(client, "get_track_tags", "Deadmau5", "Strobe")
    driver.call(client, "get_track_tags", "Deadmau5", "Strobe", use_cache=False)
    assert requests_to(emulator, "lastfm") == 2
    driver.call(client, "get_track_tags", "Deadmau5", "Strobe")
    assert requests_to(emulator, "lastfm") == 2
    stats = client.get_stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["api_calls"]) == (1, 1, 2)


@pytest.mark.parametrize("provider", ["spotify", "musicbrainz", "lastfm"])
def test_invalidate_forgets_one_answer(driver: Driver, emulator: Emulator, provider: str) -> None:
    """``cache.invalidate(kind, *client.cache_scope, *parts)`` (the design's call, with the
    scope that keeps the emulator's answers to itself) makes the next call ask again; the
    design's parts alone name the official host's entry, not this one."""
    cache = driver.cache()
    if provider == "spotify":
        client, method, kind = driver.spotify(cache_manager=cache), "search_track", "spotify:search"
    elif provider == "musicbrainz":
        client = driver.musicbrainz(cache_manager=cache)
        method, kind = "search_recording", "musicbrainz:search"
    else:
        client = driver.lastfm(cache_manager=cache)
        method, kind = "get_track_tags", "lastfm:track_tags"
    driver.call(client, method, "Deadmau5", "Strobe")
    driver.call(client, method, "Deadmau5", "Strobe")
    assert client.get_stats()["api_calls"] == 1
    assert cache.invalidate(kind, "deadmau5", " Strobe") == 0
    assert cache.invalidate(kind, *client.cache_scope, "deadmau5", " Strobe") == 1
    driver.call(client, method, "Deadmau5", "Strobe")
    assert client.get_stats()["api_calls"] == 2


def test_retry_budget_is_on_by_default(emulator: Emulator) -> None:
    """A client built without one gets a retry budget, reported in its stats; False: none."""
    from tunegate import LastFmClient

    with LastFmClient("tunegate-test-key", base_url=emulator.urls.root) as client:
        assert client.get_stats()["retry_budget"] is not None
    with LastFmClient(
        "tunegate-test-key", base_url=emulator.urls.root, retry_budget=False
    ) as client:
        assert client.get_stats()["retry_budget"] is None
