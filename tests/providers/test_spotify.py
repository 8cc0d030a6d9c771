"""Spotify: request building and escaping, parsers on recorded answers, errors, tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunegate.exceptions import (
    AuthenticationError,
    InvalidInput,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from tunegate.providers import spotify, validate
from tunegate.providers.types import SpotifyTrack

SID = "3n3Ppam7vgaVa1iaRUc9Lp"
PHRASES = re.compile(r'track:"([^"\\:]*)" artist:"([^"\\:]*)"')


def load(directory: Path, name: str) -> Any:
    """A recorded body, decoded."""
    return json.loads((directory / "spotify" / name).read_text(encoding="utf-8"))


# --- requests -------------------------------------------------------------------------------


def test_search_request_shape() -> None:
    """Search uses field filters with quoted phrases and the design's cache key."""
    req = spotify.search_track_request(" Deadmau5 ", "Strobe")
    assert req.method == "GET"
    assert req.path == req.endpoint_template == "/v1/search"
    assert dict(req.params) == {
        "q": 'track:"Strobe" artist:"Deadmau5"',
        "type": "track",
        "limit": "10",
    }
    assert (req.cache_kind, req.cache_parts) == ("spotify:search", ("Deadmau5", "Strobe"))
    assert req.url("http://127.0.0.1:9/") == "http://127.0.0.1:9/v1/search"


def test_search_request_market_and_limit_change_the_key() -> None:
    """A market or a non-default limit changes the answer, so it is part of the key."""
    req = spotify.search_track_request("a", "b", market="gb", limit=5)
    assert ("market", "GB") in req.params
    assert req.cache_parts == ("a", "b", "market=GB", "limit=5")
    with pytest.raises(InvalidInput) as info:
        spotify.search_track_request("a", "b", limit=50)
    assert info.value.field == "limit"


def test_search_request_validates_before_anything() -> None:
    """Empty or over-long text is refused with the field named."""
    with pytest.raises(InvalidInput) as info:
        spotify.search_track_request("", "Strobe")
    assert info.value.field == "artist"
    with pytest.raises(InvalidInput) as info:
        spotify.search_track_request("Deadmau5", "x" * 201)
    assert info.value.field == "title"


def valid_text(value: str) -> bool:
    """True when the validator accepts the text (the property is about accepted text)."""
    try:
        validate.text(value, "t")
    except InvalidInput:
        return False
    return True


USER_TEXT = st.text(min_size=1, max_size=80).filter(valid_text)


@given(USER_TEXT, USER_TEXT)
@settings(max_examples=300, deadline=None)
def test_user_text_cannot_leave_its_phrase(artist: str, title: str) -> None:
    """Whatever the text (quotes, backslashes, filters), q is exactly two closed phrases."""
    req = spotify.search_track_request(artist, title)
    q = dict(req.params)["q"]
    match = PHRASES.fullmatch(q)
    assert match is not None, q
    assert q.count('"') == 4
    # Nothing but quote, backslash, colon and white space runs was changed.
    expected_title = re.sub(r'["\\:\s]+', " ", validate.text(title, "title")).strip()
    assert match.group(1) == expected_title


def test_hostile_text_is_neutralised() -> None:
    """A title trying to close the phrase and add a filter stays inside the phrase."""
    req = spotify.search_track_request('x" year:1999 artist:"evil', 'a\\" b')
    assert dict(req.params)["q"] == 'track:"a b" artist:"x year 1999 artist evil"'


def test_isrc_track_artist_requests() -> None:
    """ISRC search, track and artist lookups validate and key as the design says."""
    isrc = spotify.search_isrc_request("us-ir2-04-00500")
    assert dict(isrc.params)["q"] == "isrc:USIR20400500"
    assert (isrc.cache_kind, isrc.cache_parts) == ("spotify:isrc", ("USIR20400500",))
    one = spotify.track_request(f"spotify:track:{SID}")
    assert (one.path, one.endpoint_template) == (f"/v1/tracks/{SID}", "/v1/tracks/{id}")
    assert (one.cache_kind, one.cache_parts) == ("spotify:track", (SID,))
    artist = spotify.artist_request("0OdUWJ0sBjDrqHygGUXeCF")
    assert artist.endpoint_template == "/v1/artists/{id}"
    assert artist.cache_kind == "spotify:artist"
    with pytest.raises(InvalidInput) as info:
        spotify.track_request("nope")
    assert info.value.field == "track_id"
    with pytest.raises(InvalidInput):
        spotify.artist_request(f"spotify:track:{SID}")


