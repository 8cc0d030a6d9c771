"""Answers are cached per origin: an emulator's, a mirror's or a proxy's answers are never
served for another origin, and the official hosts keep the design's keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import Driver, requests_to
from tunegate.cache import CacheManager
from tunegate.clients import LastFmClient, MusicBrainzClient, SpotifyClient
from tunegate.clients._base import cache_scope_for
from tunegate.emulator import DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET, Emulator
from tunegate.providers.spec import LASTFM, MUSICBRAINZ, SPOTIFY

STROBE = 0
AUDIOSLAVE = "Audioslave"


@pytest.fixture
def other(emulator_settings: dict[str, Any]) -> Iterator[Emulator]:
    """A second emulator with another seed: other ISRCs and ids for the same songs."""
    with Emulator(**{**emulator_settings, "seed": 1}) as emu:
        yield emu


def calls(emulator: Emulator) -> list[tuple[str, str, tuple[Any, ...]]]:
    """``(provider, method, args)`` for every method of every client."""
    strobe = emulator.describe_track(STROBE)
    return [
        ("spotify", "search_track", ("Deadmau5", "Strobe")),
        ("spotify", "search_by_isrc", (strobe["isrc"],)),
        ("spotify", "get_track", (strobe["spotify_id"],)),
        ("spotify", "get_tracks", ([strobe["spotify_id"]],)),
        ("spotify", "get_artist", (strobe["artist_spotify_ids"][0],)),
        ("musicbrainz", "lookup_isrc", (strobe["isrc"],)),
        ("musicbrainz", "lookup_isrc_recordings", (strobe["isrc"],)),
        ("musicbrainz", "search_recording", ("Deadmau5", "Strobe")),
        ("musicbrainz", "get_recording", (strobe["mbid"],)),
        ("lastfm", "get_track_tags", ("Deadmau5", "Strobe")),
        ("lastfm", "get_track_tag_counts", ("Deadmau5", "Strobe")),
        ("lastfm", "get_artist_tags", (AUDIOSLAVE,)),
        ("lastfm", "get_artist_info", (AUDIOSLAVE,)),
        ("lastfm", "get_track_info", ("Deadmau5", "Strobe")),
        ("lastfm", "get_correction", ("Deadmau5", "Strobe")),
        ("lastfm", "search_tracks", ("Strobe", "Deadmau5")),
    ]


def api_requests(emulator: Emulator, provider: str) -> int:
    """Requests the emulator answered for ``provider``, token requests left out."""
    return requests_to(emulator, provider) - requests_to(emulator, provider, "token")


def test_every_method_keeps_answers_to_their_origin(
    driver: Driver, emulator: Emulator, other: Emulator
) -> None:
    """Two clients at two emulators share one cache: for every method, the second client
    asks its own emulator instead of being served the first emulator's answer."""
    for provider, method, args in calls(emulator):
        cache = driver.cache()  # some methods share entries (get_track, get_tracks)
        first = getattr(driver, provider)(cache_manager=cache)
        second = getattr(driver, provider)(cache_manager=cache, base_url=other.urls.root)
        before = api_requests(other, provider)
        driver.call(first, method, *args)
        driver.call(second, method, *args)
        asked = api_requests(other, provider)
        assert asked > before, f"{provider}.{method} was served the other origin's answer"
        driver.call(second, method, *args)  # its own answer is cached for itself
        assert api_requests(other, provider) == asked, f"{provider}.{method}"


