"""Last.fm: requests with a secret key, the JSON quirks, recorded answers, errors in 200s."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tunegate.exceptions import (
    AuthenticationError,
    InvalidInput,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from tunegate.providers import lastfm

KEY = "0123456789abcdef0123456789abcdef"


def load(directory: Path, name: str) -> Any:
    """A recorded body, decoded."""
    return json.loads((directory / "lastfm" / name).read_text(encoding="utf-8"))


# --- requests -------------------------------------------------------------------------------


def test_top_tags_request() -> None:
    """The key is a secret parameter; the cache key is the design's and holds no key."""
    req = lastfm.track_top_tags_request(" Deadmau5 ", "Strobe", api_key=KEY)
    assert req.path == "/2.0/"
    assert req.endpoint_template == "/2.0/?method=track.getTopTags"
    assert dict(req.params) == {
        "method": "track.getTopTags",
        "artist": "Deadmau5",
        "track": "Strobe",
        "autocorrect": "1",
        "api_key": KEY,
        "format": "json",
    }
    assert req.secret_params == {"api_key"}
    assert (req.cache_kind, req.cache_parts) == ("lastfm:track_tags", ("Deadmau5", "Strobe"))
    assert req.not_found_result == "empty"
    assert KEY not in repr(req)
    assert KEY not in str(req.redacted_params())
    assert "api_key" not in dict(req.public_params())
    off = lastfm.track_top_tags_request("a", "b", api_key=KEY, autocorrect=False)
    assert ("autocorrect", "0") in off.params
    assert off.cache_parts == ("a", "b", "autocorrect=0")


@pytest.mark.parametrize(
    ("build", "method", "kind", "parts", "absent"),
    [
        (
            lambda: lastfm.track_top_tags_request("A", "T", api_key=KEY, counts=True),
            "track.getTopTags",
            "lastfm:track_tag_counts",
            ("A", "T"),
            "empty",
        ),
        (
            lambda: lastfm.track_info_request("A", "T", api_key=KEY),
            "track.getInfo",
            "lastfm:track_info",
            ("A", "T"),
            "none",
        ),
        (
            lambda: lastfm.track_correction_request("A", "T", api_key=KEY),
            "track.getCorrection",
            "lastfm:correction",
            ("A", "T"),
            "none",
        ),
        (
            lambda: lastfm.artist_top_tags_request("A", api_key=KEY),
            "artist.getTopTags",
            "lastfm:artist_tags",
            ("A",),
            "empty",
        ),
        (
            lambda: lastfm.artist_info_request("A", api_key=KEY),
            "artist.getInfo",
            "lastfm:artist_info",
            ("A",),
            "none",
        ),
        (
            lambda: lastfm.track_search_request("T", "A", api_key=KEY),
            "track.search",
            "lastfm:track_search",
            ("A", "T"),
            "empty",
        ),
        (
            lambda: lastfm.track_search_request("T", api_key=KEY, limit=30),
            "track.search",
            "lastfm:track_search",
            ("", "T", "limit=30"),
            "empty",
        ),
    ],
)
def test_other_requests(
    build: Any, method: str, kind: str, parts: tuple[str, ...], absent: str
) -> None:
    """Every method: format=json, a secret key, its cache kind and its not-found result."""
    req = build()
    params = dict(req.params)
    assert params["method"] == method
    assert params["format"] == "json"
    assert req.secret_params == {"api_key"}
    assert req.endpoint_template == f"/2.0/?method={method}"
    assert (req.cache_kind, req.cache_parts) == (kind, parts)
    assert req.not_found_result == absent
    assert KEY not in "".join(req.cache_parts)


def test_requests_validate_text() -> None:
    """Blank or over-long names are refused before any call."""
    with pytest.raises(InvalidInput) as info:
        lastfm.track_top_tags_request("A", "", api_key=KEY)
    assert info.value.field == "track"
    with pytest.raises(InvalidInput) as info:
        lastfm.artist_info_request("x" * 201, api_key=KEY)
    assert info.value.field == "artist"


