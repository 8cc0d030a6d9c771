"""Input and settings checks: good values normalised, bad ones refused with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from tunegate.exceptions import ConfigurationError, InvalidInput
from tunegate.providers import validate

ISRC_GOOD = [
    ("USIR20400500", "USIR20400500"),
    ("usir20400500", "USIR20400500"),
    ("US-IR2-04-00500", "USIR20400500"),
    ("US IR2 04 00500", "USIR20400500"),
    (" GBAHS1400099 ", "GBAHS1400099"),
    ("QMZ6E1300118", "QMZ6E1300118"),
]
ISRC_BAD: list[Any] = [
    "",
    "USIR2040050",  # 11 characters
    "USIR204005000",  # 13 characters
    "U1IR20400500",  # digit in the country code
    "USIR2A400500",  # letter in the year
    "USIR20400X00",  # letter in the designation
    "US_IR20400500",
    "USIR20400500\x00",
    12345678901,
    None,
]


@pytest.mark.parametrize(("raw", "expected"), ISRC_GOOD)
def test_isrc_normalised(raw: str, expected: str) -> None:
    """Hyphens and spaces go, letters are upper-cased."""
    assert validate.isrc(raw) == expected


@pytest.mark.parametrize("raw", ISRC_BAD)
def test_isrc_refused_with_field(raw: Any) -> None:
    """A malformed ISRC raises InvalidInput naming the field."""
    with pytest.raises(InvalidInput) as info:
        validate.isrc(raw)
    assert info.value.field == "isrc"
    assert str(info.value).startswith("isrc: ")


def test_isrc_custom_field_name() -> None:
    """The field name given by the caller is the one reported."""
    with pytest.raises(InvalidInput) as info:
        validate.isrc("nope", field="code")
    assert info.value.field == "code"


MBID = "cb2cc207-8125-445c-9ef9-6ea44eee959a"


@pytest.mark.parametrize(
    "raw",
    [MBID, MBID.upper(), f" {MBID} ", MBID.replace("-", ""), "{" + MBID + "}", f"urn:uuid:{MBID}"],
)
def test_mbid_canonical(raw: str) -> None:
    """Every UUID spelling comes back lower-case and hyphenated."""
    assert validate.mbid(raw) == MBID


@pytest.mark.parametrize(
    "raw", ["", "not-a-uuid", MBID[:-1], MBID + "0", MBID.replace("c", "g"), 7]
)
def test_mbid_refused(raw: Any) -> None:
    """A non-UUID raises InvalidInput naming the field."""
    with pytest.raises(InvalidInput) as info:
        validate.mbid(raw)
    assert info.value.field == "mbid"


SID = "3n3Ppam7vgaVa1iaRUc9Lp"


@pytest.mark.parametrize(
    "raw",
    [
        SID,
        f" {SID} ",
        f"spotify:track:{SID}",
        f"https://open.spotify.com/track/{SID}",
        f"https://open.spotify.com/track/{SID}?si=abc123",
        f"https://open.spotify.com/intl-de/track/{SID}",
    ],
)
def test_spotify_id_accepts_ids_uris_and_links(raw: str) -> None:
    """Bare ids, URIs and open.spotify.com links all reduce to the id."""
    assert validate.spotify_id(raw, "track_id") == SID


@pytest.mark.parametrize(
    "raw",
    ["", SID[:-1], SID + "a", SID[:-1] + "-", SID[:-1] + "é", f"spotify:album:{SID}", None],
)
def test_spotify_id_refused(raw: Any) -> None:
    """Wrong length, non-base62 characters, or another kind's URI are refused."""
    with pytest.raises(InvalidInput) as info:
        validate.spotify_id(raw, "track_id")
    assert info.value.field == "track_id"


def test_spotify_ids_names_the_position() -> None:
    """In a list, the bad id is named by its index."""
    with pytest.raises(InvalidInput) as info:
        validate.spotify_ids([SID, SID, "bad"])
    assert info.value.field == "ids[2]"
    with pytest.raises(InvalidInput, match="not a single string"):
        validate.spotify_ids(SID)
    assert validate.spotify_ids([SID, f"spotify:track:{SID}"]) == [SID, SID]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Deadmau5", "Deadmau5"),
        ("  Strobe \n", "Strobe"),
        ("Sigur Rós", "Sigur Rós"),
        ("x" * 200, "x" * 200),
    ],
)
def test_text_stripped(raw: str, expected: str) -> None:
    """Free text is returned stripped and otherwise untouched."""
    assert validate.text(raw, "artist") == expected


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("", "empty"),
        ("   \t\n", "empty"),
        ("x" * 201, "at most 200"),
        ("a\x00b", "control"),
        ("a\x1bb", "control"),
        (b"bytes", "string"),
        (None, "string"),
        (42, "string"),
    ],
)
def test_text_refused(raw: Any, needle: str) -> None:
    """Blank, over-long, control characters and non-strings are refused with the field."""
    with pytest.raises(InvalidInput, match=needle) as info:
        validate.text(raw, "title")
    assert info.value.field == "title"


