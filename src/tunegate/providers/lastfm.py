"""Last.fm API 2.0 (JSON) without I/O: request building, quirk-absorbing parsers, errors.

Last.fm's JSON is machine-converted XML (lastfm-docs ``docs/bugs.md``): attributes become
``@attr``, element text becomes ``#text``, numbers arrive as strings, and a collection with
one element arrives as a bare object instead of a one-element list. The parsers here absorb
all of that and return the clean shapes in :mod:`tunegate.providers.types`. Errors come as
``{"error": N, "message": ...}``, very often with HTTP 200.

Every request carries the API key as the ``api_key`` query parameter, marked secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, TypedDict

from tunegate.exceptions import (
    AuthenticationError,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from tunegate.providers import validate
from tunegate.providers._request import (
    ApiRequest,
    clean_message,
    decode_body,
    error_by_status,
    hook_for,
    malformed,
    request_id_from,
    retry_after_from,
)
from tunegate.providers.spec import LASTFM
from tunegate.providers.types import (
    LastFmAlbumRef,
    LastFmArtistInfo,
    LastFmArtistRef,
    LastFmCorrection,
    LastFmImage,
    LastFmTag,
    LastFmTrackInfo,
    LastFmTrackMatch,
    LastFmWiki,
)

__all__ = [
    "AUTH_CODES",
    "BASE_URL",
    "NOT_FOUND_CODES",
    "PATH",
    "RATE_LIMIT_CODES",
    "TRANSIENT_CODES",
    "artist_info_request",
    "artist_top_tags_request",
    "as_int",
    "as_list",
    "classify_body_error",
    "classify_error",
    "classify_response",
    "endpoint_for",
    "hook",
    "parse_artist_info",
    "parse_correction",
    "parse_tag_objects",
    "parse_top_tag_counts",
    "parse_top_tags",
    "parse_track_info",
    "parse_track_search",
    "text_of",
    "track_correction_request",
    "track_info_request",
    "track_search_request",
    "track_top_tags_request",
]

PROVIDER: Final = "lastfm"
BASE_URL: Final = LASTFM.base_url
PATH: Final = "/2.0/"
SEARCH_LIMIT_MAX: Final = LASTFM.search_limit_max

# https://www.last.fm/api/errorcodes
NOT_FOUND_CODES: Final = frozenset({6})
AUTH_CODES: Final = frozenset({4, 9, 10, 13, 14, 15, 26})
TRANSIENT_CODES: Final = frozenset({8, 11, 16})
RATE_LIMIT_CODES: Final = frozenset({29})
_FIXED_MESSAGES: Final = {
    10: "invalid API key (Last.fm error 10)",
    26: "suspended API key (Last.fm error 26)",
}
# Last.fm keys and secrets are 32 hex digits: keep any such run out of messages.
_KEY_LIKE = re.compile(r"\b[0-9a-fA-F]{32}\b")
# The XML form of an error, should an answer come back without format=json honoured.
_XML_ERROR = re.compile(r'<error\s+code="(\d+)"\s*>([^<]*)</error>')


# --- requests -------------------------------------------------------------------------------


def endpoint_for(method: str) -> str:
    """The templated endpoint of a Last.fm method, for logs and metrics."""
    return f"{PATH}?method={method}"


def _request(
    method: str,
    api_key: str,
    params: tuple[tuple[str, str], ...],
    cache_kind: str,
    cache_parts: tuple[str, ...],
    not_found_result: Literal["none", "empty"],
) -> ApiRequest:
    return ApiRequest(
        provider=PROVIDER,
        method="GET",
        endpoint_template=endpoint_for(method),
        path=PATH,
        params=(("method", method), *params, ("api_key", api_key), ("format", "json")),
        cache_kind=cache_kind,
        cache_parts=cache_parts,
        secret_params=frozenset({"api_key"}),
        not_found_result=not_found_result,
    )


def _autocorrect(autocorrect: bool) -> tuple[tuple[str, str], ...]:
    return (("autocorrect", "1" if autocorrect else "0"),)


def _not_default(autocorrect: bool) -> tuple[str, ...]:
    # The design's keys assume the default (autocorrect on); only the other case is marked.
    return () if autocorrect else ("autocorrect=0",)


def track_top_tags_request(
    artist: str, track: str, *, api_key: str, autocorrect: bool = True, counts: bool = False
) -> ApiRequest:
    """``track.getTopTags``; cached as ``lastfm:track_tags:{artist}:{track}``, or as
    ``lastfm:track_tag_counts:...`` with ``counts=True`` (for :func:`parse_top_tag_counts`:
    each kind holds one parser's result). Unknown track: an empty list (Last.fm answers 200
    with ``tag: []``, or error 6)."""
    artist, track = validate.text(artist, "artist"), validate.text(track, "track")
    return _request(
        "track.getTopTags",
        api_key,
        (("artist", artist), ("track", track), *_autocorrect(autocorrect)),
        "lastfm:track_tag_counts" if counts else "lastfm:track_tags",
        (artist, track, *_not_default(autocorrect)),
        "empty",
    )


def track_info_request(
    artist: str, track: str, *, api_key: str, autocorrect: bool = True
) -> ApiRequest:
    """``track.getInfo``; cached as ``lastfm:track_info:{artist}:{track}``. Unknown: None."""
    artist, track = validate.text(artist, "artist"), validate.text(track, "track")
    return _request(
        "track.getInfo",
        api_key,
        (("artist", artist), ("track", track), *_autocorrect(autocorrect)),
        "lastfm:track_info",
        (artist, track, *_not_default(autocorrect)),
        "none",
    )


def track_correction_request(artist: str, track: str, *, api_key: str) -> ApiRequest:
    """``track.getCorrection``; cached as ``lastfm:correction:{artist}:{track}``.
    Unknown: None."""
    artist, track = validate.text(artist, "artist"), validate.text(track, "track")
    return _request(
        "track.getCorrection",
        api_key,
        (("artist", artist), ("track", track)),
        "lastfm:correction",
        (artist, track),
        "none",
    )


def artist_top_tags_request(artist: str, *, api_key: str, autocorrect: bool = True) -> ApiRequest:
    """``artist.getTopTags``; cached as ``lastfm:artist_tags:{artist}``. Unknown artist
    (error 6): an empty list."""
    artist = validate.text(artist, "artist")
    return _request(
        "artist.getTopTags",
        api_key,
        (("artist", artist), *_autocorrect(autocorrect)),
        "lastfm:artist_tags",
        (artist, *_not_default(autocorrect)),
        "empty",
    )


def artist_info_request(artist: str, *, api_key: str, autocorrect: bool = True) -> ApiRequest:
    """``artist.getInfo``; cached as ``lastfm:artist_info:{artist}``. Unknown: None."""
    artist = validate.text(artist, "artist")
    return _request(
        "artist.getInfo",
        api_key,
        (("artist", artist), *_autocorrect(autocorrect)),
        "lastfm:artist_info",
        (artist, *_not_default(autocorrect)),
        "none",
    )


def track_search_request(
    track: str, artist: str | None = None, *, api_key: str, limit: int = 10
) -> ApiRequest:
    """``track.search``; cached as ``lastfm:track_search:{artist}:{track}`` (artist part
    empty when not given). No match: an empty list."""
    track = validate.text(track, "track")
    limit = validate.limit(limit, high=SEARCH_LIMIT_MAX)
    artist_params: tuple[tuple[str, str], ...] = ()
    if artist is not None:
        artist = validate.text(artist, "artist")
        artist_params = (("artist", artist),)
    return _request(
        "track.search",
        api_key,
        (("track", track), *artist_params, ("limit", str(limit))),
        "lastfm:track_search",
        (artist or "", track, *((f"limit={limit}",) if limit != 10 else ())),
        "empty",
    )


# --- the quirks -----------------------------------------------------------------------------


def as_list(value: object) -> list[Any]:
    """A collection that may have been collapsed: a list stays, a bare object becomes a
    one-element list, an absent or empty value (None, ``""``, ``"\\n"``) becomes []."""
    if isinstance(value, list):
        return value
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    return [value]


def as_int(value: object, default: int = 0) -> int:
    """A number that may be a string (``"1315650"``, ``"0.5"``); ``default`` when unreadable."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                return int(float(value))
            except (ValueError, OverflowError):
                return default
    return default


