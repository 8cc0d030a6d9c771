"""Bad requests never make the emulator fail: no 500 from a bug of ours, whatever is sent."""

from __future__ import annotations

import random
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.emulator.conftest import MB_AGENT, bearer, lastfm_params
from tunegate.emulator import Emulator

NASTY = [
    "",
    " ",
    '"',
    '""',
    "(",
    ")",
    "((",
    "[",
    "[1 TO",
    "{a TO b}",
    "\\",
    "\\\\",
    "*",
    "?",
    ":",
    "a:",
    ":b",
    "AND",
    "OR NOT",
    "+",
    "-",
    "!",
    "&&",
    "||",
    "year:",
    "year:abcd",
    "year:2020-",
    "isrc:",
    "isrc:XX",
    'track:"',
    'artist:""',
    "%",
    "%ZZ",
    "\x00",
    "☃",
    "é" * 300,
    "a" * 5000,
    "dur:[x TO y]",
    "recording:(a OR (b AND (c",
    "arid:not-a-uuid",
    "tag:",
    "qdur:[1 TO *]",
    "date:[* TO 1999]",
    "²",  # str.isdigit() says yes, int() says no
    "1²",
    "٣",  # an Arabic-Indic digit: int() accepts it, the real services do not
    "５",
    "+1",
    "1_0",
    " 7",
]


def test_nasty_inputs_everywhere(quiet_emulator: Emulator) -> None:
    """Every endpoint survives a list of hostile parameter values."""
    emu = quiet_emulator
    headers = {**bearer(emu), "User-Agent": MB_AGENT}
    with httpx.Client(headers=headers, timeout=30) as c:
        for value in NASTY:
            sp = f"{emu.urls.spotify}"
            for params in (
                {"q": value, "type": "track,artist,album"},
                {"q": "a", "type": value},
                {"q": "a", "type": "track", "limit": value, "offset": value, "market": value},
            ):
                assert c.get(f"{sp}/search", params=params).status_code < 500
            path_value = quote(value or "x", safe="")
            assert c.get(f"{sp}/tracks/{path_value}").status_code < 500
            mb = emu.urls.musicbrainz
            for kind in ("recording", "artist"):
                params = {
                    "query": value,
                    "fmt": random.choice(["json", "xml"]),
                    "limit": value[:5] or "1",
                    "offset": value[:5] or "0",
                }
                assert c.get(f"{mb}/{kind}", params=params).status_code < 500
            assert c.get(f"{mb}/isrc/{path_value}", params={"inc": value}).status_code < 500
            lf = lastfm_params(
                method=value, artist=value, track=value, mbid=value, limit=value, page=value
            )
            assert c.get(emu.urls.lastfm, params=lf).status_code < 500
            for method in (
                "track.search",
                "track.getInfo",
                "track.getCorrection",
                "artist.getInfo",
            ):
                lf = lastfm_params(
                    method=method,
                    artist=value or "U2",
                    track=value or "One",
                    autocorrect="1",
                    format="json",
                    limit=value,
                    page=value,
                )
                assert c.post(emu.urls.lastfm, data=lf).status_code < 500
        raw = c.get(f"{emu.urls.root}/v1/search?q=%FF%FE&type=track")
        assert raw.status_code < 500
        assert (
            c.post(
                emu.urls.spotify_token, content=b"\xff\xfe", headers={"Authorization": "Basic !!!"}
            ).status_code
            == 400
        )
    assert emu.stats()["internal_errors"] == 0


def test_only_ascii_digits_are_numbers(quiet_emulator: Emulator) -> None:
    """limit/offset/page in other digits: 400 at Spotify and MusicBrainz, Last.fm's default."""
    emu = quiet_emulator
    with httpx.Client(headers={**bearer(emu), "User-Agent": MB_AGENT}) as c:
        for digits in ("²", "٣", "５", "+3", "3_0"):
            sp = c.get(
                f"{emu.urls.spotify}/search", params={"q": "love", "type": "track", "limit": digits}
            )
            assert sp.status_code == 400, digits
            for name in ("limit", "offset"):
                mb = c.get(
                    f"{emu.urls.musicbrainz}/recording",
                    params={"query": "love", "fmt": "json", name: digits},
                )
                assert mb.status_code == 400, (name, digits)
            lf = c.get(
                emu.urls.lastfm,
                params=lastfm_params(
                    method="track.search", track="love", format="json", limit=digits, page=digits
                ),
            )
            assert lf.status_code == 200, digits
            assert lf.json()["results"]["opensearch:itemsPerPage"] == "30"
        year = c.get(f"{emu.urls.spotify}/search", params={"q": "year:٢٠٠٠", "type": "track"})
        assert year.json()["tracks"]["total"] == 0
    assert emu.stats()["internal_errors"] == 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.text(max_size=60))
def test_random_search_queries(quiet_emulator: Emulator, query: str) -> None:
    """Random text as a Spotify or MusicBrainz query is answered, never a 500."""
    emu = quiet_emulator
    with httpx.Client(headers={"User-Agent": MB_AGENT, **bearer(emu)}) as c:
        assert (
            c.get(f"{emu.urls.spotify}/search", params={"q": query, "type": "track"}).status_code
            < 500
        )
        mb = c.get(f"{emu.urls.musicbrainz}/recording", params={"query": query, "fmt": "json"})
        assert mb.status_code < 500
    assert emu.stats()["internal_errors"] == 0
