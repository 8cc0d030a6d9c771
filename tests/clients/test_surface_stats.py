"""Client stats in the design's vocabulary (requests_total, requests_successful,
requests_failed, rate_limited, circuit_breaker_opens), checked against what the emulator
saw, sync and async."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients.conftest import Driver, requests_to
from tunegate.breaker import CircuitBreaker
from tunegate.clients._extra import DesignStats, design_stats
from tunegate.emulator import Emulator
from tunegate.exceptions import CircuitBreakerOpenError, ProviderUnavailable
from tunegate.testing import FakeClock


def figures(client: Any) -> DesignStats:
    """The design's keys of ``client.get_stats()``, checked against design_stats itself."""
    stats = client.get_stats()
    expected = design_stats(stats, client.circuit_breaker.openings)
    assert {key: stats[key] for key in expected} == expected
    assert stats["api_calls"] == expected["requests_total"]  # ours stay beside them
    return expected


def test_design_stats_follow_the_requests_the_provider_saw(
    driver: Driver, emulator: Emulator
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("lastfm", failure_threshold=2, timeout=60, clock=clock)
    client = driver.lastfm(clock=clock, circuit_breaker=breaker, cache_manager=driver.cache())
    assert driver.call(client, "get_artist_info", "Daft Punk") is not None
    assert driver.call(client, "get_artist_info", "Daft Punk") is not None  # cache: no request
    assert figures(client) == {
        "requests_total": 1,
        "requests_successful": 1,
        "requests_failed": 0,
        "rate_limited": 0,
        "circuit_breaker_opens": 0,
    }
    assert driver.call(client, "get_artist_info", "No Such Artist Xyzzy") is None  # not found
    assert figures(client)["requests_successful"] == 2  # "not found" is an answer

    emulator.set_faults("lastfm/artist.getTopTags:outage=3600,retry_after=0")
    error = driver.catch(client, "get_artist_tags", "Muse")
    assert isinstance(error, ProviderUnavailable | CircuitBreakerOpenError)
    sent = requests_to(emulator, "lastfm")
    stats = figures(client)
    assert stats["requests_total"] == sent
    assert stats["requests_failed"] == sent - 2
    assert stats["requests_failed"] >= 2
    assert stats["circuit_breaker_opens"] == 1
    for artist in ("U2", "Coldplay", "Blur"):  # refusals are not openings
        refused = driver.catch(client, "get_artist_tags", artist)
        assert isinstance(refused, CircuitBreakerOpenError)
    assert figures(client)["circuit_breaker_opens"] == 1
    assert client.get_stats()["breaker_rejections"] >= 3
    assert requests_to(emulator, "lastfm") == sent

    emulator.clear_faults()
    clock.advance(61)
    for artist in ("U2", "Coldplay"):  # two good probes close it
        assert isinstance(driver.call(client, "get_artist_tags", artist), list)
    assert client.circuit_breaker.get_stats()["state"] == "closed"
    emulator.set_faults("lastfm/artist.getTopTags:outage=3600,retry_after=0")
    driver.catch(client, "get_artist_tags", "Oasis")
    final = figures(client)
    assert final["circuit_breaker_opens"] == 2
    assert final["requests_total"] == requests_to(emulator, "lastfm")
    assert final["requests_successful"] + final["requests_failed"] == final["requests_total"]


def test_rate_limited_counts_calls_the_limiter_held_back(driver: Driver) -> None:
    clock = FakeClock()
    client = driver.lastfm(clock=clock, rate=1.0, capacity=1)
    for artist in ("Daft Punk", "Muse", "U2"):
        driver.call(client, "get_artist_tags", artist)
    stats = figures(client)
    assert stats["rate_limited"] == 2  # the second and third waited for their token
    assert stats["requests_total"] == 3


@pytest.mark.parametrize("missing", [{}, {"rate_limiter": None}, {"rate_limiter": {}}])
def test_design_stats_of_sparse_stats(missing: dict[str, Any]) -> None:
    """A pipeline without a limiter (or stats without counters) gives zeros, not errors."""
    assert design_stats(missing, 0) == {
        "requests_total": 0,
        "requests_successful": 0,
        "requests_failed": 0,
        "rate_limited": 0,
        "circuit_breaker_opens": 0,
    }