def ids(n: int) -> list[str]:
    """n distinct valid Spotify ids."""
    return [f"{i:022d}" for i in range(n)]


def test_batch_requests_chunk_at_50_unique_ids() -> None:
    """120 ids with duplicates become chunks of at most 50 unique ids, first-seen order."""
    wanted = ids(120) + ids(10)
    reqs = spotify.tracks_requests(wanted)
    chunks = [dict(r.params)["ids"].split(",") for r in reqs]
    assert [len(c) for c in chunks] == [50, 50, 20]
    assert [i for chunk in chunks for i in chunk] == ids(120)
    assert all(r.cache_kind is None and r.endpoint_template == "/v1/tracks" for r in reqs)
    assert spotify.tracks_requests([]) == []


def test_assemble_tracks_keeps_caller_order_and_nones() -> None:
    """Answers are put back by position: duplicates repeated, unknown ids None."""
    a, b, c = ids(3)
    ta: SpotifyTrack = {"id": a, "name": "A", "artists": []}
    tb: SpotifyTrack = {"id": "relinked-id", "name": "B", "artists": []}
    out = spotify.assemble_tracks([b, a, c, b], [[tb, ta, None]])
    assert out == [tb, ta, None, tb]
    with pytest.raises(MalformedResponse):
        spotify.assemble_tracks([a, b], [[ta]])


def test_token_request_keeps_the_secret_out_of_sight() -> None:
    """The Basic credentials are marked secret and never shown by repr."""
    req = spotify.token_request("client-id-canary", "secret-canary")
    assert req.method == "POST"
    assert req.path == "/api/token"
    assert req.data == (("grant_type", "client_credentials"),)
    assert dict(req.headers)["Authorization"].startswith("Basic ")
    assert "Authorization" in req.secret_params
    assert req.cache_kind is None
    assert req.cache_parts == ()
    text = repr(req)
    assert "Basic" not in text
    assert "***" in text


# --- token ----------------------------------------------------------------------------------


def test_token_parse_real_answer(shared_fixtures: Path) -> None:
    """The recorded client-credentials answer gives a bearer token refreshed before expiry."""
    token = spotify.parse_token(load(shared_fixtures, "token_client_credentials.json"), now=100.0)
    assert token.expires_at == 3700.0
    assert token.refresh_at == 3640.0
    assert not token.needs_refresh(3639.9)
    assert token.needs_refresh(3640.0)
    assert token.authorization.startswith("Bearer taHZ2")
    assert token.access_token not in repr(token)


def test_short_lived_token_is_not_born_expired() -> None:
    """A 10 s token refreshes at 9 s, not immediately."""
    token = spotify.parse_token(
        {"access_token": "t", "token_type": "bearer", "expires_in": 10}, now=0.0
    )
    assert token.refresh_at == pytest.approx(9.0)
    assert not token.needs_refresh(0.0)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"token_type": "Bearer", "expires_in": 3600},
        {"access_token": "", "token_type": "Bearer", "expires_in": 3600},
        {"access_token": "t", "token_type": "MAC", "expires_in": 3600},
        {"access_token": "t", "token_type": "Bearer", "expires_in": 0},
        {"access_token": "t", "token_type": "Bearer", "expires_in": "3600"},
        {"access_token": "t", "token_type": "Bearer", "expires_in": True},
    ],
)
def test_token_parse_refuses_bad_answers(body: Any) -> None:
    """A token answer without a usable token or lifetime is malformed."""
    with pytest.raises(MalformedResponse):
        spotify.parse_token(body, now=0.0)


# --- parsers on the recorded answers --------------------------------------------------------


