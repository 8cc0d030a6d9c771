"""MusicBrainz: requests, Lucene escaping, inc rules, parsers on recorded answers, errors."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunegate.emulator import lucene
from tunegate.exceptions import (
    AuthenticationError,
    ConfigurationError,
    InvalidInput,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from tunegate.providers import musicbrainz as mb
from tunegate.providers.types import MusicBrainzRecording

MBID = "cb2cc207-8125-445c-9ef9-6ea44eee959a"
SPECIALS = '+-&|!(){}[]^"~*?:\\/'


# --- Lucene ---------------------------------------------------------------------------------


@given(st.text(max_size=100))
@settings(max_examples=300, deadline=None)
def test_lucene_phrase_reads_back_as_the_text(text: str) -> None:
    """A Lucene query parser (the emulator's) reads the escaped phrase back as exactly the
    user's text, in one field."""
    query = f"recording:{mb.lucene_phrase(text)}"
    assert lucene.parse(query) == lucene.Term("recording", text, phrase=True)


@given(st.text(alphabet=st.sampled_from([*list(SPECIALS), "a", " ", "é", "\\"]), max_size=60))
@settings(max_examples=300, deadline=None)
def test_no_special_character_left_bare(text: str) -> None:
    """After escaping, every special character is preceded by a backslash, so a phrase can
    only end at the quote we add."""
    escaped = mb.lucene_escape(text)
    i = 0
    while i < len(escaped):
        if escaped[i] == "\\":
            assert i + 1 < len(escaped)
            assert escaped[i + 1] in SPECIALS
            i += 2
            continue
        assert escaped[i] not in SPECIALS
        i += 1
    phrase = mb.lucene_phrase(text)
    assert re.fullmatch(r'"(?:[^"\\]|\\.)*"', phrase, re.DOTALL)


def test_search_request_query() -> None:
    """Title and artist become escaped phrases joined by AND."""
    req = mb.search_recording_request("AC/DC", 'Hells "Bells" (Live)')
    q = dict(req.params)["query"]
    assert q == 'recording:"Hells \\"Bells\\" \\(Live\\)" AND artist:"AC\\/DC"'
    assert dict(req.params)["fmt"] == "json"
    assert dict(req.params)["limit"] == "10"
    assert (req.cache_kind, req.cache_parts) == (
        "musicbrainz:search",
        ("AC/DC", 'Hells "Bells" (Live)'),
    )
    assert req.path == req.endpoint_template == "/ws/2/recording"
    assert mb.search_recording_request("a", "b", limit=100).cache_parts == ("a", "b", "limit=100")
    with pytest.raises(InvalidInput) as info:
        mb.search_recording_request("a", "b", limit=101)
    assert info.value.field == "limit"
    with pytest.raises(InvalidInput) as info:
        mb.search_recording_request("a", " ")
    assert info.value.field == "title"


# --- ISRC and recording lookups, inc rules --------------------------------------------------


def test_isrc_request() -> None:
    """ISRC lookups are normalised, fmt=json, keyed as the design says."""
    req = mb.lookup_isrc_request("usir2-04-00500")
    assert req.path == "/ws/2/isrc/USIR20400500"
    assert req.endpoint_template == "/ws/2/isrc/{isrc}"
    assert dict(req.params) == {"fmt": "json", "inc": "artist-credits"}
    assert (req.cache_kind, req.cache_parts) == ("musicbrainz:isrc", ("USIR20400500",))
    other = mb.lookup_isrc_request("USIR20400500", inc="tags+artist-credits isrcs")
    assert dict(other.params)["inc"] == "artist-credits isrcs tags"
    assert other.cache_parts == ("USIR20400500", "inc=artist-credits+isrcs+tags")
    assert "inc" not in dict(mb.lookup_isrc_request("USIR20400500", inc=()).params)


@pytest.mark.parametrize(
    "inc", ["genres", ["artist-credits", "genres"], "releases", "user-tags", "bogus", [3]]
)
def test_isrc_inc_refused(inc: Any) -> None:
    """genres (a 400 there), releases (ignored there), login-only and unknown incs are refused."""
    with pytest.raises(InvalidInput) as info:
        mb.lookup_isrc_request("USIR20400500", inc=inc)
    assert info.value.field == "inc"


def test_recording_request() -> None:
    """Recording lookups validate the MBID and the inc list."""
    req = mb.get_recording_request(MBID.upper())
    assert req.path == f"/ws/2/recording/{MBID}"
    assert req.endpoint_template == "/ws/2/recording/{mbid}"
    assert dict(req.params) == {"fmt": "json", "inc": "artist-credits genres isrcs tags"}
    assert (req.cache_kind, req.cache_parts) == ("musicbrainz:recording", (MBID,))
    rels = mb.get_recording_request(MBID, inc=["releases", "work-rels", "release-groups"])
    assert rels.cache_parts == (MBID, "inc=release-groups+releases+work-rels")
    with pytest.raises(InvalidInput) as info:
        mb.get_recording_request(MBID, inc="user-ratings")
    assert info.value.field == "inc"
    with pytest.raises(InvalidInput) as info:
        mb.get_recording_request("not-an-mbid")
    assert info.value.field == "mbid"


# --- the official rate rule -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "rate", "allow_fast", "ok"),
    [
        ("https://musicbrainz.org", 1.0, False, True),
        ("https://musicbrainz.org", 0.5, False, True),
        ("https://musicbrainz.org/", 1.5, False, False),
        ("https://beta.musicbrainz.org", 2.0, False, False),
        ("musicbrainz.org", 2.0, False, False),
        ("https://MusicBrainz.org:443", 2.0, False, False),
        ("https://musicbrainz.org", 5.0, True, True),
        ("http://127.0.0.1:5000", 50.0, False, True),
        ("https://mb.example.com", 100.0, False, True),
        ("https://notmusicbrainz.org", 10.0, False, True),
        ("https://musicbrainz.org.evil.example", 10.0, False, True),
    ],
)
def test_check_rate(base_url: str, rate: float, allow_fast: bool, ok: bool) -> None:
    """Over 1/s needs an override on the official host only; mirrors are free."""
    if ok:
        mb.check_rate(base_url, rate, allow_fast=allow_fast)
    else:
        with pytest.raises(ConfigurationError, match="allow_fast"):
            mb.check_rate(base_url, rate, allow_fast=allow_fast)


