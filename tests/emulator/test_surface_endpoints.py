"""The two endpoints the design's surface needs: MusicBrainz ``/ws/2/release/{mbid}`` and
Last.fm ``artist.getSimilar``, their answers, errors, and shapes beside real recordings
(those parts skip where ../shared/fixtures/real is absent)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator._shape import assert_same_shape
from tests.emulator.conftest import lastfm_params
from tunegate.emulator import Emulator

ED_SHEERAN_RECORDING = "cb2cc207-8125-445c-9ef9-6ea44eee959a"  # in the recorded fixture too


def release_id(http: httpx.Client, emu: Emulator, recording: str) -> str:
    rec = http.get(
        f"{emu.urls.musicbrainz}/recording/{recording}", params={"fmt": "json", "inc": "releases"}
    ).json()
    return str(rec["releases"][0]["id"])


def similar(emu: Emulator, **params: str) -> httpx.Response:
    return httpx.get(
        emu.urls.lastfm,
        params=lastfm_params(method="artist.getSimilar", format="json", **params),
        timeout=10,
    )


# -- /ws/2/release/{mbid} ----------------------------------------------------------------------


def test_release_lookup_fields_and_incs(quiet_emulator: Emulator, http: httpx.Client) -> None:
    emu = quiet_emulator
    rid = release_id(http, emu, ED_SHEERAN_RECORDING)
    base = http.get(f"{emu.urls.musicbrainz}/release/{rid}", params={"fmt": "json"})
    assert base.status_code == 200
    body = base.json()
    # The fields every lookup has (musicbrainz-server's LookupRelease.pm tests).
    for key in (
        "id",
        "title",
        "status",
        "quality",
        "text-representation",
        "cover-art-archive",
        "date",
        "country",
        "release-events",
        "barcode",
        "asin",
        "disambiguation",
        "packaging",
    ):
        assert key in body, key
    assert body["id"] == rid
    for key in ("media", "artist-credit", "release-group", "label-info"):
        assert key not in body, key  # only with their inc
    full = http.get(
        f"{emu.urls.musicbrainz}/release/{rid}",
        params={"fmt": "json", "inc": "artist-credits recordings release-groups labels isrcs"},
    ).json()
    medium = full["media"][0]
    assert medium["position"] == 1
    assert medium["track-offset"] == 0
    assert medium["track-count"] == len(medium["tracks"])
    positions = [t["position"] for t in medium["tracks"]]
    assert positions == sorted(positions)
    recordings = {t["recording"]["id"]: t["recording"] for t in medium["tracks"]}
    assert ED_SHEERAN_RECORDING in recordings
    assert recordings[ED_SHEERAN_RECORDING]["isrcs"]
    assert full["artist-credit"][0]["name"] == "Ed Sheeran"
    assert full["release-group"]["title"]
    assert full["label-info"] == []
    only_media = http.get(
        f"{emu.urls.musicbrainz}/release/{rid}", params={"fmt": "json", "inc": "media"}
    ).json()
    assert "tracks" not in only_media["media"][0]


def test_release_lookup_errors(quiet_emulator: Emulator, http: httpx.Client) -> None:
    mb = quiet_emulator.urls.musicbrainz
    rid = release_id(http, quiet_emulator, ED_SHEERAN_RECORDING)
    bad_inc = http.get(f"{mb}/release/{rid}", params={"fmt": "json", "inc": "ratings"})
    assert bad_inc.status_code == 400
    assert (
        bad_inc.json()["error"] == "ratings is not a valid inc parameter for the release resource."
    )
    assert http.get(f"{mb}/release/not-a-uuid", params={"fmt": "json"}).status_code == 400
    unknown = http.get(f"{mb}/release/00000000-0000-0000-0000-000000000000", params={"fmt": "json"})
    assert unknown.status_code == 404
    # A recording's MBID is no release's.
    assert (
        http.get(f"{mb}/release/{ED_SHEERAN_RECORDING}", params={"fmt": "json"}).status_code == 404
    )


def test_release_shapes_match_the_recorded_recording(
    quiet_emulator: Emulator, http: httpx.Client, shared_fixtures: Path
) -> None:
    """A release's artist credit and its tracks' recordings have the keys and types of the
    recorded recording lookup (less what only a top-level recording carries)."""
    real = json.loads(
        (shared_fixtures / "musicbrainz/recording_lookup_with_isrcs_and_rels.json").read_text(
            encoding="utf-8"
        )
    )
    rid = release_id(http, quiet_emulator, ED_SHEERAN_RECORDING)
    full = http.get(
        f"{quiet_emulator.urls.musicbrainz}/release/{rid}",
        params={"fmt": "json", "inc": "artist-credits recordings isrcs"},
    ).json()
    assert_same_shape(
        full["artist-credit"][0],
        real["artist-credit"][0],
        ignore=frozenset({"tags"}),
        allow_extra=frozenset({"type", "type-id"}),
    )
    track = next(
        t for t in full["media"][0]["tracks"] if t["recording"]["id"] == ED_SHEERAN_RECORDING
    )
    assert_same_shape(
        track["recording"],
        real,
        # Top-level only (or asked by incs a release's recordings do not take).
        ignore=frozenset({"first-release-date", "aliases", "relations", "tags"}),
        allow_extra=frozenset({"type", "type-id"}),
    )


# -- artist.getSimilar -------------------------------------------------------------------------


def test_artist_get_similar_json(quiet_emulator: Emulator) -> None:
    body = similar(quiet_emulator, artist="Daft Punk", limit="4").json()
    block = body["similarartists"]
    assert block["@attr"] == {"artist": "Daft Punk"}
    items: list[dict[str, Any]] = block["artist"]
    assert len(items) == 4
    for item in items:
        assert set(item) == {"name", "mbid", "match", "url", "image", "streamable"}
        assert isinstance(item["match"], str)  # a string, as Last.fm sends it
        assert item["streamable"] == "0"
        assert [i["size"] for i in item["image"]] == [
            "small",
            "medium",
            "large",
            "extralarge",
            "mega",
            "",
        ]
    assert items[0]["match"] == "1"
    scores = [float(i["match"]) for i in items]
    assert scores == sorted(scores, reverse=True)
    assert all(len(i["match"].split(".")[-1]) <= 6 for i in items[1:])


def test_artist_get_similar_collapses_one_and_defaults_to_a_hundred(
    quiet_emulator: Emulator,
) -> None:
    one = similar(quiet_emulator, artist="Daft Punk", limit="1").json()
    assert isinstance(one["similarartists"]["artist"], dict)  # the XML-to-JSON quirk
    many = similar(quiet_emulator, artist="Daft Punk").json()
    assert len(many["similarartists"]["artist"]) == 100


def test_artist_get_similar_errors(quiet_emulator: Emulator) -> None:
    unknown = similar(quiet_emulator, artist="No Such Artist Xyz")
    assert unknown.status_code == 200  # lastfm-docs: this method reports errors with 200
    assert unknown.json() == {
        "error": 6,
        "message": "The artist you supplied could not be found",
        "links": [],
    }
    missing = httpx.get(
        quiet_emulator.urls.lastfm,
        params=lastfm_params(method="artist.getSimilar", format="json"),
        timeout=10,
    )
    assert missing.status_code == 400
    assert missing.json()["error"] == 6


def test_artist_get_similar_xml(quiet_emulator: Emulator) -> None:
    r = httpx.get(
        quiet_emulator.urls.lastfm,
        params=lastfm_params(method="artist.getSimilar", artist="Daft Punk", limit="3"),
        timeout=10,
    )
    root = ET.fromstring(r.content)
    assert root.get("status") == "ok"
    block = root.find("similarartists")
    assert block is not None
    assert block.get("artist") == "Daft Punk"
    artists = block.findall("artist")
    assert len(artists) == 3
    assert artists[0].findtext("match") == "1"
    assert all(a.findtext("name") and a.findtext("url") for a in artists)


def test_artist_get_similar_images_match_the_recorded_shape(
    quiet_emulator: Emulator, shared_fixtures: Path
) -> None:
    real = json.loads((shared_fixtures / "lastfm/artist.getInfo.json").read_text("utf-8"))
    item = similar(quiet_emulator, artist="Daft Punk", limit="2").json()["similarartists"][
        "artist"
    ][0]
    assert_same_shape(item["image"], real["artist"]["image"])


@pytest.mark.parametrize("method", ["artist.getSimilar", "artist.getsimilar"])
def test_method_names_are_case_insensitive(quiet_emulator: Emulator, method: str) -> None:
    r = httpx.get(
        quiet_emulator.urls.lastfm,
        params=lastfm_params(method=method, artist="Daft Punk", limit="2", format="json"),
        timeout=10,
    )
    assert r.status_code == 200
    assert "similarartists" in r.json()