def check_search_tracks(d: Path) -> None:
    body = load(d, "search_type_track_q_Muse_market_US_limit10_offset5.json")
    tracks = spotify.parse_search_tracks(body)
    assert len(tracks) == 10
    assert tracks[0]["name"] == "Supermassive Black Hole"
    assert tracks[0]["artists"][0]["name"] == "Muse"
    assert tracks[0]["external_ids"]["isrc"] == "GBAHT0500593"
    assert all(
        "available_markets" not in t and "available_markets" not in t["album"] for t in tracks
    )
    best = spotify.best_match(tracks, "Muse", "Knights of Cydonia")
    assert best is not None
    assert best["id"] == "7ouMYWpwJ422jRcDASZB7P"
    # "Muse" is also a title by PARTYNEXTDOOR: the artist decides.
    best = spotify.best_match(tracks, "PartyNextDoor", "Muse")
    assert best is not None
    assert best["id"] == "41ipOYFGT2MW4dvOPkoK1f"
    assert spotify.best_match(tracks, "Muse", "Uprising") is None
    pick = spotify.pick_isrc_match(tracks, "GBCVT0300083")
    assert pick is not None
    assert pick["name"] == "Hysteria"
    assert spotify.pick_isrc_match(tracks, "USIR20400500") is None


def check_search_artists(d: Path) -> None:
    body = load(d, "search_type_artist_q_U2.json")
    with pytest.raises(MalformedResponse):
        spotify.parse_search_tracks(body)  # an artist search is not a track search
    artists = [spotify.parse_artist(item) for item in body["artists"]["items"]]
    assert artists[0]["name"] == "U2"
    assert len(artists) == 20


def check_track(d: Path) -> None:
    track = spotify.parse_track(load(d, "get_track.json"))
    assert track["id"] == SID
    assert track["name"] == "Mr. Brightside"
    assert track["artists"][0]["name"] == "The Killers"
    assert track["album"]["name"] == "Hot Fuss (Deluxe Version)"
    assert track["external_ids"]["isrc"] == "GBFFP0300052"
    assert track["duration_ms"] == 222200
    assert "available_markets" not in track


def check_tracks(d: Path) -> None:
    tracks = spotify.parse_tracks(load(d, "get_several_tracks.json"))
    assert [t["name"] if t else None for t in tracks] == ["Mr. Brightside", "Somebody Told Me"]


def check_tracks_with_null(d: Path) -> None:
    tracks = spotify.parse_tracks(load(d, "get_several_tracks_with_unknown_id_null.json"))
    assert len(tracks) == 2
    assert tracks[0] is not None
    assert tracks[0]["external_ids"]["isrc"] == "USIR20400274"
    assert tracks[1] is None


def check_artist(d: Path) -> None:
    artist = spotify.parse_artist(load(d, "get_artist.json"))
    assert artist["name"] == "Band of Horses"
    assert artist["genres"] == ["indie folk", "indie pop"]
    assert artist["followers"]["total"] == 306565


def check_token(d: Path) -> None:
    assert spotify.parse_token(load(d, "token_client_credentials.json"), now=0.0).expires_at == 3600


def check_token_error(d: Path) -> None:
    body = (d / "spotify" / "token_error_invalid_client.json").read_bytes()
    err = spotify.classify_response(400, body, {}, endpoint="/api/token")
    assert isinstance(err, AuthenticationError)
    assert err.code == "invalid_client"
    assert err.endpoint == "/api/token"


CHECKS = {
    "search_type_track_q_Muse_market_US_limit10_offset5.json": check_search_tracks,
    "search_type_artist_q_U2.json": check_search_artists,
    "get_track.json": check_track,
    "get_several_tracks.json": check_tracks,
    "get_several_tracks_with_unknown_id_null.json": check_tracks_with_null,
    "get_artist.json": check_artist,
    "token_client_credentials.json": check_token,
    "token_error_invalid_client.json": check_token_error,
}


def test_every_recorded_spotify_answer_has_a_check(shared_fixtures: Path) -> None:
    """A newly recorded answer fails here until a parser check covers it."""
    assert sorted(p.name for p in (shared_fixtures / "spotify").iterdir()) == sorted(CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_recorded_answer_parses(shared_fixtures: Path, name: str) -> None:
    """Each recorded real answer is read correctly."""
    CHECKS[name](shared_fixtures)


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"tracks": {}},
        {"tracks": {"items": [{"id": 1, "name": "x", "artists": []}]}},
        {"tracks": {"items": [{"id": "x", "name": "x"}]}},
    ],
)
def test_malformed_search_bodies(body: Any) -> None:
    """Wrong shapes are MalformedResponse, never a KeyError."""
    with pytest.raises(MalformedResponse):
        spotify.parse_search_tracks(body)