# --- quirks ---------------------------------------------------------------------------------


def test_quirk_helpers() -> None:
    """Collapsed lists, string numbers and #text are read as what they mean."""
    assert lastfm.as_list({"name": "rock"}) == [{"name": "rock"}]
    assert lastfm.as_list([1, 2]) == [1, 2]
    assert lastfm.as_list(None) == []
    assert lastfm.as_list("\n") == []
    assert lastfm.as_int("1315650") == 1315650
    assert lastfm.as_int(" 42 ") == 42
    assert lastfm.as_int("0.892602") == 0
    assert lastfm.as_int("FIXME") == 0
    assert lastfm.as_int(None, default=-1) == -1
    assert lastfm.as_int(7.9) == 7
    assert lastfm.text_of({"#text": "0", "fulltrack": "0"}) == "0"
    assert lastfm.text_of("x") == "x"
    assert lastfm.text_of(None) == ""


def test_single_tag_as_bare_object() -> None:
    """One tag arrives as an object, its count as a string: still one tag."""
    body = {
        "toptags": {
            "tag": {"name": "electro house", "count": "100", "url": "u"},
            "@attr": {"artist": "deadmau5"},
        }
    }
    assert lastfm.parse_top_tags(body) == ["electro house"]
    assert lastfm.parse_top_tag_counts(body) == [("electro house", 100)]


def test_tags_ordered_by_count_whatever_the_input_order() -> None:
    """Tags come out by descending count (numbers or strings), ties in Last.fm's order,
    duplicates and nameless entries dropped."""
    body = {
        "toptags": {
            "tag": [
                {"name": "house", "count": "5"},
                {"name": "electronic", "count": 100},
                {"name": "progressive house", "count": "62"},
                {"name": "House", "count": 3},
                {"name": "", "count": 99},
                {"name": "techno", "count": "5"},
                "junk",
            ]
        }
    }
    assert lastfm.parse_top_tags(body) == ["electronic", "progressive house", "house", "techno"]


def test_empty_tags_in_every_spelling() -> None:
    """No tags, however Last.fm spells it, is an empty list."""
    spellings: list[dict[str, Any]] = [
        {"tag": []},
        {"#text": "\n", "@attr": {"artist": "x"}},
        {},
        {"tag": ""},
    ]
    for toptags in spellings:
        assert lastfm.parse_top_tags({"toptags": toptags}) == []
    with pytest.raises(MalformedResponse):
        lastfm.parse_top_tags({"error": 6})


def test_track_info_with_collapsed_tag_and_missing_album() -> None:
    """A hand-made getInfo with one tag object, string numbers and no album."""
    body = {
        "track": {
            "name": "Strobe",
            "mbid": "",
            "url": "https://www.last.fm/music/deadmau5/_/Strobe",
            "duration": "0",
            "listeners": "12",
            "playcount": "34",
            "artist": {"name": "deadmau5", "mbid": "", "url": ""},
            "toptags": {"tag": {"name": "progressive house", "url": "u"}},
        }
    }
    info = lastfm.parse_track_info(body)
    assert info["tags"] == ["progressive house"]
    assert info["duration_ms"] is None
    assert info["mbid"] is None
    assert (info["listeners"], info["playcount"]) == (12, 34)
    assert info["artist"] == {"name": "deadmau5", "mbid": None, "url": None}
    assert info["album"] is None
    assert info["wiki"] is None


def test_artist_info_with_single_similar_artist() -> None:
    """A one-element similar list and a one-element tag list both come out as lists."""
    body = {
        "artist": {
            "name": "Solo",
            "mbid": "",
            "url": "u",
            "ontour": "1",
            "stats": {"listeners": "5", "playcount": "9"},
            "similar": {"artist": {"name": "Other"}},
            "tags": {"tag": {"name": "indie"}},
            "image": {"#text": "https://img/x.png", "size": "small"},
        }
    }
    info = lastfm.parse_artist_info(body)
    assert info["similar"] == ["Other"]
    assert info["tags"] == ["indie"]
    assert info["on_tour"] is True
    assert info["images"] == [{"url": "https://img/x.png", "size": "small"}]
    assert info["bio"] is None


