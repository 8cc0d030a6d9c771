"""Input checks that run before any network call.

User data (ISRCs, ids, artist and title text) that cannot be right raises
:class:`~tunegate.exceptions.InvalidInput` naming the argument; settings that cannot work
(credentials, the MusicBrainz User-Agent) raise :class:`~tunegate.exceptions.ConfigurationError`.
Each function returns the value in its normalised form, the form the request builders and
cache keys use. Messages show the offending user data (shortened) but never a credential.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

from tunegate.exceptions import ConfigurationError, InvalidInput

__all__ = [
    "isrc",
    "lastfm_api_key",
    "limit",
    "market",
    "mbid",
    "musicbrainz_user_agent",
    "spotify_credentials",
    "spotify_id",
    "spotify_ids",
    "text",
]

# ISO 3901: CC-XXX-YY-NNNNN, country (2 letters), registrant (3 alphanumerics), year of
# reference (2 digits), designation code (5 digits).
_ISRC = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{2}[0-9]{5}")
_ISRC_SEPARATORS = str.maketrans("", "", "- \t")
_BASE62_22 = re.compile(r"[0-9A-Za-z]{22}")
_SPOTIFY_URI = re.compile(r"spotify:([a-z]+):([0-9A-Za-z]+)")
_SPOTIFY_URL = re.compile(r"https?://open\.spotify\.com/(?:intl-[a-z-]+/)?([a-z]+)/([0-9A-Za-z]+)")
_MARKET = re.compile(r"[A-Za-z]{2}")
# C0 controls other than tab/newline/carriage return, and DEL: nothing a title contains.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# "AppName/1.2.0 ( contact )": MusicBrainz asks for a name, a version and a way to reach
# the author (https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting).
_USER_AGENT = re.compile(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+[^()]*\(\s*(?P<contact>[^()]*?)\s*\)")
# Library defaults MusicBrainz throttles or blocks as anonymous traffic, and the agents its
# rate-limiting page lists by name as throttled (headphones, python-musicbrainz/0.7.3; the
# trailing slash keeps "python-musicbrainzngs/..." out of it).
_GENERIC_AGENTS = (
    "python-musicbrainz/",
    "headphones/",
    "python-requests/",
    "python-urllib/",
    "python-httpx/",
    "httpx/",
    "aiohttp/",
    "python/",
    "curl/",
    "wget/",
    "go-http-client/",
    "java/",
    "okhttp/",
    "mozilla/",
)
_EXPECTED_UA = "'AppName/1.0 ( contact@example.com )' (a URL works as contact too)"
# Real Last.fm keys are 32 hex digits; placeholders ("your_lastfm_api_key", the emulator's
# "tunegate-test-key") are accepted. A floor of 8 keeps a stray "k" out: secret scrubbing
# would mask every "k" in every message.
_LASTFM_KEY = re.compile(r"[A-Za-z0-9_-]{8,256}")


def _shown(value: object, limit: int = 40) -> str:
    """A short ``repr`` of user data for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def text(value: object, field: str, max_len: int = 200) -> str:
    """Free text such as an artist or a title: a ``str``, not blank, at most ``max_len``
    characters after stripping, without control characters. Returns it stripped."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    stripped = value.strip()
    if not stripped:
        raise InvalidInput(field, "must not be empty")
    if len(stripped) > max_len:
        raise InvalidInput(field, f"must be at most {max_len} characters, got {len(stripped)}")
    # isprintable() first: True means no control character at all, with no regex scan.
    if not stripped.isprintable() and _CONTROL.search(stripped):
        raise InvalidInput(field, "must not contain control characters")
    return stripped


def isrc(value: object, field: str = "isrc") -> str:
    """An ISRC: 12 characters once hyphens and spaces are removed and letters upper-cased:
    2-letter country, 3 alphanumerics (registrant), 2 digits (year), 5 digits (designation).

    >>> isrc("us-ir2-04-00500")
    'USIR20400500'
    """
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    code = value.translate(_ISRC_SEPARATORS).upper()
    if not _ISRC.fullmatch(code):
        raise InvalidInput(
            field,
            "must be an ISRC: 2-letter country, 3 letters or digits, 2-digit year, "
            f"5-digit designation, e.g. 'USIR20400500'; got {_shown(value)}",
        )
    return code


def mbid(value: object, field: str = "mbid") -> str:
    """A MusicBrainz id (a UUID), returned in canonical lower-case hyphenated form."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    try:
        parsed = uuid.UUID(value.strip())
    except ValueError:
        raise InvalidInput(
            field,
            f"must be a MusicBrainz id (a UUID such as "
            f"'cb2cc207-8125-445c-9ef9-6ea44eee959a'); got {_shown(value)}",
        ) from None
    return str(parsed)


