"""MusicBrainz: lookups in JSON and XML, the inc rules, errors, User-Agent, search scoring."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from tests.emulator.conftest import MB_AGENT
from tunegate.emulator import Emulator, RateLimit
from tunegate.emulator.musicbrainz import MSG_BUSY

NS = {"mb": "http://musicbrainz.org/ns/mmd-2.0#"}
TOL = "cb2cc207-8125-445c-9ef9-6ea44eee959a"  # Thinking Out Loud


@pytest.fixture
def mb(quiet_emulator: Emulator, http: httpx.Client) -> tuple[str, httpx.Client]:
    return quiet_emulator.urls.musicbrainz, http


def test_isrc_lookup_json_and_inc_rules(mb: tuple[str, httpx.Client]) -> None:
    """/isrc: JSON shape, inc=genres refused with the real message, releases ignored."""
    base, http = mb
    body = http.get(
        f"{base}/isrc/GBAHS1400099", params={"fmt": "json", "inc": "artist-credits+releases"}
    ).json()
    assert body["isrc"] == "GBAHS1400099"
    (rec,) = body["recordings"]
    assert rec["id"] == TOL
    assert rec["length"] == 281000
    assert "releases" not in rec
    assert rec["artist-credit"][0]["artist"]["id"] == "b8a7c51f-362c-4dcb-a259-bc6e0095f0a6"
    bad = http.get(f"{base}/isrc/GBAHS1400099", params={"fmt": "json", "inc": "genres"})
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "genres is not a valid inc parameter for the isrc resource.",
        "help": "For usage, please see: https://musicbrainz.org/development/mmd",
    }
    assert (
        http.get(f"{base}/isrc/NOTANISRC", params={"fmt": "json"}).json()["error"]
        == "Invalid isrc."
    )
    missing = http.get(f"{base}/isrc/GBAAA0000000", params={"fmt": "json"})
    assert missing.status_code == 404
    assert missing.json()["error"] == "Not Found"


def test_recording_lookup_with_all_incs(mb: tuple[str, httpx.Client]) -> None:
    """inc=artist-credits+isrcs+tags+genres gives each part; bad MBIDs are 400, unknown 404."""
    base, http = mb
    rec = http.get(
        f"{base}/recording/{TOL}",
        params={"fmt": "json", "inc": "artist-credits+isrcs+tags+genres+releases"},
    ).json()
    assert rec["isrcs"] == ["GBAHS1400099"]
    assert rec["tags"][0] == {"count": 5, "name": "pop"}
    assert rec["genres"][0]["name"] == "pop"
    assert rec["genres"][0]["count"] == 5
    assert rec["releases"][0]["title"] == "x"
    assert (
        http.get(f"{base}/recording/not-an-mbid", params={"fmt": "json"}).json()["error"]
        == "Invalid mbid."
    )
    unknown = http.get(
        f"{base}/recording/00000000-0000-4000-8000-000000000000", params={"fmt": "json"}
    )
    assert unknown.status_code == 404
    bad_inc = http.get(f"{base}/recording/{TOL}", params={"fmt": "json", "inc": "bogus"})
    assert (
        bad_inc.json()["error"] == "bogus is not a valid inc parameter for the recording resource."
    )


def test_xml_by_default_and_json_by_accept(mb: tuple[str, httpx.Client]) -> None:
    """Without fmt the answer is MMD-2 XML; Accept: application/json selects JSON."""
    base, http = mb
    r = http.get(f"{base}/recording/{TOL}", params={"inc": "isrcs"})
    assert r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert root.find("mb:recording/mb:isrc-list/mb:isrc", NS).get("id") == "GBAHS1400099"  # type: ignore[union-attr]
    err = http.get(f"{base}/recording/nope")
    assert ET.fromstring(err.content).find("text").text == "Invalid mbid."  # type: ignore[union-attr]
    j = http.get(f"{base}/recording/{TOL}", headers={"Accept": "application/json"})
    assert j.json()["title"] == "Thinking Out Loud"


def test_recording_search_lucene_and_scores(mb: tuple[str, httpx.Client]) -> None:
    """Phrases, AND/OR, musicbrainzngs-style escapes and ISRC queries; best hit scores 100."""
    base, http = mb

    def search(query: str, **extra: str) -> dict[str, Any]:
        got: dict[str, Any] = http.get(
            f"{base}/recording", params={"query": query, "fmt": "json", **extra}
        ).json()
        return got

    exact = search('recording:"Thinking Out Loud" AND artist:"Ed Sheeran"')
    assert exact["count"] == 1
    assert exact["recordings"][0]["score"] == 100
    loose = search("recording:(thinking out loud) artist:(ed sheeran)", limit="10")
    scores = [r["score"] for r in loose["recordings"]]
    assert loose["recordings"][0]["title"] == "Thinking Out Loud"
    assert scores[0] == 100
    assert scores == sorted(scores, reverse=True)
    assert loose["count"] > 1
    assert search("isrc:GBAAA9900303")["recordings"][0]["title"] == "Hey Boy Hey Girl"
    assert (
        search(r"recording:(hey boy hey girl) AND artist:(the chemical brothers\!)")["count"] == 1
    )
    assert search("recording:believe AND NOT recording:believe")["count"] == 0
    page = search("golden", limit="3", offset="3")
    assert page["offset"] == 3
    assert len(page["recordings"]) == 3
    assert http.get(f"{base}/recording", params={"fmt": "json"}).status_code == 400
    assert (
        http.get(
            f"{base}/recording", params={"fmt": "json", "query": "x", "limit": "-1"}
        ).status_code
        == 400
    )


def test_artist_search_accents(mb: tuple[str, httpx.Client]) -> None:
    """Artist search folds accents and case, like MusicBrainz's analyser."""
    base, http = mb
    body = http.get(f"{base}/artist", params={"query": "artist:bjork", "fmt": "json"}).json()
    assert body["artists"][0]["name"] == "Björk"
    assert body["artists"][0]["score"] == 100


