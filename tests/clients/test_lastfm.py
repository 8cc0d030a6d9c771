"""LastFmClient and AsyncLastFmClient against the emulator: every method, Last.fm's error
codes, the API key kept secret, input checks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.clients.conftest import Driver, requests_to, statuses
from tests.pipeline._server import Reply, ScriptServer, serve
from tunegate.clients import LastFmClient
from tunegate.emulator import SUSPENDED_LASTFM_KEY, Emulator
from tunegate.exceptions import AuthenticationError, ConfigurationError, InvalidInput

STROBE_TAGS = ["progressive house", "electronic", "deadmau5", "house", "trance"]


def test_get_track_tags_ordered_by_count(driver: Driver, emulator: Emulator) -> None:
    """Tag names, highest count first, as the design joins them; unknown tracks give []."""
    client = driver.lastfm()
    tags = driver.call(client, "get_track_tags", "Deadmau5", "Strobe")
    assert tags == STROBE_TAGS
    assert ", ".join(tags[:5]) == "progressive house, electronic, deadmau5, house, trance"
    assert driver.call(client, "get_track_tags", "deadmau5", " strobe ") == tags  # cached
    assert requests_to(emulator, "lastfm", "track.getTopTags") == 1
    assert driver.call(client, "get_track_tags", "Nobody Atall", "Qqqzzx Vvvwwy") == []


def test_get_track_tag_counts(driver: Driver, emulator: Emulator) -> None:
    """``(name, count)`` pairs, highest count first, the names those of get_track_tags;
    each method keeps its own cache entry, so neither is served the other's shape."""
    client = driver.lastfm()
    pairs = driver.call(client, "get_track_tag_counts", "Deadmau5", "Strobe")
    assert [name for name, _ in pairs] == STROBE_TAGS
    counts = [count for _, count in pairs]
    assert counts == sorted(counts, reverse=True)
    assert all(isinstance(c, int) and 0 <= c <= 100 for c in counts)
    assert driver.call(client, "get_track_tags", "Deadmau5", "Strobe") == STROBE_TAGS
    assert driver.call(client, "get_track_tag_counts", "deadmau5", "strobe") == pairs  # cached
    assert requests_to(emulator, "lastfm", "track.getTopTags") == 2
    assert driver.call(client, "get_track_tag_counts", "Nobody Atall", "Qqqzzx Vvvwwy") == []


def test_get_artist_info(driver: Driver, emulator: Emulator) -> None:
    """Counts as ints, tags and similar artists as names; an unknown artist gives None."""
    client = driver.lastfm()
    info = driver.call(client, "get_artist_info", "Audioslave")
    assert info["name"] == "Audioslave"
    assert isinstance(info["listeners"], int)
    assert info["listeners"] > 0
    assert info["tags"][:3] == ["rock", "alternative rock", "hard rock"]
    assert all(isinstance(name, str) for name in info["similar"])
    assert driver.call(client, "get_artist_info", "Qqqzzx Nobody Vvvwwy") is None


def test_search_tracks(driver: Driver, emulator: Emulator) -> None:
    """track.search hits in Last.fm's order, with or without the artist; none gives []."""
    client = driver.lastfm()
    hits = driver.call(client, "search_tracks", "Strobe", "deadmau5")
    assert (hits[0]["name"], hits[0]["artist"]) == ("Strobe", "deadmau5")
    assert isinstance(hits[0]["listeners"], int)
    assert driver.call(client, "search_tracks", "Strobe", limit=5)[0]["name"] == "Strobe"
    assert driver.call(client, "search_tracks", "Qqqzzx Vvvwwy") == []
    err = driver.catch(client, "search_tracks", "Strobe", limit=51)
    assert isinstance(err, InvalidInput)
    assert err.field == "limit"


def test_autocorrect_is_part_of_the_key(driver: Driver, emulator: Emulator) -> None:
    """``autocorrect=False`` is another question (another request, another cache entry)."""
    client = driver.lastfm()
    driver.call(client, "get_track_tags", "Deadmau5", "Strobe")
    driver.call(client, "get_track_tags", "Deadmau5", "Strobe", autocorrect=False)
    assert requests_to(emulator, "lastfm", "track.getTopTags") == 2


def test_get_artist_tags(driver: Driver, emulator: Emulator) -> None:
    """The artist's tag names ordered by count; an unknown artist gives []."""
    client = driver.lastfm()
    tags = driver.call(client, "get_artist_tags", "Audioslave")
    assert tags[:3] == ["rock", "alternative rock", "hard rock"]
    assert driver.call(client, "get_artist_tags", "Qqqzzx Nobody Vvvwwy") == []


