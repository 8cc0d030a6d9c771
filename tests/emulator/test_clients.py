"""The real third-party clients, pointed at the emulator, get correct data: a search, a lookup
and a tag or info call each (spotipy, musicbrainzngs, pylast over TLS)."""

from __future__ import annotations

import gc
import ssl
import warnings
from collections.abc import Iterator
from typing import Any

import musicbrainzngs
import pylast
import pytest
import spotipy
from spotipy.oauth2 import SpotifyClientCredentials

from tunegate.emulator import (
    DEFAULT_LASTFM_KEY,
    DEFAULT_SPOTIFY_CLIENT_ID,
    DEFAULT_SPOTIFY_CLIENT_SECRET,
    Emulator,
)


@pytest.fixture
def spotify(emulator: Emulator) -> spotipy.Spotify:
    auth = SpotifyClientCredentials(
        client_id=DEFAULT_SPOTIFY_CLIENT_ID,
        client_secret=DEFAULT_SPOTIFY_CLIENT_SECRET,
        cache_handler=spotipy.MemoryCacheHandler(),
    )
    auth.OAUTH_TOKEN_URL = emulator.urls.spotify_token  # an instance attribute: no global change
    sp = spotipy.Spotify(auth_manager=auth, retries=0, requests_timeout=5)
    sp.prefix = emulator.urls.spotify + "/"
    return sp


def test_spotipy_search_lookup_and_artist(spotify: spotipy.Spotify) -> None:
    """spotipy finds Strobe by field search, fetches a track by id and reads its artist."""
    found = spotify.search(q="track:Strobe artist:deadmau5", type="track", limit=5)
    items = found["tracks"]["items"]
    assert [t["name"] for t in items] == ["Strobe"]
    assert items[0]["artists"][0]["name"] == "deadmau5"
    assert items[0]["duration_ms"] == 637000
    track = spotify.track("3n3Ppam7vgaVa1iaRUc9Lp")
    assert track["name"] == "Mr. Brightside"
    assert track["external_ids"]["isrc"] == "GBFFP0300052"
    artist = spotify.artist(track["artists"][0]["id"])
    assert artist["name"] == "The Killers"
    by_isrc = spotify.search(q="isrc:GBFFP0300052", type="track")
    assert [t["id"] for t in by_isrc["tracks"]["items"]] == ["3n3Ppam7vgaVa1iaRUc9Lp"]


def test_spotipy_follows_next_pages(spotify: spotipy.Spotify) -> None:
    """The paging object's next link points at the emulator, so spotipy.next() works."""
    first = spotify.search(q="golden", type="track", limit=5)["tracks"]
    second = spotify.next(first)["tracks"]
    assert second["offset"] == 5
    assert {t["id"] for t in first["items"]}.isdisjoint(t["id"] for t in second["items"])


@pytest.fixture
def mb(emulator: Emulator) -> Iterator[Any]:
    """musicbrainzngs pointed at the emulator; its module globals restored afterwards."""
    saved = (
        musicbrainzngs.musicbrainz.hostname,
        musicbrainzngs.musicbrainz.https,
        musicbrainzngs.musicbrainz._useragent,
        musicbrainzngs.musicbrainz._client,
        musicbrainzngs.musicbrainz.limit_interval,
        musicbrainzngs.musicbrainz.limit_requests,
        musicbrainzngs.musicbrainz.do_rate_limit,
    )
    musicbrainzngs.set_useragent("tunegate-tests", "0.1", "https://example.org/tunegate")
    musicbrainzngs.set_hostname(emulator.urls.host, use_https=False)
    musicbrainzngs.set_rate_limit(limit_or_interval=1.0, new_requests=1)
    emulator.configure(
        musicbrainz_rate={"requests": 50, "window": 1.0}
    )  # the test is not about pacing
    yield musicbrainzngs
    with warnings.catch_warnings():  # musicbrainzngs never closes its urllib responses
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    m = musicbrainzngs.musicbrainz
    (
        m.hostname,
        m.https,
        m._useragent,
        m._client,
        m.limit_interval,
        m.limit_requests,
        m.do_rate_limit,
    ) = saved