def test_correction_quirks() -> None:
    """Corrections as an object, as a one-element list, unknown, and empty."""
    correction = {
        "track": {
            "name": "Mr. Brownstone",
            "url": "u",
            "artist": {"name": "Guns N' Roses", "url": "a"},
        },
        "@attr": {"index": "0", "artistcorrected": "0", "trackcorrected": "1"},
    }
    for shape in (correction, [correction]):
        found = lastfm.parse_correction({"corrections": {"correction": shape}})
        assert found is not None
        assert (
            found["artist"],
            found["track"],
            found["track_corrected"],
            found["artist_corrected"],
        ) == ("Guns N' Roses", "Mr. Brownstone", True, False)
    unknown = {
        "corrections": {
            "correction": {
                "track": {"url": "", "artist": {"url": ""}},
                "@attr": {"index": "0", "artistcorrected": "0", "trackcorrected": "0"},
            }
        }
    }
    assert lastfm.parse_correction(unknown) is None
    assert lastfm.parse_correction({"corrections": "\n"}) is None
    with pytest.raises(MalformedResponse):
        lastfm.parse_correction({"toptags": {}})


def test_track_search_quirks() -> None:
    """One hit as an object, listeners as a string; none as an empty list."""
    one = {
        "results": {
            "trackmatches": {
                "track": {"name": "Strobe", "artist": "deadmau5", "listeners": "900", "mbid": ""}
            }
        }
    }
    assert lastfm.parse_track_search(one) == [
        {"name": "Strobe", "artist": "deadmau5", "mbid": None, "url": None, "listeners": 900}
    ]
    none = {"results": {"opensearch:totalResults": "0", "trackmatches": {"track": []}, "@attr": {}}}
    assert lastfm.parse_track_search(none) == []


# --- recorded answers -----------------------------------------------------------------------


def check_track_top_tags(d: Path) -> None:
    tags = lastfm.parse_top_tags(load(d, "track.getTopTags.json"))
    assert tags[:5] == ["hard rock", "rock", "classic rock", "ACDC", "heavy metal"]
    assert len(tags) == 36
    assert lastfm.parse_top_tag_counts(load(d, "track.getTopTags.json"))[0] == ("hard rock", 100)
    assert lastfm.classify_response(200, load(d, "track.getTopTags.json"), {}) is None


def check_track_top_tags_empty(d: Path) -> None:
    assert lastfm.parse_top_tags(load(d, "track.getTopTags_no_tags.json")) == []


def check_artist_top_tags(d: Path) -> None:
    body = load(d, "artist.getTopTags.json")
    pairs = lastfm.parse_top_tag_counts(body, "artist.getTopTags")
    counts = [c for _, c in pairs]
    assert counts == sorted(counts, reverse=True)
    assert pairs[0][1] == 100
    assert pairs[-1] == ("male vocalists", 1)


def check_track_info(d: Path) -> None:
    info = lastfm.parse_track_info(load(d, "track.getInfo.json"))
    assert info["name"] == "One Step Closer"
    assert info["mbid"] == "30cb03f3-bd95-43b0-9d41-6d75e13cd353"
    assert info["duration_ms"] == 157000
    assert (info["listeners"], info["playcount"]) == (1315650, 11022708)
    assert info["artist"]["name"] == "Linkin Park"
    assert info["album"] is not None
    assert info["album"]["title"] == "Road To Revolution: Live at Milton Keynes"
    assert info["album"]["position"] == 1
    assert [i["size"] for i in info["album"]["images"]] == [
        "small",
        "medium",
        "large",
        "extralarge",
    ]
    assert info["tags"] == ["Nu Metal", "rock", "Linkin Park", "alternative rock", "alternative"]
    assert info["wiki"] is not None
    assert info["wiki"]["published"] == "14 Apr 2009, 16:25"


