"""The design's client surface against the emulator, sync and async: MusicBrainz
``get_release`` and ``search_recordings``, ``includes=``, Last.fm ``get_similar_artists``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients.conftest import Driver, requests_to
from tunegate.emulator import Emulator
from tunegate.exceptions import InvalidInput

THINKING_OUT_LOUD = 10  # Ed Sheeran, with its real MBID and ISRC
STROBE = 0


def release_of(driver: Driver, client: Any, mbid: str) -> str:
    """The MBID of a recording's first release, as a user would find it."""
    recording = driver.call(client, "get_recording", mbid, inc=["releases"])
    return str(recording["releases"][0]["id"])


# -- MusicBrainz get_release -------------------------------------------------------------------


def test_get_release_with_its_tracks_cached(driver: Driver, emulator: Emulator) -> None:
    track = emulator.describe_track(THINKING_OUT_LOUD)
    client = driver.musicbrainz()
    rid = release_of(driver, client, track["mbid"])
    release = driver.call(client, "get_release", rid.upper())
    assert release["id"] == rid
    assert release["title"] == track["album"]
    assert release["artist-credit"][0]["name"] == "Ed Sheeran"
    assert release["release-group"]["id"]
    assert release["label-info"] == []
    recordings = [t["recording"]["id"] for m in release["media"] for t in m["tracks"]]
    assert track["mbid"] in recordings
    assert release["media"][0]["track-count"] == len(release["media"][0]["tracks"])
    again = driver.call(client, "get_release", rid)
    assert again == release
    assert requests_to(emulator, "musicbrainz", "release") == 1  # the second from the cache


def test_get_release_includes_is_the_design_s_name_for_inc(
    driver: Driver, emulator: Emulator
) -> None:
    track = emulator.describe_track(STROBE)
    client = driver.musicbrainz()
    rid = release_of(driver, client, track["mbid"])
    slim = driver.call(client, "get_release", rid, includes=["artist-credits"])
    assert slim["artist-credit"][0]["name"] == track["artists"][0]
    assert "media" not in slim
    assert "release-group" not in slim
    media = driver.call(client, "get_release", rid, inc="media")
    assert "tracks" not in media["media"][0]
    assert media["media"][0]["track-count"] >= 1
    # Two inc lists, two requests: each is its own cache entry.
    assert requests_to(emulator, "musicbrainz", "release") == 2


def test_get_release_unknown_is_none(driver: Driver) -> None:
    client = driver.musicbrainz()
    assert driver.call(client, "get_release", "00000000-0000-0000-0000-000000000000") is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mbid": "not-a-uuid"}, "mbid"),
        ({"mbid": "cb2cc207-8125-445c-9ef9-6ea44eee959a", "inc": "bogus"}, "inc"),
        ({"mbid": "cb2cc207-8125-445c-9ef9-6ea44eee959a", "includes": ["ratings"]}, "inc"),
        (
            {
                "mbid": "cb2cc207-8125-445c-9ef9-6ea44eee959a",
                "inc": ["labels"],
                "includes": ["labels"],
            },
            "includes",
        ),
    ],
)
def test_get_release_bad_input_fails_before_any_network_call(
    driver: Driver, emulator: Emulator, kwargs: dict[str, Any], field: str
) -> None:
    client = driver.musicbrainz()
    kwargs = dict(kwargs)  # the parameter is shared by the sync and the async run
    mbid = kwargs.pop("mbid")
    error = driver.catch(client, "get_release", mbid, **kwargs)
    assert isinstance(error, InvalidInput)
    assert error.field == field
    assert requests_to(emulator, "musicbrainz") == 0


# -- MusicBrainz search_recordings ---------------------------------------------------------------


def test_search_recordings_returns_every_hit_with_scores(
    driver: Driver, emulator: Emulator
) -> None:
    client = driver.musicbrainz()
    strobe = emulator.describe_track(STROBE)
    hits = driver.call(client, "search_recordings", "Deadmau5", "Strobe", limit=5)
    assert 1 <= len(hits) <= 5
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == 100
    assert strobe["mbid"] in [h["id"] for h in hits]
    best = driver.call(client, "search_recording", "Deadmau5", "Strobe")
    assert best["id"] in [h["id"] for h in hits]
    # Cached apart from search_recording's best hit: one request each, none on repeat.
    assert driver.call(client, "search_recordings", "Deadmau5", "Strobe", limit=5) == hits
    assert driver.call(client, "search_recording", "Deadmau5", "Strobe") == best
    assert requests_to(emulator, "musicbrainz", "recording.search") == 2