def text_of(value: object) -> str:
    """Element text: a plain string, or the ``#text`` of an object; else ``""``."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = value.get("#text")
        return inner if isinstance(inner, str) else ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _opt(value: object) -> str | None:
    """Empty strings (Last.fm's "no mbid", "no url") as None."""
    text = text_of(value).strip()
    return text or None


def _attr(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    attr = obj.get("@attr")
    return attr if isinstance(attr, Mapping) else {}


def _flag(value: object) -> bool:
    return as_int(text_of(value) if isinstance(value, Mapping) else value) != 0


def _object(body: object, key: str, method: str) -> Mapping[str, Any]:
    inner = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(inner, Mapping):
        raise malformed(PROVIDER, endpoint_for(method), f"answer has no {key!r} object")
    return inner


def _images(value: object) -> list[LastFmImage]:
    out: list[LastFmImage] = []
    for image in as_list(value):
        url = text_of(image).strip()
        if url:
            size = image.get("size", "") if isinstance(image, Mapping) else ""
            out.append({"url": url, "size": size if isinstance(size, str) else ""})
    return out


def _names(container: object, key: str) -> list[str]:
    """Names from ``{key: [ {name}, ... ]}`` (or a bare object, or a string)."""
    if not isinstance(container, Mapping):
        return []
    names = [
        text_of(item.get("name") if isinstance(item, Mapping) else item).strip()
        for item in as_list(container.get(key))
    ]
    return [name for name in names if name]


def _wiki(value: object) -> LastFmWiki | None:
    if not isinstance(value, Mapping):
        return None
    return {
        "published": _opt(value.get("published")),
        "summary": text_of(value.get("summary")),
        "content": text_of(value.get("content")),
    }


def _artist_ref(value: object) -> LastFmArtistRef:
    if isinstance(value, Mapping):
        return {
            "name": text_of(value.get("name")) or text_of(value),
            "mbid": _opt(value.get("mbid")),
            "url": _opt(value.get("url")),
        }
    return {"name": text_of(value), "mbid": None, "url": None}


# --- parsers --------------------------------------------------------------------------------


def parse_tag_objects(body: object, method: str = "track.getTopTags") -> list[LastFmTag]:
    """``track.getTopTags`` / ``artist.getTopTags``: the tags, highest count first (ties in
    Last.fm's order), duplicates (by case-folded name) and nameless entries dropped."""
    tags: list[LastFmTag] = []
    seen: set[str] = set()
    for item in as_list(_object(body, "toptags", method).get("tag")):
        if not isinstance(item, Mapping):
            continue
        name = text_of(item.get("name")).strip()
        if not name or name.casefold() in seen:
            continue
        seen.add(name.casefold())
        tags.append(
            {"name": name, "count": as_int(item.get("count")), "url": text_of(item.get("url"))}
        )
    tags.sort(key=lambda tag: -tag["count"])  # stable: equal counts keep Last.fm's order
    return tags


def parse_top_tags(body: object, method: str = "track.getTopTags") -> list[str]:
    """Tag names ordered by count, as the design uses them: ``', '.join(tags[:5])``."""
    return [tag["name"] for tag in parse_tag_objects(body, method)]


def parse_top_tag_counts(body: object, method: str = "track.getTopTags") -> list[tuple[str, int]]:
    """``(name, count)`` pairs ordered by count."""
    return [(tag["name"], tag["count"]) for tag in parse_tag_objects(body, method)]


def parse_track_info(body: object) -> LastFmTrackInfo:
    """``track.getInfo``. For a track Last.fm does not know, it may answer a stub (zero
    duration, no tags) rather than error 6; that stub is returned as it is."""
    track = _object(body, "track", "track.getInfo")
    name = text_of(track.get("name")).strip()
    if not name:
        raise malformed(PROVIDER, endpoint_for("track.getInfo"), "track has no name")
    album_raw = track.get("album")
    album: LastFmAlbumRef | None = None
    if isinstance(album_raw, Mapping) and text_of(album_raw.get("title")).strip():
        position = _attr(album_raw).get("position")
        album = {
            "title": text_of(album_raw.get("title")).strip(),
            "artist": text_of(album_raw.get("artist")).strip(),
            "mbid": _opt(album_raw.get("mbid")),
            "url": _opt(album_raw.get("url")),
            "position": as_int(position) if position is not None else None,
            "images": _images(album_raw.get("image")),
        }
    duration = as_int(track.get("duration"))
    return {
        "name": name,
        "mbid": _opt(track.get("mbid")),
        "url": _opt(track.get("url")),
        "duration_ms": duration or None,
        "listeners": as_int(track.get("listeners")),
        "playcount": as_int(track.get("playcount")),
        "artist": _artist_ref(track.get("artist")),
        "album": album,
        "tags": _names(track.get("toptags"), "tag"),
        "wiki": _wiki(track.get("wiki")),
    }


def parse_artist_info(body: object) -> LastFmArtistInfo:
    """``artist.getInfo``."""
    artist = _object(body, "artist", "artist.getInfo")
    name = text_of(artist.get("name")).strip()
    if not name:
        raise malformed(PROVIDER, endpoint_for("artist.getInfo"), "artist has no name")
    stats = artist.get("stats")
    stats = stats if isinstance(stats, Mapping) else {}
    return {
        "name": name,
        "mbid": _opt(artist.get("mbid")),
        "url": _opt(artist.get("url")),
        "listeners": as_int(stats.get("listeners")),
        "playcount": as_int(stats.get("playcount")),
        "on_tour": _flag(artist.get("ontour")),
        "images": _images(artist.get("image")),
        "tags": _names(artist.get("tags"), "tag"),
        "similar": _names(artist.get("similar"), "artist"),
        "bio": _wiki(artist.get("bio")),
    }


def parse_correction(body: object) -> LastFmCorrection | None:
    """``track.getCorrection``: the canonical names, or None when Last.fm knows no such
    track (it answers an envelope whose track has no name and empty urls)."""
    if not isinstance(body, Mapping) or "corrections" not in body:
        raise malformed(PROVIDER, endpoint_for("track.getCorrection"), "no 'corrections'")
    corrections = body["corrections"]
    if not isinstance(corrections, Mapping):
        return None  # "corrections": "\n" when there is nothing to say
    for correction in as_list(corrections.get("correction")):
        if not isinstance(correction, Mapping):
            continue
        track = correction.get("track")
        if not isinstance(track, Mapping):
            continue
        name = text_of(track.get("name")).strip()
        artist = _artist_ref(track.get("artist"))
        if not name or not artist["name"].strip():
            continue
        attr = _attr(correction)
        return {
            "artist": artist["name"].strip(),
            "track": name,
            "mbid": _opt(track.get("mbid")),
            "artist_mbid": artist["mbid"],
            "url": _opt(track.get("url")),
            "artist_corrected": _flag(attr.get("artistcorrected")),
            "track_corrected": _flag(attr.get("trackcorrected")),
        }
    return None


def parse_track_search(body: object) -> list[LastFmTrackMatch]:
    """``track.search``: the hits in Last.fm's order (an empty list when none)."""
    results = _object(body, "results", "track.search")
    matches = results.get("trackmatches")
    items = as_list(matches.get("track")) if isinstance(matches, Mapping) else []
    out: list[LastFmTrackMatch] = []
    for item in items:
        if not isinstance(item, Mapping) or not text_of(item.get("name")).strip():
            continue
        out.append(
            {
                "name": text_of(item.get("name")).strip(),
                "artist": _artist_ref(item.get("artist"))["name"].strip(),
                "mbid": _opt(item.get("mbid")),
                "url": _opt(item.get("url")),
                "listeners": as_int(item.get("listeners")),
            }
        )
    return out


# --- errors ---------------------------------------------------------------------------------


def _error_for_code(
    code: int,
    message: str,
    *,
    endpoint: str,
    status: int | None,
    retry_after: float | None,
    request_id: str | None,
) -> ProviderError:
    text = _FIXED_MESSAGES.get(code) or f"error {code}: {message or 'no message'}"
    kwargs: dict[str, Any] = {
        "provider": PROVIDER,
        "endpoint": endpoint,
        "status": status,
        "code": code,
        "request_id": request_id,
    }
    if code in NOT_FOUND_CODES:
        return NotFound(text, **kwargs)
    if code in AUTH_CODES:
        return AuthenticationError(text, **kwargs)
    if code in RATE_LIMIT_CODES:
        return RateLimited(text, retry_after=retry_after, **kwargs)
    if code in TRANSIENT_CODES:
        return ProviderUnavailable(text, retry_after=retry_after, **kwargs)
    return ProviderError(text, **kwargs)


def classify_body_error(
    body: object,
    *,
    endpoint: str = PATH,
    status: int | None = 200,
    headers: Mapping[str, str] | None = None,
    now_wall: float | None = None,
) -> ProviderError | None:
    """The error inside an answer ``{"error": N, "message": ...}``, whatever its HTTP
    status (often 200), or None when the body is not an error.

    6 -> :class:`NotFound` (the client turns it into None or [] as the request's
    ``not_found_result`` says); 4, 9, 10, 13, 14, 15, 26 -> :class:`AuthenticationError`;
    8, 11, 16 -> :class:`ProviderUnavailable` (transient); 29 -> :class:`RateLimited`;
    any other code a permanent :class:`ProviderError`. The message never holds the key.
    """
    data = decode_body(body)
    if isinstance(data, Mapping) and "error" in data:
        code, message = as_int(data.get("error"), default=-1), data.get("message")
    elif isinstance(data, str) and (xml := _XML_ERROR.search(data)) is not None:
        code, message = int(xml.group(1)), xml.group(2)
    else:
        return None
    headers = headers or {}
    return _error_for_code(
        code,
        clean_message(message, _KEY_LIKE),
        endpoint=endpoint,
        status=status,
        retry_after=retry_after_from(headers, now_wall),
        request_id=request_id_from(headers),
    )


def classify_error(
    status: int,
    body: object,
    headers: Mapping[str, str],
    *,
    endpoint: str = PATH,
    now_wall: float | None = None,
) -> ProviderError:
    """The error for a non-2xx answer: by the Last.fm code in the body when there is one
    (a 400 or 404 carrying error 6 is still "not found"), else by HTTP status."""
    found = classify_body_error(
        body, endpoint=endpoint, status=status, headers=headers, now_wall=now_wall
    )
    if found is not None:
        return found
    data = decode_body(body)
    # Plain-text bodies say something useful; HTML error pages do not.
    plain = isinstance(data, str) and not data.lstrip().startswith("<")
    message = clean_message(data, _KEY_LIKE) if plain else ""
    return error_by_status(
        PROVIDER,
        endpoint,
        status,
        message,
        retry_after=retry_after_from(headers, now_wall),
        request_id=request_id_from(headers),
    )


def classify_response(
    status: int,
    body: object,
    headers: Mapping[str, str],
    *,
    endpoint: str = PATH,
    now_wall: float | None = None,
) -> ProviderError | None:
    """None for a usable answer, else its error: an error body is an error even with 200."""
    if 200 <= status < 300:
        return classify_body_error(
            body, endpoint=endpoint, status=status, headers=headers, now_wall=now_wall
        )
    return classify_error(status, body, headers, endpoint=endpoint, now_wall=now_wall)


hook = hook_for(classify_response)


# --- artist.getSimilar (the design's get_similar_artists) -----------------------------------

SIMILAR_LIMIT_DEFAULT: Final = 30  # Last.fm's documented default
SIMILAR_LIMIT_MAX: Final = 250


class LastFmSimilarArtist(TypedDict):
    """One ``artist.getSimilar`` entry: ``match`` is Last.fm's similarity, 0 to 1 (1 the
    nearest), read from the string it sends."""

    name: str
    mbid: str | None
    match: float
    url: str | None
    images: list[LastFmImage]


def artist_similar_request(
    artist: str,
    *,
    api_key: str,
    limit: int = SIMILAR_LIMIT_DEFAULT,
    autocorrect: bool = True,
) -> ApiRequest:
    """``artist.getSimilar``; cached as ``lastfm:similar_artists:{artist}`` (plus
    ``limit=N`` when not the default). Unknown artist (error 6): an empty list."""
    artist = validate.text(artist, "artist")
    limit = validate.limit(limit, high=SIMILAR_LIMIT_MAX)
    parts: tuple[str, ...] = (artist,)
    if limit != SIMILAR_LIMIT_DEFAULT:
        parts += (f"limit={limit}",)
    return _request(
        "artist.getSimilar",
        api_key,
        (("artist", artist), ("limit", str(limit)), *_autocorrect(autocorrect)),
        "lastfm:similar_artists",
        (*parts, *_not_default(autocorrect)),
        "empty",
    )


def _match(value: object) -> float:
    """A match score sent as a string (``"0.600213"``) or a number, within 0..1."""
    if isinstance(value, bool):
        return 0.0
    try:
        score = float(text_of(value) if not isinstance(value, int | float) else value)
    except ValueError:
        return 0.0
    return min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0


def parse_similar_artists(body: object) -> list[LastFmSimilarArtist]:
    """``artist.getSimilar``: the similar artists, nearest first as Last.fm sends them
    (an empty list when there are none); nameless entries dropped."""
    similar = _object(body, "similarartists", "artist.getSimilar")
    out: list[LastFmSimilarArtist] = []
    for item in as_list(similar.get("artist")):
        if not isinstance(item, Mapping):
            continue
        name = text_of(item.get("name")).strip()
        if not name:
            continue
        out.append(
            {
                "name": name,
                "mbid": _opt(item.get("mbid")),
                "match": _match(item.get("match")),
                "url": _opt(item.get("url")),
                "images": _images(item.get("image")),
            }
        )
    return out