def check_artist_info(d: Path) -> None:
    info = lastfm.parse_artist_info(load(d, "artist.getInfo.json"))
    assert info["name"] == "U2"
    assert info["mbid"] == "a3cb23fc-acd3-4ce0-8f36-1e5aa6a18432"
    assert (info["listeners"], info["playcount"]) == (3623538, 150387104)
    assert info["on_tour"] is False
    assert info["similar"][:3] == ["Passengers", "INXS", "R.E.M."]
    assert len(info["images"]) == 6
    assert info["tags"]
    assert info["bio"] is not None
    assert info["bio"]["summary"]


def check_correction(d: Path) -> None:
    found = lastfm.parse_correction(load(d, "track.getCorrection.json"))
    assert found == {
        "artist": "Skee-Lo",
        "track": "I Wish",
        "mbid": "ccb9326a-6f9f-48b1-a097-1210dd14e119",
        "artist_mbid": "9341a67c-4f0c-43c2-9ec4-c222d2cb97f3",
        "url": "https://www.last.fm/music/Skee-Lo/_/I+Wish",
        "artist_corrected": False,
        "track_corrected": False,
    }


def check_similar(d: Path) -> None:
    # Not a method tunegate calls; its numbers-as-numbers ("match": 1.0) still read.
    body = load(d, "track.getSimilar.json")
    assert lastfm.classify_response(200, body, {}) is None
    tracks = lastfm.as_list(body["similartracks"]["track"])
    assert [lastfm.as_int(t["match"]) for t in tracks][:2] == [1, 0]


def check_error(name: str, cls: type[ProviderError], code: int) -> Any:
    def check(d: Path) -> None:
        body = (d / "lastfm" / name).read_bytes()
        err = lastfm.classify_response(200, body, {}, endpoint="/2.0/?method=artist.getInfo")
        assert type(err) is cls
        assert err.code == code
        assert err.status == 200
        # The same body with a 404 or 400 (Last.fm uses both) classifies the same way.
        assert type(lastfm.classify_response(404, body, {})) is cls

    return check


def cassette(path: Path) -> tuple[int, str]:
    """(status, body) of a VCR cassette's first interaction, read without a YAML library:
    enough of YAML's quoted scalars for these files."""
    raw = path.read_text("utf-8")
    status = int(re.search(r"status:\s*\n\s*code: (\d+)", raw).group(1))  # type: ignore[union-attr]
    scalar = re.search(r"string: (['\"])(.*?)\1\n\s+headers:", raw, re.DOTALL).group(2)  # type: ignore[union-attr]
    lines = [line.strip() for line in scalar.split("\n")]
    text = " ".join(lines).replace('\\"', '"').replace("\\ ", " ").replace("\\n", "\n")
    return status, text


def check_xml_error(name: str, cls: type[ProviderError], code: int) -> Any:
    def check(d: Path) -> None:
        status, body = cassette(d / "lastfm" / name)
        assert status in (400, 403)
        err = lastfm.classify_response(status, body.encode(), {})
        assert type(err) is cls
        assert err.code == code

    return check


def check_xml_ok(name: str) -> Any:
    def check(d: Path) -> None:
        # Parsing XML is not needed (the clients ask for JSON); an XML success is not an error.
        status, body = cassette(d / "lastfm" / name)
        assert status == 200
        assert '<lfm status="ok">' in body
        assert lastfm.classify_response(status, body, {}) is None

    return check