def spotify_id(value: object, field: str = "id", kind: str = "track") -> str:
    """A Spotify id: 22 base-62 characters. A ``spotify:{kind}:{id}`` URI or an
    ``https://open.spotify.com/{kind}/{id}`` link is accepted too and reduced to the id,
    as long as it names the expected ``kind`` (``"track"``, ``"artist"``...)."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    candidate = value.strip()
    link = _SPOTIFY_URI.fullmatch(candidate) or _SPOTIFY_URL.match(candidate)
    if link is not None:
        if link.group(1) != kind:
            raise InvalidInput(
                field, f"is a Spotify {link.group(1)} link, expected a {kind}: {_shown(value)}"
            )
        candidate = link.group(2)
    if not _BASE62_22.fullmatch(candidate):
        raise InvalidInput(
            field,
            f"must be a Spotify {kind} id (22 letters and digits, e.g. "
            f"'3n3Ppam7vgaVa1iaRUc9Lp'); got {_shown(value)}",
        )
    return candidate


def spotify_ids(
    values: Iterable[object], field: str = "ids", kind: str = "track", max_count: int = 10_000
) -> list[str]:
    """A sequence of Spotify ids (order and duplicates kept); a bad one is named by its
    position (``ids[3]``). A bare string is refused: it is almost always a mistake."""
    if isinstance(values, str | bytes):
        raise InvalidInput(field, "must be a list of ids, not a single string")
    out = [spotify_id(v, f"{field}[{i}]", kind) for i, v in enumerate(values)]
    if len(out) > max_count:
        raise InvalidInput(field, f"must hold at most {max_count} ids, got {len(out)}")
    return out


def market(value: object, field: str = "market") -> str:
    """An ISO 3166-1 alpha-2 country code, upper-cased (``"us"`` -> ``"US"``)."""
    if not isinstance(value, str) or not _MARKET.fullmatch(value.strip()):
        raise InvalidInput(
            field, f"must be a 2-letter ISO 3166-1 country code such as 'US'; got {_shown(value)}"
        )
    return value.strip().upper()


def limit(value: object, field: str = "limit", *, low: int = 1, high: int) -> int:
    """An integer page size within ``low..high`` (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low} and {high}, got {value}")
    return value


def musicbrainz_user_agent(value: object) -> str:
    """The User-Agent MusicBrainz requires: ``"AppName/1.0 ( contact )"``, where the
    contact is an e-mail address or a URL. Generic library agents (python-requests,
    curl...) are refused: MusicBrainz throttles them as anonymous traffic.

    Raises:
        ConfigurationError: naming the expected form.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"MusicBrainz requires a user_agent of the form {_EXPECTED_UA}; got none"
        )
    agent = value.strip()
    if _ANY_CONTROL.search(agent):
        raise ConfigurationError("MusicBrainz user_agent must not contain control characters")
    match = _USER_AGENT.match(agent)
    contact = match.group("contact") if match else ""
    if match is None or not any(mark in contact for mark in ("@", ".", "://")):
        raise ConfigurationError(
            f"MusicBrainz user_agent must be of the form {_EXPECTED_UA}: an application "
            f"name, a slash, a version, and a contact in parentheses; got {_shown(agent, 80)}"
        )
    if agent.lower().startswith(_GENERIC_AGENTS):
        raise ConfigurationError(
            f"MusicBrainz user_agent must name your application, not an HTTP library "
            f"(MusicBrainz throttles those); use {_EXPECTED_UA}; got {_shown(agent, 80)}"
        )
    return agent


def _credential(value: object, name: str, max_len: int = 256) -> str:
    # Never echo the value: it is a secret, and so may be anything it was confused with.
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} is required (a non-empty string)")
    stripped = value.strip()
    if len(stripped) > max_len or any(ch.isspace() for ch in stripped):
        raise ConfigurationError(f"{name} is malformed (spaces inside, or over {max_len} chars)")
    if _ANY_CONTROL.search(stripped):
        raise ConfigurationError(f"{name} must not contain control characters")
    return stripped


def lastfm_api_key(value: object) -> str:
    """A Last.fm API key: 8 to 256 characters of ``[A-Za-z0-9_-]``. Real keys are 32 hex
    digits; placeholders such as the design's ``'your_lastfm_api_key'`` and the emulator's
    ``'tunegate-test-key'`` pass too. Returns it stripped (trailing newlines from
    environment files are common)."""
    key = _credential(value, "Last.fm api_key")
    if not _LASTFM_KEY.fullmatch(key):
        raise ConfigurationError(
            "Last.fm api_key is malformed: expected 8 to 256 letters, digits, '_' or '-' "
            "(real keys are 32 hexadecimal digits)"
        )
    return key


def spotify_credentials(client_id: object, client_secret: object) -> tuple[str, str]:
    """Spotify client-credentials: both present; the id without ``:`` (it is joined to the
    secret with a colon for HTTP Basic authentication, RFC 7617)."""
    cid = _credential(client_id, "Spotify client_id")
    if ":" in cid:
        raise ConfigurationError("Spotify client_id must not contain ':'")
    return cid, _credential(client_secret, "Spotify client_secret")