@pytest.mark.parametrize(
    ("base_url", "capacity", "allow_fast", "ok"),
    [
        ("https://musicbrainz.org", 1, False, True),
        ("https://musicbrainz.org", 2, False, False),
        ("https://musicbrainz.org", 10, False, False),
        ("https://beta.musicbrainz.org", 30, False, False),
        ("https://musicbrainz.org", 10, True, True),
        ("http://127.0.0.1:5000", 50, False, True),
    ],
)
def test_check_rate_refuses_bursts(
    base_url: str, capacity: int, allow_fast: bool, ok: bool
) -> None:
    """At 1/s, a bucket of capacity above 1 still bursts past the official limit: refused
    on the official host unless allow_fast; mirrors are free."""
    if ok:
        mb.check_rate(base_url, 1.0, allow_fast, capacity=capacity)
    else:
        with pytest.raises(ConfigurationError, match=r"capacity .*allow_fast"):
            mb.check_rate(base_url, 1.0, allow_fast, capacity=capacity)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_check_rate_refuses_nonsense(rate: float) -> None:
    """A rate must be a positive finite number anywhere."""
    with pytest.raises(ConfigurationError):
        mb.check_rate("http://127.0.0.1:5000", rate)


# --- parsers --------------------------------------------------------------------------------


def rec(rid: str, **extra: Any) -> MusicBrainzRecording:
    """A minimal recording."""
    return {"id": rid, "title": "T", **extra}  # type: ignore[typeddict-item]


