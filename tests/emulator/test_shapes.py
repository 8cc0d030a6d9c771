"""The emulator's answers have the keys, types and nesting of responses recorded from the real
services (../shared/fixtures/real; skipped where that folder is absent)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator._shape import assert_same_shape, shape_differences
from tests.emulator.conftest import bearer, lastfm_params
from tunegate.emulator import Emulator

# Fields the current Spotify API returns that the 2018 recordings predate.
SPOTIFY_NEWER = frozenset({"is_local", "release_date", "release_date_precision", "total_tracks"})


def load(shared: Path, name: str) -> Any:
    return json.loads((shared / name).read_text(encoding="utf-8"))


@pytest.fixture
def emu() -> Any:
    with Emulator(rate_limits=False, spotify_batch_tracks=True, spotify_search_limit_max=50) as e:
        yield e


def test_helper_reports_differences() -> None:
    """The shape helper notices a missing key, a wrong type and an unexpected key."""
    problems = shape_differences({"a": "1", "c": 2}, {"a": 1, "b": 2})
    assert any("$.a" in p for p in problems)
    assert any("$.b: missing" in p for p in problems)
    assert any("$.c" in p for p in problems)
    assert not shape_differences({"a": [{"x": 1}]}, {"a": [{"x": 5}]})


def test_spotify_token_and_its_error(emu: Emulator, shared_fixtures: Path) -> None:
    """Token success and invalid_client bodies match the recorded ones."""
    ok = httpx.post(
        emu.urls.spotify_token,
        auth=("tunegate-test-id", "tunegate-test-secret"),
        data={"grant_type": "client_credentials"},
    )
    assert_same_shape(ok.json(), load(shared_fixtures, "spotify/token_client_credentials.json"))
    bad = httpx.post(
        emu.urls.spotify_token, auth=("nobody", "x"), data={"grant_type": "client_credentials"}
    )
    assert bad.status_code == 400
    real = load(shared_fixtures, "spotify/token_error_invalid_client.json")
    assert bad.json() == real  # same text too: {"error": "invalid_client", ...}


def test_spotify_track_artist_and_batch(emu: Emulator, shared_fixtures: Path) -> None:
    """GET /v1/tracks/{id}, /v1/artists/{id} and the batch form (with a null) match."""
    headers = bearer(emu)
    track = httpx.get(f"{emu.urls.spotify}/tracks/3n3Ppam7vgaVa1iaRUc9Lp", headers=headers).json()
    assert_same_shape(
        track, load(shared_fixtures, "spotify/get_track.json"), allow_extra=SPOTIFY_NEWER
    )
    artist_id = track["artists"][0]["id"]
    artist = httpx.get(f"{emu.urls.spotify}/artists/{artist_id}", headers=headers).json()
    assert_same_shape(artist, load(shared_fixtures, "spotify/get_artist.json"))
    ids = "3n3Ppam7vgaVa1iaRUc9Lp,0eGsygTp906u18L0Oimnem"
    several = httpx.get(f"{emu.urls.spotify}/tracks", params={"ids": ids}, headers=headers).json()
    assert_same_shape(
        several, load(shared_fixtures, "spotify/get_several_tracks.json"), allow_extra=SPOTIFY_NEWER
    )
    with_null = httpx.get(
        f"{emu.urls.spotify}/tracks",
        params={"ids": "0eGsygTp906u18L0Oimnem,0eGsygTp906u18L0Oimnex"},
        headers=headers,
    ).json()
    real = load(shared_fixtures, "spotify/get_several_tracks_with_unknown_id_null.json")
    assert with_null["tracks"][1] is None
    assert real["tracks"][1] is None
    # The 2015 recording predates album.artists too.
    assert_same_shape(with_null, real, allow_extra=SPOTIFY_NEWER | {"artists"})


def test_spotify_search_pages(emu: Emulator, shared_fixtures: Path) -> None:
    """Track and artist search paging objects and items match the recordings."""
    headers = bearer(emu)
    tracks = httpx.get(
        f"{emu.urls.spotify}/search",
        params={"q": "Muse", "type": "track", "market": "US", "offset": 0, "limit": 10},
        headers=headers,
    ).json()
    assert tracks["tracks"]["items"], "Muse has tracks in every catalogue"
    real = load(shared_fixtures, "spotify/search_type_track_q_Muse_market_US_limit10_offset5.json")
    assert_same_shape(tracks, real, allow_extra=SPOTIFY_NEWER)
    artists = httpx.get(
        f"{emu.urls.spotify}/search", params={"q": "U2", "type": "artist"}, headers=headers
    ).json()
    assert_same_shape(artists, load(shared_fixtures, "spotify/search_type_artist_q_U2.json"))


def test_musicbrainz_artist_search_and_recording_lookup(
    emu: Emulator, http: httpx.Client, shared_fixtures: Path
) -> None:
    """MusicBrainz artist search and recording lookup JSON match the recordings."""
    mb = emu.urls.musicbrainz
    search = http.get(f"{mb}/artist", params={"query": "muse", "fmt": "json"}).json()
    assert_same_shape(
        search,
        load(shared_fixtures, "musicbrainz/search_artist.json"),
        # koel redacted "tags"; begin-area is optional in MusicBrainz (absent when unknown).
        ignore=frozenset({"tags", "begin-area"}),
        allow_extra=frozenset({"end", "iso-3166-1-codes"}),
    )
    rec = http.get(
        f"{mb}/recording/cb2cc207-8125-445c-9ef9-6ea44eee959a",
        params={"fmt": "json", "inc": "artist-credits isrcs tags aliases work-rels"},
    ).json()
    real = load(shared_fixtures, "musicbrainz/recording_lookup_with_isrcs_and_rels.json")
    assert_same_shape(rec, real, allow_extra=frozenset({"type", "type-id"}))


def _paths(element: ET.Element, prefix: str = "") -> set[str]:
    tag = element.tag.split("}")[-1]
    here = f"{prefix}/{tag}"
    out = {here} | {f"{here}@{a.split('}')[-1]}" for a in element.attrib}
    for child in element:
        out |= _paths(child, here)
    return out


def test_musicbrainz_search_xml(emu: Emulator, http: httpx.Client, shared_fixtures: Path) -> None:
    """Recording search XML has every element and attribute path of musicbrainzngs' capture."""
    real = _paths(
        ET.fromstring((shared_fixtures / "musicbrainz/search_recording.xml").read_bytes())
    )
    body = http.get(f"{emu.urls.musicbrainz}/recording", params={"query": "golden"}).content
    ours = _paths(ET.fromstring(body))
    assert not real - ours, sorted(real - ours)