def test_musicbrainzngs_search_lookup_and_tags(mb: Any) -> None:
    """musicbrainzngs (XML) searches, looks up by ISRC and reads a recording's tags."""
    mb.set_rate_limit(False)
    found = mb.search_recordings(recording="Thinking Out Loud", artist="Ed Sheeran", limit=5)
    top = found["recording-list"][0]
    assert top["title"] == "Thinking Out Loud"
    assert top["ext:score"] == "100"
    assert top["artist-credit-phrase"] == "Ed Sheeran"
    by_isrc = mb.get_recordings_by_isrc("GBAHS1400099", includes=["artists"])
    recordings = by_isrc["isrc"]["recording-list"]
    assert [r["id"] for r in recordings] == ["cb2cc207-8125-445c-9ef9-6ea44eee959a"]
    rec = mb.get_recording_by_id(recordings[0]["id"], includes=["artists", "isrcs", "tags"])
    rec = rec["recording"]
    assert rec["isrc-list"] == ["GBAHS1400099"]
    assert rec["length"] == "281000"
    assert {t["name"] for t in rec["tag-list"]} >= {"pop"}


def test_musicbrainzngs_batched_isrc_search(mb: Any, emulator: Emulator) -> None:
    """``isrc:A OR isrc:B ...`` in one search; each recording's isrc-list says which ISRC it
    answers, and an ISRC shared by several recordings returns all of them."""
    cat = emulator.catalog
    by_isrc: dict[str, list[str]] = {}
    for i in range(cat.size):
        if cat.on_musicbrainz(i):
            mbid = cat.track(i).mbid
            assert mbid is not None
            by_isrc.setdefault(cat.track(i).isrc, []).append(mbid)
    shared = next(code for code, ids in by_isrc.items() if len(ids) > 1)
    singles = [code for code, ids in by_isrc.items() if len(ids) == 1][:3]
    wanted = [shared, *singles]
    query = " OR ".join(f"isrc:{code}" for code in wanted)
    found = mb.search_recordings(query=query, limit=100)
    expected = sum(len(by_isrc[code]) for code in wanted)
    assert found["recording-count"] == expected
    assert len(found["recording-list"]) == expected
    answered: dict[str, set[str]] = {}
    for rec in found["recording-list"]:
        hits = set(rec["isrc-list"]) & set(wanted)
        assert hits, rec["id"]
        for code in hits:
            answered.setdefault(code, set()).add(rec["id"])
    assert answered[shared] == set(by_isrc[shared])
    page = mb.search_recordings(query=query, limit=2, offset=1)
    assert page["recording-count"] == expected
    assert len(page["recording-list"]) == 2


def test_musicbrainzngs_not_found_is_a_response_error(mb: Any) -> None:
    """An unknown ISRC is a 404 that musicbrainzngs reports as ResponseError."""
    mb.set_rate_limit(False)
    with pytest.raises(musicbrainzngs.ResponseError) as info:
        mb.get_recordings_by_isrc("GBAAA0000000")
    cause = info.value.cause
    cause.close()  # musicbrainzngs leaves the error's response open
    assert cause.code == 404


@pytest.fixture
def tls_emulator() -> Iterator[Emulator]:
    with Emulator(tls=True, lastfm_rate={"requests": 50, "window": 1.0}) as emu:
        yield emu


@pytest.fixture
def lastfm(tls_emulator: Emulator) -> Iterator[pylast.LastFMNetwork]:
    """pylast over HTTPS (it speaks nothing else), trusting the emulator's CA."""
    saved = pylast.SSL_CONTEXT
    pylast.SSL_CONTEXT = ssl.create_default_context(cafile=tls_emulator.ca_path)
    network = pylast.LastFMNetwork(api_key=DEFAULT_LASTFM_KEY, api_secret="unused")
    network.ws_server = (tls_emulator.urls.host, "/2.0/")
    yield network
    pylast.SSL_CONTEXT = saved


def test_pylast_search_info_and_tags(lastfm: pylast.LastFMNetwork) -> None:
    """pylast (XML over TLS) searches tracks, reads a duration, tags and a correction."""
    results = lastfm.search_for_track("deadmau5", "Strobe")
    assert int(results.get_total_result_count()) == 1
    page = results.get_next_page()
    assert [(str(t.artist), t.title) for t in page] == [("deadmau5", "Strobe")]
    track = lastfm.get_track("Daft Punk", "Something About Us")
    assert track.get_duration() == 232000
    tags = track.get_top_tags()
    assert [t.item.get_name() for t in tags][:2] == ["electronic", "chillout"]
    assert int(tags[0].weight) == 100
    assert lastfm.get_track("Guns N' Roses", "mrbrownstone").get_correction() == "Mr. Brownstone"
    artist = lastfm.get_artist("U2")
    assert artist.get_mbid() == "a3cb23fc-acd3-4ce0-8f36-1e5aa6a18432"


def test_pylast_reports_errors(lastfm: pylast.LastFMNetwork) -> None:
    """An unknown artist is Last.fm error 6, which pylast raises as WSError."""
    with pytest.raises(pylast.WSError) as info:
        lastfm.get_artist("No Such Artist Xyz").get_top_tags()
    assert info.value.status == "6"