def test_parse_isrc_and_pick() -> None:
    """An ISRC answer (shape from musicbrainz-server's tests) yields every recording; the
    pick prefers a non-video with the earliest first release, undated last."""
    body = {
        "isrc": "GBAAA9900303",
        "recordings": [
            {
                "id": "late",
                "title": "Hey Boy Hey Girl",
                "length": 289946,
                "disambiguation": "",
                "video": False,
                "first-release-date": "2005-01-01",
            },
            {
                "id": "video",
                "title": "Hey Boy Hey Girl",
                "video": True,
                "first-release-date": "1999-01-01",
            },
            {"id": "undated", "title": "Hey Boy Hey Girl", "video": False},
            {
                "id": "first",
                "title": "Hey Boy Hey Girl",
                "video": False,
                "first-release-date": "1999-06-21",
            },
        ],
    }
    recordings = mb.parse_isrc(body)
    assert [r["id"] for r in recordings] == ["late", "video", "undated", "first"]
    picked = mb.pick_isrc_recording(recordings)
    assert picked is not None
    assert picked["id"] == "first"
    assert mb.pick_isrc_recording([]) is None
    assert mb.pick_isrc_recording([rec("a"), rec("b")])["id"] == "a"  # type: ignore[index]
    assert mb.pick_isrc_recording([rec("v", video=True)])["id"] == "v"  # type: ignore[index]


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"recordings": {}},
        {"recordings": [{"id": "x"}]},
        {"recordings": [{"title": "x"}]},
        {"recordings": ["x"]},
    ],
)
def test_malformed_recording_lists(body: Any) -> None:
    """Wrong shapes are MalformedResponse."""
    with pytest.raises(MalformedResponse):
        mb.parse_isrc(body)
    with pytest.raises(MalformedResponse):
        mb.parse_search_recordings(body)


def check_recording_lookup(d: Path) -> None:
    body = json.loads(
        (d / "musicbrainz" / "recording_lookup_with_isrcs_and_rels.json").read_text("utf-8")
    )
    recording = mb.parse_recording(body)
    assert recording["id"] == MBID
    assert recording["title"] == "Thinking Out Loud"
    assert recording["length"] == 281000
    assert recording["isrcs"] == ["GBAHS1400099"]
    assert recording["first-release-date"] == "2014-06-20"
    assert recording["artist-credit"][0]["artist"]["sort-name"] == "Sheeran, Ed"
    assert mb.credited_artist(recording) == "Ed Sheeran"
    assert [r["type"] for r in recording["relations"]][:2] == ["DJ-mix", "performance"]


def check_artist_search(d: Path) -> None:
    body = json.loads((d / "musicbrainz" / "search_artist.json").read_text("utf-8"))
    # An artist search is not a recording search: refused, not misread.
    with pytest.raises(MalformedResponse):
        mb.parse_search_recordings(body)
    assert body["artists"][0]["score"] == 100


NS = {"mb": "http://musicbrainz.org/ns/mmd-2.0#", "ext": "http://musicbrainz.org/ns/ext#-2.0"}


def xml_search_as_json(path: Path) -> dict[str, Any]:
    """The MMD-2 XML search answer rebuilt in the WS/2 JSON shape (clients use JSON; this is
    the only real recording-search capture there is)."""
    root = ET.parse(path).getroot()
    listing = root.find("mb:recording-list", NS)
    assert listing is not None
    recordings = []
    for node in listing.findall("mb:recording", NS):
        credits = [
            {
                "name": artist.findtext("mb:name", "", NS),
                "joinphrase": credit.get("joinphrase", ""),
                "artist": {"id": artist.get("id", ""), "name": artist.findtext("mb:name", "", NS)},
            }
            for credit in node.findall("mb:artist-credit/mb:name-credit", NS)
            for artist in credit.findall("mb:artist", NS)
        ]
        length = node.findtext("mb:length", None, NS)
        recordings.append(
            {
                "id": node.get("id"),
                "score": int(node.get(f"{{{NS['ext']}}}score", "0")),
                "title": node.findtext("mb:title", "", NS),
                "length": int(length) if length else None,
                "artist-credit": credits,
            }
        )
    return {"count": int(listing.get("count", "0")), "offset": 0, "recordings": recordings}


