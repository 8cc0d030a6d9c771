"""The catalogue: deterministic, consistent across providers, lazy enough for a million tracks,
with real tracks, spelling variants, single-provider tracks and shared ISRCs."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.emulator.conftest import MB_AGENT, bearer, lastfm_params
from tunegate.emulator import Emulator
from tunegate.emulator.catalog import Catalog
from tunegate.emulator.ids import BASE62_ID, ISRC_RE
from tunegate.emulator.match import artists_with_genre, tracks_in_years
from tunegate.emulator.text import fold, strip_feat, tokens

DESIGN_ISRC = "USIR20400500"
MBID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_deterministic_and_seeded() -> None:
    """Same (size, seed) gives the same tracks; another seed gives other ones."""
    a, b, c = Catalog(2000, 1), Catalog(2000, 1), Catalog(2000, 2)
    assert [a.track(i) for i in range(0, 2000, 97)] == [b.track(i) for i in range(0, 2000, 97)]
    assert a.track(1500).isrc != c.track(1500).isrc
    assert a.track(1).isrc == c.track(1).isrc == "GBFFP0300052"  # real facts do not move


def test_ids_are_valid_and_round_trip() -> None:
    """Spotify ids are 22 base62 chars, MBIDs UUID v4, ISRCs well formed; all decode back."""
    cat = Catalog(5000, 0)
    for i in range(0, 5000, 37):
        t = cat.track(i)
        assert ISRC_RE.match(t.isrc)
        assert i in cat.tracks_by_isrc(t.isrc)
        if t.spotify_id:
            assert BASE62_ID.match(t.spotify_id)
            assert cat.track_by_spotify_id(t.spotify_id) == i
        if t.mbid:
            assert MBID.match(t.mbid)
            assert uuid.UUID(t.mbid).version == 4
            assert cat.track_by_mbid(t.mbid) == i
        artist = cat.artist(t.artists[0])
        assert cat.artist_by_spotify_id(artist.spotify_id) == artist.index
        assert cat.artist_by_mbid(artist.mbid) == artist.index
    assert cat.track_by_spotify_id("0" * 22) is None
    assert cat.track_by_mbid(str(uuid.UUID(int=0))) is None
    assert cat.tracks_by_isrc("ZZZZZ0000000") == []


def test_a_million_tracks_without_building_them() -> None:
    """Lookups at the far end of a million-track catalogue work without the search index."""
    cat = Catalog(1_000_000, 0)
    far = cat.track(999_999)
    assert cat.tracks_by_isrc(far.isrc)[0] in (999_998, 999_999)
    if far.spotify_id:
        assert cat.track_by_spotify_id(far.spotify_id) == 999_999
    assert cat._index is None  # nothing was indexed


def test_variety_the_matchers_need() -> None:
    """Accents, "The", "feat.", single-provider tracks and shared ISRCs all occur."""
    cat = Catalog(10_000, 0)
    tracks = [cat.track(i) for i in range(cat.size)]
    names = [cat.artist(t.artists[0]).name for t in tracks]
    assert any(fold(n) != n.casefold() for n in names)  # accents
    assert any(n.startswith("The ") for n in names)
    assert any(
        "(feat. " in t.display_title and t.title == strip_feat(t.display_title) for t in tracks
    )
    presence = {(t.spotify_id is not None, t.mbid is not None, t.on_lastfm) for t in tracks}
    assert (True, False, False) in presence
    assert (False, True, False) in presence
    assert any(p.count(True) == 2 for p in presence)
    shared = [t for t in tracks if len(cat.tracks_by_isrc(t.isrc)) == 2]
    assert shared
    assert all(cat.track(j).title == t.title for t in shared for j in cat.tracks_by_isrc(t.isrc))


def test_the_search_index_agrees_with_the_tracks() -> None:
    """Every summary the index keeps (presence, ranks, years, genres, lengths) is what the
    tracks, artists and albums themselves say."""
    cat = Catalog(3000, 6)
    idx = cat.index()
    for i in range(cat.size):
        t = cat.track(i)
        assert (i not in idx.off_spotify) == (t.spotify_id is not None) == cat.on_spotify(i)
        assert (i not in idx.off_musicbrainz) == (t.mbid is not None) == cat.on_musicbrainz(i)
        assert (i not in idx.off_lastfm) == t.on_lastfm == cat.on_lastfm(i)
        assert idx.track_rank[i] >> 32 == 100 - t.popularity
        assert idx.listener_rank[i] >> 32 == (1 << 31) - t.listeners
        assert idx.title_len[i] == len(cat.title_tokens(i)) == len(tokens(t.title))
        assert cat.track_album(i) == t.album
        assert (cat.mb_length(i), cat.track_number(i)) == (t.mb_length, t.track_number)
        assert cat.mb_tag_names(i) == [name for name, _ in t.mb_tags]
        assert all(cat.may_have_tag(i, fold(name)) for name, _ in t.mb_tags)
        assert i in tracks_in_years(cat, t.album.year, t.album.year)
    for a in range(cat.n_artists):
        artist = cat.artist(a)
        assert idx.artist_rank[a] >> 32 == 100 - artist.popularity
        assert idx.artist_name_len[a] == len(tokens(artist.name))
        assert a in idx.artist_name[" ".join(tokens(artist.name))]
        for genre in artist.genres:
            assert a in artists_with_genre(cat, tokens(genre))
        led = [i for i in cat.tracks_of_artist(a) if cat.track(i).artists[0] == a]
        assert list(cat.tracks_led_by(a)) == led
        assert cat.albums_of_artist(a) == sorted({cat.album_index_of(i) for i in led})
    for al in range(cat.n_albums):
        assert al in idx.album_years[cat.album(al).year]
    assert sum(len(v) for v in idx.album_years.values()) == cat.n_albums


def test_real_tracks_carry_their_facts() -> None:
    """The hand-picked tracks keep their recorded ISRCs, durations and ids."""
    cat = Catalog(100, 0)
    strobe = cat.track(0)
    assert (cat.artist(strobe.artists[0]).name, strobe.title, strobe.duration_ms) == (
        "deadmau5",
        "Strobe",
        637000,
    )
    assert cat.track(cat.track_by_spotify_id("3lPr8ghNDBLc2uZovNyLs9") or 0).isrc == "GBAHT0500593"
    assert [cat.track(i).album.name for i in cat.tracks_named("The Killers", "Mr. Brightside")] == [
        "Hot Fuss (Deluxe Version)",
        "Hot Fuss",
    ]


def test_strobe_has_the_design_documents_isrc(quiet_emulator: Emulator) -> None:
    """USIR20400500 (the design's Quick start) is deadmau5 - Strobe at all three providers."""
    emu = quiet_emulator
    assert Catalog(100, 3).tracks_by_isrc(DESIGN_ISRC) == [0]
    with httpx.Client(headers={**bearer(emu), "User-Agent": MB_AGENT}) as c:
        mb = c.get(f"{emu.urls.musicbrainz}/isrc/{DESIGN_ISRC}", params={"fmt": "json"})
        assert [r["title"] for r in mb.json()["recordings"]] == ["Strobe"]
        sp = c.get(
            f"{emu.urls.spotify}/search", params={"q": f"isrc:{DESIGN_ISRC}", "type": "track"}
        ).json()["tracks"]["items"]
        assert [(t["name"], t["external_ids"]["isrc"]) for t in sp] == [("Strobe", DESIGN_ISRC)]
        lf = c.get(
            emu.urls.lastfm,
            params=lastfm_params(
                method="track.getInfo", artist="Deadmau5", track="Strobe", format="json"
            ),
        )
        assert lf.json()["track"]["name"] == "Strobe"
        assert lf.json()["track"]["mbid"] == mb.json()["recordings"][0]["id"]


def test_text_folding() -> None:
    """Folding removes case, accents and punctuation; strip_feat drops guest credits."""
    assert fold("Déjà Vu!") == "deja vu"
    assert fold("Sigur Rós") == fold("SIGUR ROS")
    assert fold("Guns N' Roses") == "guns n roses"
    assert strip_feat("Get Lucky (feat. Pharrell Williams)") == "Get Lucky"
    assert strip_feat("Song ft. X") == "Song"