def test_search_recordings_none_and_bad_input(driver: Driver, emulator: Emulator) -> None:
    client = driver.musicbrainz()
    assert driver.call(client, "search_recordings", "Nobody Xyzzy", "Nothing Qwerty") == []
    before = requests_to(emulator, "musicbrainz")
    for args, kwargs, field in [
        (("Deadmau5", "Strobe"), {"limit": 0}, "limit"),
        (("Deadmau5", "Strobe"), {"limit": 101}, "limit"),
        (("", "Strobe"), {}, "artist"),
    ]:
        error = driver.catch(client, "search_recordings", *args, **kwargs)
        assert isinstance(error, InvalidInput)
        assert error.field == field
    assert requests_to(emulator, "musicbrainz") == before


# -- Last.fm get_similar_artists -----------------------------------------------------------------


def test_get_similar_artists_with_match_scores(driver: Driver, emulator: Emulator) -> None:
    client = driver.lastfm()
    similar = driver.call(client, "get_similar_artists", "Daft Punk", limit=8)
    assert len(similar) == 8
    matches = [s["match"] for s in similar]
    assert matches[0] == 1.0
    assert matches == sorted(matches, reverse=True)
    assert all(0.0 < m <= 1.0 for m in matches)
    assert all(isinstance(s["match"], float) for s in similar)
    assert all(s["url"] and s["mbid"] and s["images"] for s in similar)
    # The same neighbours artist.getInfo lists, in the same order.
    info = driver.call(client, "get_artist_info", "Daft Punk")
    assert [s["name"] for s in similar][:5] == info["similar"]
    assert driver.call(client, "get_similar_artists", "Daft Punk", limit=8) == similar
    assert requests_to(emulator, "lastfm", "artist.getSimilar") == 1


def test_get_similar_artists_unknown_and_bad_input(driver: Driver, emulator: Emulator) -> None:
    client = driver.lastfm()
    assert driver.call(client, "get_similar_artists", "No Such Artist Xyzzy") == []
    before = requests_to(emulator, "lastfm")
    for kwargs, field in [({"limit": 0}, "limit"), ({"limit": 251}, "limit")]:
        error = driver.catch(client, "get_similar_artists", "Daft Punk", **kwargs)
        assert isinstance(error, InvalidInput)
        assert error.field == field
    error = driver.catch(client, "get_similar_artists", "   ")
    assert isinstance(error, InvalidInput)
    assert error.field == "artist"
    assert requests_to(emulator, "lastfm") == before


def test_get_similar_artists_default_limit_and_key_never_in_stats(
    driver: Driver, emulator: Emulator
) -> None:
    client = driver.lastfm()
    similar = driver.call(client, "get_similar_artists", "Daft Punk")
    assert len(similar) == 30  # Last.fm's documented default
    assert "api_key" not in repr(client.get_stats())


# -- includes= on the methods that take inc ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "arg", "default_has"),
    [
        ("lookup_isrc", "isrc", "artist-credit"),
        ("lookup_isrc_recordings", "isrc", "artist-credit"),
        ("get_recording", "mbid", "isrcs"),
    ],
)
def test_includes_on_every_method_that_takes_inc(
    driver: Driver, emulator: Emulator, method: str, arg: str, default_has: str
) -> None:
    track = emulator.describe_track(THINKING_OUT_LOUD)
    client = driver.musicbrainz()
    key = track[arg]
    default = driver.call(client, method, key)
    chosen = driver.call(client, method, key, includes=["isrcs"])
    by_inc = driver.call(client, method, key, inc=["isrcs"])

    def one(value: Any) -> Any:
        return value[0] if method == "lookup_isrc_recordings" else value

    assert default_has in one(default)
    assert chosen == by_inc  # the same request, the same cache entry
    assert "isrcs" in one(chosen)
    assert "artist-credit" not in one(chosen)
    before = requests_to(emulator, "musicbrainz")
    both = driver.catch(client, method, key, inc=["isrcs"], includes=["isrcs"])
    assert isinstance(both, InvalidInput)
    assert both.field == "includes"
    bad = driver.catch(client, method, key, includes=["bogus"])
    assert isinstance(bad, InvalidInput)
    assert bad.field == "inc"
    assert requests_to(emulator, "musicbrainz") == before