def test_get_track_info(driver: Driver, emulator: Emulator) -> None:
    """Numbers as ints, the album and artist rebuilt; an unknown track gives None."""
    client = driver.lastfm()
    info = driver.call(client, "get_track_info", "deadmau5", "Strobe")
    assert info["name"] == "Strobe"
    assert info["artist"]["name"] == "deadmau5"
    assert isinstance(info["listeners"], int)
    assert info["listeners"] > 0
    assert info["duration_ms"] == emulator.describe_track(0)["duration_ms"]
    assert driver.call(client, "get_track_info", "Nobody Atall", "Qqqzzx Vvvwwy") is None


def test_get_correction(driver: Driver, emulator: Emulator) -> None:
    """The canonical names for a misspelt track; None when Last.fm knows nothing better."""
    client = driver.lastfm()
    fixed = driver.call(client, "get_correction", "guns n roses", "mrbrownstone")
    assert (fixed["artist"], fixed["track"]) == ("Guns N' Roses", "Mr. Brownstone")
    assert fixed["track_corrected"] is True
    assert driver.call(client, "get_correction", "Nobody Atall", "Qqqzzx Vvvwwy") is None


@pytest.mark.parametrize(("key", "code"), [("not-a-key", 10), (SUSPENDED_LASTFM_KEY, 26)])
def test_refused_key_is_an_authentication_error(
    driver: Driver, emulator: Emulator, key: str, code: int
) -> None:
    """Errors 10 and 26 raise AuthenticationError at once (not retried), without the key."""
    client = driver.lastfm(api_key=key)
    err = driver.catch(client, "get_track_tags", "Deadmau5", "Strobe")
    assert isinstance(err, AuthenticationError)
    assert err.code == code
    assert key not in str(err)
    assert requests_to(emulator, "lastfm") == 1


def test_transient_codes_are_retried(driver: Driver, emulator: Emulator) -> None:
    """Error 29 (rate limit) and 11 (service offline) are retried; the caller sees tags."""
    emulator.set_faults(
        "lastfm/track.getTopTags:error=429,retry_after=0,times=1;"
        "lastfm/track.getTopTags:error=503,retry_after=0,times=1"  # the 2nd request
    )
    client = driver.lastfm()
    assert driver.call(client, "get_track_tags", "Deadmau5", "Strobe") == STROBE_TAGS
    assert statuses(emulator, "lastfm", "track.getTopTags") == {"429": 1, "503": 1, "200": 1}
    assert client.get_stats()["retries"] == 2


@pytest.mark.parametrize(
    ("method", "args", "field"),
    [
        ("get_track_tags", ("", "Strobe"), "artist"),
        ("get_track_tags", ("Deadmau5", "x" * 300), "track"),
        ("get_artist_tags", ("\x00bad",), "artist"),
        ("get_track_info", ("Deadmau5", 42), "track"),
        ("get_correction", ("  ", "Strobe"), "artist"),
    ],
)
def test_bad_input_fails_before_any_network_call(
    driver: Driver, emulator: Emulator, method: str, args: tuple[Any, ...], field: str
) -> None:
    """Invalid input raises InvalidInput naming the field; the emulator sees nothing."""
    client = driver.lastfm()
    err = driver.catch(client, method, *args)
    assert isinstance(err, InvalidInput)
    assert err.field == field
    assert emulator.stats()["total"] == 0


def test_api_key_is_checked_and_never_shown() -> None:
    """A missing or malformed key fails at construction without echoing it; repr hides it."""
    with pytest.raises(ConfigurationError, match="api_key"):
        LastFmClient("")
    with pytest.raises(ConfigurationError) as info:
        LastFmClient("abc def")
    assert "abc def" not in str(info.value)
    assert "deadbeef" not in repr(LastFmClient("deadbeef" * 4))
    with pytest.raises(ConfigurationError, match="api_key"):
        LastFmClient("k")  # too short to be a key: scrubbing it would mangle every message


@pytest.fixture
def recorder() -> Iterator[ScriptServer]:
    yield from serve()


def test_api_key_sent_as_parameter_but_kept_out_of_logs(
    recorder: ScriptServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The key goes to Last.fm as ``api_key``; no log record carries it, even on failure."""
    key = "0123456789abcdef0123456789abcdef"
    recorder.script("/2.0/", Reply(json={"error": 10, "message": f"Invalid API key {key}"}))
    caplog.set_level(logging.DEBUG)
    with (
        LastFmClient(key, base_url=recorder.url) as client,
        pytest.raises(AuthenticationError) as info,
    ):
        client.get_track_tags("Deadmau5", "Strobe")
    assert recorder.requests()[0].query["api_key"] == key
    assert key not in str(info.value)
    for record in caplog.records:
        assert key not in record.getMessage()
        assert key not in str(record.__dict__)