CHECKS = {
    "track.getTopTags.json": check_track_top_tags,
    "track.getTopTags_no_tags.json": check_track_top_tags_empty,
    "artist.getTopTags.json": check_artist_top_tags,
    "track.getInfo.json": check_track_info,
    "artist.getInfo.json": check_artist_info,
    "track.getCorrection.json": check_correction,
    "track.getSimilar.json": check_similar,
    "error_6_artist_not_found.json": check_error("error_6_artist_not_found.json", NotFound, 6),
    "error_6_album_not_found.json": check_error("error_6_album_not_found.json", NotFound, 6),
    "error_3_invalid_method.json": check_error("error_3_invalid_method.json", ProviderError, 3),
    "cassette_error_6_http400_xml.yaml": check_xml_error(
        "cassette_error_6_http400_xml.yaml", NotFound, 6
    ),
    "cassette_error_4_http403_xml.yaml": check_xml_error(
        "cassette_error_4_http403_xml.yaml", AuthenticationError, 4
    ),
    "cassette_track.getInfo_xml.yaml": check_xml_ok("cassette_track.getInfo_xml.yaml"),
    "cassette_track.getCorrection_xml.yaml": check_xml_ok("cassette_track.getCorrection_xml.yaml"),
}


def test_every_recorded_lastfm_answer_has_a_check(shared_fixtures: Path) -> None:
    """A newly recorded answer fails here until a parser check covers it."""
    assert sorted(p.name for p in (shared_fixtures / "lastfm").iterdir()) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_recorded_answer_parses(shared_fixtures: Path, name: str) -> None:
    """Each recorded real answer is read correctly."""
    CHECKS[name](shared_fixtures)


# --- errors ---------------------------------------------------------------------------------


def lfm_error(code: int | str, message: str = "message") -> dict[str, Any]:
    """A Last.fm JSON error body."""
    return {"error": code, "message": message, "links": []}


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (6, NotFound),
        ("6", NotFound),
        (10, AuthenticationError),
        (26, AuthenticationError),
        (4, AuthenticationError),
        (9, AuthenticationError),
        (8, ProviderUnavailable),
        (11, ProviderUnavailable),
        (16, ProviderUnavailable),
        (29, RateLimited),
        (2, ProviderError),
        (3, ProviderError),
        (5, ProviderError),
        (7, ProviderError),
        (27, ProviderError),
    ],
)
def test_body_error_codes(code: int | str, cls: type[ProviderError]) -> None:
    """Each Last.fm code maps onto the error tree, inside a 200 as well."""
    err = lastfm.classify_body_error(lfm_error(code))
    assert type(err) is cls
    assert err.code == int(code)
    assert lastfm.classify_response(200, json.dumps(lfm_error(code)).encode(), {}) is not None


def test_rate_limit_carries_retry_after() -> None:
    """Error 29 (HTTP 429) keeps a Retry-After when sent."""
    err = lastfm.classify_response(429, lfm_error(29, "Rate Limit Exceeded"), {"Retry-After": "4"})
    assert isinstance(err, RateLimited)
    assert err.retry_after == 4.0


def test_messages_never_hold_the_key() -> None:
    """Key errors use fixed text; any 32-hex run in a provider message is redacted."""
    for code in (10, 26):
        err = lastfm.classify_body_error(lfm_error(code, f"Invalid API key {KEY}"))
        assert err is not None
        assert KEY not in str(err)
    err = lastfm.classify_body_error(lfm_error(8, f"failed for key {KEY}"))
    assert err is not None
    assert KEY not in str(err)


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (500, b"<html>Internal</html>", ProviderUnavailable),
        (503, b"", ProviderUnavailable),
        (429, b"", RateLimited),
        (404, b"not found", NotFound),
        (400, b"", ProviderError),
    ],
)
def test_status_only_errors(status: int, body: bytes, cls: type[ProviderError]) -> None:
    """Without a Last.fm code, the HTTP status decides."""
    err = lastfm.classify_response(status, body, {})
    assert type(err) is cls
    assert err.code is None


def test_ok_bodies_are_not_errors() -> None:
    """Ordinary answers, even odd ones, classify as None."""
    assert lastfm.classify_response(200, {"toptags": {"tag": []}}, {}) is None
    assert lastfm.classify_response(200, b"[]", {}) is None