def test_null_search_items_are_skipped() -> None:
    """Spotify's occasional null items are dropped, not fatal."""
    body = {
        "tracks": {"items": [None, {"id": SID, "name": "x", "artists": [{"id": "a", "name": "A"}]}]}
    }
    assert [t["id"] for t in spotify.parse_search_tracks(body)] == [SID]


# --- errors ---------------------------------------------------------------------------------


def err_body(status: int, message: str, reason: str | None = None) -> bytes:
    """A Web API error body."""
    error: dict[str, Any] = {"status": status, "message": message}
    if reason:
        error["reason"] = reason
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "code", "retry_after"),
    [
        (
            401,
            err_body(401, "The access token expired"),
            {},
            AuthenticationError,
            spotify.TOKEN_EXPIRED,
            None,
        ),
        (
            401,
            err_body(401, "Invalid access token"),
            {},
            AuthenticationError,
            spotify.TOKEN_INVALID,
            None,
        ),
        (401, b"", {}, AuthenticationError, spotify.TOKEN_INVALID, None),
        (
            429,
            err_body(429, "Too many requests", "QUOTA_EXCEEDED"),
            {"Retry-After": "3600"},
            RateLimited,
            "QUOTA_EXCEEDED",
            3600.0,
        ),
        (429, b"", {"retry-after": "7"}, RateLimited, None, 7.0),
        (404, err_body(404, "Non existing id"), {}, NotFound, None, None),
        (400, err_body(400, "invalid id"), {}, ProviderError, "bad_request", None),
        (403, err_body(403, "Forbidden"), {}, ProviderError, "forbidden", None),
        (500, b"<html>oops</html>", {}, ProviderUnavailable, None, None),
        (502, err_body(502, "Bad gateway"), {}, ProviderUnavailable, None, None),
        (503, b"", {"Retry-After": "2"}, ProviderUnavailable, None, 2.0),
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
    """Each status maps onto the error tree with its code and wait."""
    err = spotify.classify_response(status, body, headers, endpoint="/v1/search")
    assert type(err) is cls
    assert err.code == code
    assert err.retry_after == retry_after
    assert err.status == status
    assert err.provider == "spotify"
    assert err.endpoint == "/v1/search"


def test_success_is_not_an_error() -> None:
    """2xx answers classify as None."""
    assert spotify.classify_response(200, b"{}", {}, endpoint="/v1/search") is None


def test_quota_429_message_and_refresh_rule() -> None:
    """The quota reason is noted; only Web API 401s ask for a token refresh."""
    quota = spotify.classify_error(429, err_body(429, "Too many requests", "QUOTA_EXCEEDED"), {})
    assert "quota" in str(quota)
    expired = spotify.classify_error(401, err_body(401, "The access token expired"), {})
    assert spotify.should_refresh_token(expired)
    bad_client = spotify.classify_token_error(400, {"error": "invalid_client"}, {})
    assert not spotify.should_refresh_token(bad_client)
    assert not spotify.should_refresh_token(quota)


def test_http_date_retry_after_needs_now() -> None:
    """An HTTP-date Retry-After is read against the wall clock given."""
    headers = {"Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"}
    assert spotify.classify_error(429, b"", headers).retry_after is None
    err = spotify.classify_error(429, b"", headers, now_wall=784111767.0)
    assert err.retry_after == pytest.approx(10.0)


def test_token_like_text_never_reaches_a_message() -> None:
    """A provider message echoing a long opaque token is redacted."""
    leaked = "BQD" + "x1_-" * 20
    err = spotify.classify_error(400, err_body(400, f"bad token {leaked}"), {})
    assert leaked not in str(err)
    token_err = spotify.classify_token_error(
        400, {"error": "invalid_request", "error_description": leaked}, {}
    )
    assert leaked not in str(token_err)
    assert type(token_err) is ProviderError