def test_missing_user_agent_is_refused(emulator: Emulator) -> None:
    """No User-Agent: 403 and MusicBrainz's 'not identified' message (issue 3's rule)."""
    r = httpx.get(
        f"{emulator.urls.musicbrainz}/isrc/GBAHS1400099",
        params={"fmt": "json"},
        headers={"User-Agent": ""},
    )
    assert r.status_code == 403
    assert "has not identified itself" in r.json()["error"]


@pytest.mark.parametrize(
    "agent",
    ["python-httpx/0.28.1", "curl/8.5.0", "Go-http-client/1.1", "python-musicbrainz/0.7.3"],
)
def test_generic_user_agent_meets_the_busy_pool(emulator: Emulator, agent: str) -> None:
    """A bare library's User-Agent: 503 'currently busy', as probes of the real service see."""
    r = httpx.get(
        f"{emulator.urls.musicbrainz}/isrc/GBAHS1400099",
        params={"fmt": "json"},
        headers={"User-Agent": agent},
    )
    assert r.status_code == 503
    assert r.json()["error"] == MSG_BUSY
    assert r.headers["Retry-After"] == "0"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Reset" in r.headers
    xml = httpx.get(f"{emulator.urls.musicbrainz}/isrc/GBAHS1400099", headers={"User-Agent": agent})
    assert xml.status_code == 503
    assert "currently busy" in xml.text


def test_browsers_and_applications_are_served(emulator: Emulator) -> None:
    """A browser's User-Agent (a web app's traffic) and an app's own are both served."""
    emulator.configure(musicbrainz_rate=RateLimit(2, 1.0))
    browser = httpx.get(
        f"{emulator.urls.musicbrainz}/isrc/GBAHS1400099",
        params={"fmt": "json"},
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"},
    )
    assert browser.status_code == 200
    ok = httpx.get(
        f"{emulator.urls.musicbrainz}/isrc/GBAHS1400099",
        params={"fmt": "json"},
        headers={"User-Agent": MB_AGENT},
    )
    assert ok.status_code == 200
    assert ok.headers["X-RateLimit-Limit"] == "2"