def check_recording_search_xml(d: Path) -> None:
    body = xml_search_as_json(d / "musicbrainz" / "search_recording.xml")
    hits = mb.parse_search_recordings(body)
    assert len(hits) == len(body["recordings"]) > 1
    assert hits[0]["score"] == 100
    best = mb.best_recording(hits, "Dynamo Go", "Thief of Hearts")
    assert best is not None
    assert best["id"] == "cb4d4d70-930c-4d1a-a157-776de18be66a"
    other = mb.best_recording(hits, "dynamo go", "Waiting my turn")
    assert other is not None
    assert other["id"] == "ac78e2cd-720c-48be-b79f-d6d6ed5a05c4"
    assert mb.best_recording(hits, "Metallica", "Thief of Hearts") is None


CHECKS = {
    "recording_lookup_with_isrcs_and_rels.json": check_recording_lookup,
    "search_artist.json": check_artist_search,
    "search_recording.xml": check_recording_search_xml,
}


def test_every_recorded_musicbrainz_answer_has_a_check(shared_fixtures: Path) -> None:
    """A newly recorded answer fails here until a parser check covers it."""
    assert sorted(p.name for p in (shared_fixtures / "musicbrainz").iterdir()) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_recorded_answer_parses(shared_fixtures: Path, name: str) -> None:
    """Each recorded real answer is read correctly."""
    CHECKS[name](shared_fixtures)


# --- errors ---------------------------------------------------------------------------------

HELP = "For usage, please see: https://musicbrainz.org/development/mmd"


def mb_error(text: str) -> bytes:
    """A WS/2 JSON error body."""
    return json.dumps({"error": text, "help": HELP}).encode()


PER_IP = (
    "Your requests are exceeding the allowable rate limit. Please see "
    "http://wiki.musicbrainz.org/XMLWebService for more information."
)
BUSY = "The MusicBrainz web server is currently busy. Please try again later."
NO_UA = (
    "Your requests are being throttled by MusicBrainz because the application you are "
    "using has not identified itself. Please update your application, and see "
    "http://musicbrainz.org/doc/XML_Web_Service/Rate_Limiting for more information."
)


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "code", "retry_after"),
    [
        (503, mb_error(PER_IP), {}, RateLimited, "ip_rate_limit", 1.0),
        (503, PER_IP.encode(), {"Retry-After": "3"}, RateLimited, "ip_rate_limit", 3.0),
        (503, mb_error(BUSY), {"Retry-After": "0"}, RateLimited, "server_busy", 1.0),
        (
            503,
            f"<html><body><p>{BUSY}</p></body></html>".encode(),
            {},
            RateLimited,
            "server_busy",
            1.0,
        ),
        (503, mb_error(NO_UA), {}, RateLimited, "user_agent_throttled", 1.0),
        (503, b"<html>maintenance</html>", {}, ProviderUnavailable, None, None),
        (502, b"Bad Gateway", {}, ProviderUnavailable, None, None),
        (500, mb_error("Internal server error"), {}, ProviderUnavailable, None, None),
        (404, mb_error("Not Found"), {}, NotFound, None, None),
        (400, mb_error("Invalid mbid."), {}, ProviderError, "bad_request", None),
        (
            400,
            mb_error("genres is not a valid inc parameter for the isrc resource."),
            {},
            ProviderError,
            "bad_request",
            None,
        ),
        (403, mb_error(NO_UA), {}, AuthenticationError, "user_agent_rejected", None),
        (401, mb_error("Authorization required"), {}, AuthenticationError, None, None),
        (429, b"", {"Retry-After": "5"}, RateLimited, None, 5.0),
    ],
)
def test_error_classification(
    status: int,
    body: bytes,
    headers: dict[str, str],
    cls: type[ProviderError],
    code: Any,
    retry_after: Any,
) -> None:
    """Throttling 503s are RateLimited with at least 1 s; other failures map by status."""
    err = mb.classify_response(status, body, headers, endpoint="/ws/2/isrc/{isrc}")
    assert type(err) is cls
    assert err.code == code
    assert err.retry_after == retry_after
    assert err.provider == "musicbrainz"
    assert err.endpoint == "/ws/2/isrc/{isrc}"


def test_403_explains_the_user_agent() -> None:
    """The 403 error tells the user what to send."""
    err = mb.classify_error(403, b"", {})
    assert "AppName/1.0" in str(err)


def test_success_is_not_an_error() -> None:
    """2xx answers classify as None."""
    assert mb.classify_response(200, b"{}", {}) is None
