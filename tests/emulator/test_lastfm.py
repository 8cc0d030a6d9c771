"""Last.fm: the six methods in JSON and XML, the XML-to-JSON quirks, errors and statuses."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx
import pytest

from tests.emulator.conftest import lastfm_params
from tunegate.emulator import SUSPENDED_LASTFM_KEY, Emulator


def call(emu: Emulator, **params: str) -> httpx.Response:
    return httpx.get(emu.urls.lastfm, params=lastfm_params(format="json", **params))


def test_quirks_strings_attr_text_and_collapsed_lists(quiet_emulator: Emulator) -> None:
    """Numbers are strings, @attr/#text keys appear, a one-tag list is a bare object."""
    info = call(
        quiet_emulator, method="track.getInfo", artist="Daft Punk", track="Something About Us"
    ).json()["track"]
    assert info["duration"] == "232000"
    assert isinstance(info["listeners"], str)
    assert info["streamable"] == {"#text": "0", "fulltrack": "0"}
    assert info["album"]["@attr"] == {"position": "13"}
    one = call(quiet_emulator, method="track.getTopTags", artist="Skee-Lo", track="I Wish").json()
    assert one["toptags"]["tag"] == {
        "count": 100,
        "name": "hip-hop",
        "url": "https://www.last.fm/tag/hip-hop",
    }
    assert one["toptags"]["@attr"] == {"artist": "Skee-Lo", "track": "I Wish"}
    many = call(
        quiet_emulator, method="track.getTopTags", artist="AC/DC", track="Hells Bells"
    ).json()
    assert [t["count"] for t in many["toptags"]["tag"]][:3] == [100, 58, 53]


def test_unknown_things_and_their_statuses(quiet_emulator: Emulator) -> None:
    """Unknown track on getTopTags: 200 with []; unknown artist: error 6 (200 or 404)."""
    empty = call(quiet_emulator, method="track.getTopTags", artist="Metallica", track="Hells Bells")
    assert empty.status_code == 200
    assert empty.json()["toptags"]["tag"] == []
    tags = call(quiet_emulator, method="artist.getTopTags", artist="No Such Artist Xyz")
    assert tags.status_code == 200
    assert tags.json() == {
        "error": 6,
        "message": "The artist you supplied could not be found",
        "links": [],
    }
    info = call(quiet_emulator, method="artist.getInfo", artist="No Such Artist Xyz")
    assert info.status_code == 404
    assert info.json()["error"] == 6
    track = call(quiet_emulator, method="track.getInfo", artist="Muse", track="No Such Song")
    assert track.status_code == 404
    assert track.json()["message"] == "Track not found"
    method = call(quiet_emulator, method="track.getNothing")
    assert method.status_code == 400
    assert method.json()["error"] == 3
    params = call(quiet_emulator, method="track.getInfo", artist="Muse")
    assert params.status_code == 400
    assert params.json()["error"] == 6


@pytest.mark.parametrize(("key", "code"), [("", 10), ("not-a-key", 10), (SUSPENDED_LASTFM_KEY, 26)])
def test_api_key_errors(emulator: Emulator, key: str, code: int) -> None:
    """Unknown keys are error 10, suspended keys error 26, both with HTTP 403."""
    r = httpx.get(
        emulator.urls.lastfm,
        params={"method": "artist.getInfo", "artist": "U2", "api_key": key, "format": "json"},
    )
    assert r.status_code == 403
    assert r.json()["error"] == code


def test_autocorrect_and_correction(quiet_emulator: Emulator) -> None:
    """autocorrect=1 matches accent/case/"The" variants; getCorrection names the real track."""
    assert (
        call(quiet_emulator, method="track.getInfo", artist="bjork", track="joga").status_code
        == 404
    )
    fixed = call(
        quiet_emulator, method="track.getInfo", artist="bjork", track="JOGA", autocorrect="1"
    )
    assert fixed.json()["track"]["name"] == "Jóga"
    killers = call(
        quiet_emulator,
        method="track.getInfo",
        artist="Killers",
        track="mr brightside",
        autocorrect="1",
    )
    assert killers.json()["track"]["artist"]["name"] == "The Killers"
    corr = call(
        quiet_emulator, method="track.getCorrection", artist="guns n' roses", track="mrbrownstone"
    ).json()
    c = corr["corrections"]["correction"]
    assert c["track"]["name"] == "Mr. Brownstone"
    assert c["@attr"]["trackcorrected"] == "1"
    guest = call(
        quiet_emulator,
        method="track.getInfo",
        artist="Daft Punk",
        track="Get Lucky",
        autocorrect="1",
    )
    assert guest.json()["track"]["name"] == "Get Lucky (feat. Pharrell Williams & Nile Rodgers)"


def test_search_paging_and_xml(quiet_emulator: Emulator) -> None:
    """track.search pages by listeners; XML is the default format, POST works as pylast sends."""
    page = call(quiet_emulator, method="track.search", track="golden", limit="5", page="2").json()[
        "results"
    ]
    assert page["opensearch:startIndex"] == "5"
    assert page["opensearch:itemsPerPage"] == "5"
    listeners = [int(t["listeners"]) for t in page["trackmatches"]["track"]]
    assert listeners == sorted(listeners, reverse=True)
    r = httpx.post(
        quiet_emulator.urls.lastfm, data=lastfm_params(method="artist.getInfo", artist="U2")
    )
    assert r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(r.content)
    assert root.get("status") == "ok"
    assert root.findtext("artist/name") == "U2"
    err = httpx.post(
        quiet_emulator.urls.lastfm,
        data=lastfm_params(method="artist.getInfo", artist="No Such Artist Xyz"),
    )
    root = ET.fromstring(err.content)
    assert root.get("status") == "failed"
    error = root.find("error")
    assert error is not None
    assert error.get("code") == "6"