def test_text_custom_max_len() -> None:
    """max_len bounds the stripped length."""
    assert validate.text(" abc ", "title", max_len=3) == "abc"
    with pytest.raises(InvalidInput):
        validate.text("abcd", "title", max_len=3)


def test_market_and_limit() -> None:
    """Markets are upper-cased alpha-2 codes; limits are ints within range, not bools."""
    assert validate.market("us") == "US"
    for bad in ("USA", "1A", "", "from_token", None):
        with pytest.raises(InvalidInput) as info:
            validate.market(bad)
        assert info.value.field == "market"
    assert validate.limit(10, high=10) == 10
    for bad_limit in (0, 11, True, 2.0, "5"):
        with pytest.raises(InvalidInput) as info:
            validate.limit(bad_limit, high=10)
        assert info.value.field == "limit"


@pytest.mark.parametrize(
    "agent",
    [
        "YourApp/1.0 (contact@example.com)",
        "YourApp/1.0 ( contact@example.com )",
        "tunegate-demo/0.1.0 ( https://example.org/tunegate )",
        "MyTagger/2.3.1-beta python-musicbrainzngs/0.7.1 ( me@example.net )",
    ],
)
def test_user_agent_accepted(agent: str) -> None:
    """The 'App/1.0 (contact)' forms MusicBrainz asks for pass unchanged."""
    assert validate.musicbrainz_user_agent(f" {agent} ") == agent


@pytest.mark.parametrize(
    "agent",
    [
        None,
        "",
        "YourApp",
        "YourApp/1.0",
        "YourApp/1.0 ()",
        "YourApp/1.0 (contact)",  # a placeholder, no e-mail or URL
        "YourApp (contact@example.com)",  # no version
        "python-requests/2.31 (me@example.com)",
        "curl/8.0 (me@example.com)",
        "python-musicbrainz/0.7.3 ( me@example.com )",  # throttled by name on MusicBrainz
        "headphones/0.5 ( me@example.com )",  # throttled by name on MusicBrainz
        "YourApp/1.0 (me@example.com)\r\nX-Evil: 1",
    ],
)
def test_user_agent_refused_with_expected_form(agent: Any) -> None:
    """A missing or malformed User-Agent is a ConfigurationError that shows the expected form."""
    with pytest.raises(ConfigurationError) as info:
        validate.musicbrainz_user_agent(agent)
    message = str(info.value)
    assert "AppName/1.0" in message or "control" in message


@pytest.mark.parametrize(
    "key",
    [None, "", "   ", "has space", "a\x00b", "k" * 300, 12, "k", "abc1234", "key.with.dots+"],
)
def test_lastfm_key_refused_without_echo(key: Any) -> None:
    """A bad API key (absent, spaced, too short to be one, odd characters) is a
    ConfigurationError whose message never repeats the key."""
    with pytest.raises(ConfigurationError) as info:
        validate.lastfm_api_key(key)
    if isinstance(key, str) and len(key.strip()) > 3:  # a lone "k" is in any English text
        assert key.strip() not in str(info.value)


def test_lastfm_key_accepted_and_stripped() -> None:
    """Real-looking and placeholder keys pass; a trailing newline is dropped."""
    assert (
        validate.lastfm_api_key("0123456789abcdef0123456789abcdef\n")
        == "0123456789abcdef0123456789abcdef"
    )
    assert validate.lastfm_api_key("your_lastfm_api_key") == "your_lastfm_api_key"
    assert validate.lastfm_api_key("tunegate-test-key") == "tunegate-test-key"
    assert validate.lastfm_api_key("8chars_k") == "8chars_k"


def test_spotify_credentials() -> None:
    """Both credentials are required; messages name which one and never show them."""
    assert validate.spotify_credentials(" id ", "secret\n") == ("id", "secret")
    cases = [
        ("", "s3cr3t-canary", "client_id"),
        ("id", "", "client_secret"),
        ("id:x", "s3cr3t-canary", "client_id"),
        ("id", None, "client_secret"),
        ("id", "s3cr3t canary", "client_secret"),
    ]
    for cid, secret, named in cases:
        with pytest.raises(ConfigurationError) as info:
            validate.spotify_credentials(cid, secret)
        assert named in str(info.value)
        assert "canary" not in str(info.value)
