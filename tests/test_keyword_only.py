"""The design's traps are TypeErrors: everything after the positional arguments its examples
use is keyword-only, so an argument meant for one parameter never lands in another."""

from __future__ import annotations

from typing import Any

import pytest

from tunegate import (
    AsyncLastFmClient,
    AsyncMusicBrainzClient,
    AsyncSpotifyClient,
    CacheManager,
    CircuitBreaker,
    CircuitBreakerRegistry,
    LastFmClient,
    MusicBrainzClient,
    SpotifyClient,
)

CLOSED = "http://127.0.0.1:9"  # never reached: binding the arguments fails first


def test_breaker_thresholds_are_keywords() -> None:
    # The design's order is failures, successes, timeout; ours was failures, timeout, ...
    untyped: Any = CircuitBreaker  # the call mypy would refuse, as a user without it writes it
    with pytest.raises(TypeError):
        untyped("x", 5, 2, 60)
    register: Any = CircuitBreakerRegistry().register
    with pytest.raises(TypeError):
        register("x", 5, 2)
    config = CircuitBreaker("x", failure_threshold=5, success_threshold=2, timeout=60).config
    assert (config.failure_threshold, config.success_threshold, config.timeout) == (5, 2, 60)


def test_client_options_are_keywords() -> None:
    spotify = SpotifyClient("a" * 32, "b" * 32, base_url=CLOSED, auth_url=CLOSED, metrics=False)
    musicbrainz = MusicBrainzClient(user_agent="test/1.0 (t@example.invalid)", base_url=CLOSED)
    lastfm = LastFmClient(api_key="c" * 32, base_url=CLOSED, metrics=False)
    calls: list[tuple[Any, tuple[Any, ...]]] = [
        (spotify.search_track, ("Deadmau5", "Strobe", 5)),  # use_cache=5 before
        (spotify.get_track, ("3n3Ppam7vgaVa1iaRUc9Lp", False)),
        (musicbrainz.search_recording, ("Strobe", "Deadmau5", False)),
        (musicbrainz.lookup_isrc, ("USIR20400500", ["releases"])),
        (lastfm.get_track_tags, ("Deadmau5", "Strobe", True)),
    ]
    try:
        for method, args in calls:
            with pytest.raises(TypeError):
                method(*args)
    finally:
        spotify.close()
        musicbrainz.close()
        lastfm.close()


async def test_async_client_options_are_keywords() -> None:
    async with AsyncSpotifyClient(
        "a" * 32, "b" * 32, base_url=CLOSED, auth_url=CLOSED, metrics=False
    ) as spotify:
        search: Any = spotify.search_track
        with pytest.raises(TypeError):
            await search("Deadmau5", "Strobe", 5)


def test_constructor_options_are_keywords() -> None:
    """Past the credentials every constructor argument is a keyword: a component given
    positionally (the old third slot, ``cache_manager``) is a TypeError, for all six
    clients; by keyword it is taken."""
    cache = CacheManager()
    agent = "test/1.0 (t@example.invalid)"
    makers: list[tuple[Any, tuple[Any, ...]]] = [
        (SpotifyClient, ("a" * 32, "b" * 32)),
        (AsyncSpotifyClient, ("a" * 32, "b" * 32)),
        (MusicBrainzClient, (agent,)),
        (AsyncMusicBrainzClient, (agent,)),
        (LastFmClient, ("c" * 32,)),
        (AsyncLastFmClient, ("c" * 32,)),
    ]
    for make, creds in makers:
        with pytest.raises(TypeError):
            make(*creds, cache, base_url=CLOSED, metrics=False)
        client = make(*creds, cache_manager=cache, base_url=CLOSED, metrics=False)
        assert client.cache_manager is cache