def test_shared_sqlite_file_does_not_mix_origins(
    emulator: Emulator, other: Emulator, tmp_path: Path
) -> None:
    """The reviewer's case: two runs at two emulators with one SQLite cache file; the second
    gets its own emulator's ISRC, not the first one's."""
    db = tmp_path / "cache.db"
    creds = (DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET)
    # A song whose ISRC the seed draws (the famous ones carry their real ISRC everywhere).
    index = next(
        i
        for i in range(100)
        if emulator.describe_track(i)["isrc"] != other.describe_track(i)["isrc"]
    )
    a_track, b_track = emulator.describe_track(index), other.describe_track(index)
    assert (a_track["artists"], a_track["title"]) == (b_track["artists"], b_track["title"])
    artist, title = a_track["artists"][0], a_track["title"]
    with (
        CacheManager.sqlite(db) as cache,
        SpotifyClient(*creds, base_url=emulator.urls.root, cache_manager=cache) as client,
    ):
        found = client.search_track(artist, title)
        assert found is not None
        assert found["external_ids"]["isrc"] == a_track["isrc"]
    with (
        CacheManager.sqlite(db) as cache,
        SpotifyClient(*creds, base_url=other.urls.root, cache_manager=cache) as client,
    ):
        found = client.search_track(artist, title)
        assert found is not None
        assert found["external_ids"]["isrc"] == b_track["isrc"]
    assert requests_to(other, "spotify", "search") == 1


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        (SPOTIFY, "https://api.spotify.com"),
        (SPOTIFY, "https://api.spotify.com/v1"),
        (SPOTIFY, "https://API.Spotify.com:443/"),
        (MUSICBRAINZ, "https://musicbrainz.org/ws/2"),
        (MUSICBRAINZ, "http://musicbrainz.org"),
        (LASTFM, "https://ws.audioscrobbler.com/2.0/"),
    ],
)
def test_official_hosts_keep_the_designs_keys(spec: Any, url: str) -> None:
    """The official origin, however spelled, adds nothing to keys (``cache.invalidate(kind,
    *parts)`` works as the design writes it)."""
    from tunegate.clients._base import base_url_for

    assert cache_scope_for(base_url_for(url, spec), spec) == ()


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        (SPOTIFY, "https://api.spotify.com:8443"),
        (SPOTIFY, "https://proxy.example/api.spotify.com"),
        (SPOTIFY, "https://api.spotify.com/proxy"),
        (MUSICBRAINZ, "https://test.musicbrainz.org"),  # a test database: other data
        (MUSICBRAINZ, "http://127.0.0.1:5000"),
        (LASTFM, "https://ws.audioscrobbler.com.evil.example"),
        (LASTFM, "ftp://ws.audioscrobbler.com"),
    ],
)
def test_other_origins_get_a_scope(spec: Any, url: str) -> None:
    """Any other origin (port, path prefix, subdomain, host) gets one ``@``-part of its own."""
    (scope,) = cache_scope_for(url, spec)
    assert scope.startswith("@")
    assert len(scope) == 17
    assert int(scope[1:], 16) >= 0


def test_scope_is_stable_and_distinct() -> None:
    """One origin, however spelled, has one scope (so a cache outlives restarts); two
    origins have two."""
    one = cache_scope_for("http://127.0.0.1:5000", MUSICBRAINZ)
    assert cache_scope_for("HTTP://127.0.0.1:5000/", MUSICBRAINZ) == one
    assert cache_scope_for("http://127.0.0.1:5001", MUSICBRAINZ) != one
    assert cache_scope_for("https://127.0.0.1:5000", MUSICBRAINZ) != one


def test_client_exposes_its_scope(emulator: Emulator) -> None:
    """``client.cache_scope`` is () against the official hosts and the emulator's part
    against the emulator, for all three clients."""
    assert SpotifyClient("id", "secret").cache_scope == ()
    assert MusicBrainzClient("App/1.0 ( a@b.c )").cache_scope == ()
    assert LastFmClient("your_lastfm_api_key").cache_scope == ()
    scope = cache_scope_for(emulator.urls.root, SPOTIFY)
    assert SpotifyClient("id", "secret", base_url=emulator.urls.spotify).cache_scope == scope


def test_invalidating_one_origins_answers(driver: Driver, emulator: Emulator) -> None:
    """The documented calls: ``invalidate(kind, *scope, *parts)`` forgets one answer of
    this origin, ``invalidate_pattern(cache.pattern(kind, *scope))`` all of its kind."""
    cache = driver.cache()
    client = driver.spotify(cache_manager=cache)
    for title in ("Strobe", "Ghosts 'n' Stuff"):
        driver.call(client, "search_track", "Deadmau5", title)
    official = cache.key("spotify:search", "deadmau5", "strobe")
    cache.set(official, {"name": "official answer"})
    assert cache.invalidate("spotify:search", *client.cache_scope, "Deadmau5", "Strobe") == 1
    driver.call(client, "search_track", "Deadmau5", "Strobe")
    assert requests_to(emulator, "spotify", "search") == 3
    assert cache.invalidate_pattern(cache.pattern("spotify:search", *client.cache_scope)) == 2
    assert cache.get(official) == {"name": "official answer"}