LASTFM_CASES = [
    (
        "track.getTopTags.json",
        {"method": "track.getTopTags", "artist": "AC/DC", "track": "Hells Bells"},
    ),
    (
        "track.getTopTags_no_tags.json",
        {"method": "track.getTopTags", "artist": "Metallica", "track": "Hells Bells"},
    ),
    ("artist.getTopTags.json", {"method": "artist.getTopTags", "artist": "Audioslave"}),
    (
        "track.getInfo.json",
        {"method": "track.getInfo", "artist": "Linkin Park", "track": "One Step Closer"},
    ),
    (
        "track.getCorrection.json",
        {"method": "track.getCorrection", "artist": "Skee-Lo", "track": "I Wish"},
    ),
    ("artist.getInfo.json", {"method": "artist.getInfo", "artist": "U2"}),
    (
        "error_6_artist_not_found.json",
        {"method": "artist.getTopTags", "artist": "No Such Artist Xyz"},
    ),
    ("error_3_invalid_method.json", {"method": "artist.getNothing", "artist": "U2"}),
]


@pytest.mark.parametrize(("fixture", "params"), LASTFM_CASES, ids=[c[0] for c in LASTFM_CASES])
def test_lastfm_json(
    emu: Emulator, shared_fixtures: Path, fixture: str, params: dict[str, str]
) -> None:
    """Last.fm JSON answers keep the real quirks: @attr, #text, strings, bare objects."""
    body = httpx.get(emu.urls.lastfm, params=lastfm_params(format="json", **params)).json()
    real = load(shared_fixtures, f"lastfm/{fixture}")
    assert_same_shape(body, real)
    if fixture.startswith("error"):
        assert body == real or body["error"] == real["error"]


def _cassette_body(path: Path) -> bytes:
    """The first response body of a VCR cassette. A tiny reader of its YAML scalar (no PyYAML
    dependency): line folding only changes whitespace, which element paths ignore."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(n for n, line in enumerate(lines) if line.strip().startswith("string:"))
    first = lines[start].split("string:", 1)[1].strip()
    quote = first[0]
    chunks = [first[1:]]
    for line in lines[start + 1 :]:
        stripped = line.strip()
        chunks.append(stripped)
        if stripped.endswith(quote) and not stripped.endswith("\\" + quote):
            break
    raw = " ".join(chunks).rstrip()[:-1]
    if quote == "'":
        raw = raw.replace("''", "'")
    else:
        raw = raw.replace('\\"', '"').replace("\\n", "\n").replace("\\ ", " ")
    return raw.strip().encode("utf-8")


@pytest.mark.parametrize(
    ("cassette", "params"),
    [
        (
            "cassette_track.getInfo_xml.yaml",
            {"method": "track.getInfo", "artist": "Daft Punk", "track": "Something About Us"},
        ),
        (
            "cassette_track.getCorrection_xml.yaml",
            {"method": "track.getCorrection", "artist": "Guns N' Roses", "track": "mrbrownstone"},
        ),
    ],
)
def test_lastfm_xml(
    emu: Emulator, shared_fixtures: Path, cassette: str, params: dict[str, str]
) -> None:
    """Last.fm XML has every element and attribute path of pylast's recorded cassettes."""
    real = _paths(ET.fromstring(_cassette_body(shared_fixtures / f"lastfm/{cassette}")))
    body = httpx.post(emu.urls.lastfm, data=lastfm_params(**params)).content
    ours = _paths(ET.fromstring(body))
    # userplaycount/userloved only come with a username parameter.
    missing = {p for p in real - ours if "userplaycount" not in p and "userloved" not in p}
    assert not missing, sorted(missing)
