"""Spotify Web API without I/O: request building, parsing, ranking, error classification.

Paths are absolute from the origin (``/v1/...`` on ``https://api.spotify.com``,
``/api/token`` on ``https://accounts.spotify.com``). The bearer token is not part of an
:class:`ApiRequest`: the client adds ``Authorization: Bearer ...`` when it sends.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from tunegate.exceptions import AuthenticationError, ProviderError, RateLimited
from tunegate.providers import matching, validate
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
from tunegate.providers.spec import SPOTIFY
from tunegate.providers.types import SpotifyAlbum, SpotifyArtist, SpotifyArtistRef, SpotifyTrack

__all__ = [
    "API_BASE_URL",
    "AUTH_BASE_URL",
    "BATCH_MAX",
    "SEARCH_LIMIT_MAX",
    "TOKEN_EXPIRED",
    "TOKEN_INVALID",
    "SpotifyToken",
    "artist_request",
    "assemble_tracks",
    "best_match",
    "classify_error",
    "classify_response",
    "classify_token_error",
    "hook",
    "parse_artist",
    "parse_search_tracks",
    "parse_token",
    "parse_track",
    "parse_tracks",
    "pick_isrc_match",
    "quote_phrase",
    "search_isrc_request",
    "search_track_request",
    "should_refresh_token",
    "token_request",
    "track_request",
    "tracks_requests",
]

PROVIDER: Final = "spotify"
API_BASE_URL: Final = SPOTIFY.base_url
AUTH_BASE_URL: Final = SPOTIFY.auth_url
SEARCH_LIMIT_MAX: Final = SPOTIFY.search_limit_max
# GET /v1/tracks?ids= takes at most this many ids (official OpenAPI).
BATCH_MAX: Final = SPOTIFY.batch_max

TOKEN_EXPIRED: Final = "token_expired"
TOKEN_INVALID: Final = "token_invalid"

SEARCH_ENDPOINT: Final = "/v1/search"
TRACK_ENDPOINT: Final = "/v1/tracks/{id}"
TRACKS_ENDPOINT: Final = "/v1/tracks"
ARTIST_ENDPOINT: Final = "/v1/artists/{id}"
TOKEN_ENDPOINT: Final = "/api/token"

# Opaque runs as long as a bearer token or a client secret: never let one into a message.
_CREDENTIAL_LIKE = re.compile(r"[A-Za-z0-9_\-]{32,}")
_PHRASE_BREAKERS = re.compile(r'["\\:\s]+')


# --- requests -------------------------------------------------------------------------------


def quote_phrase(text: str) -> str:
    """User text as one quoted phrase for a ``q`` field filter.

    Spotify documents no escape character inside quotes, so the characters that could end
    the phrase (``"`` and ``\\``) become spaces, and so does ``:`` so that no ``field:``
    filter can appear even where quoting were ignored; its matching ignores punctuation,
    so nothing is lost. The result is always ``"..."`` with no quote, backslash or colon
    between the quotes.
    """
    return '"' + _PHRASE_BREAKERS.sub(" ", text).strip() + '"'


def _market_params(market: str | None) -> tuple[tuple[str, str], ...]:
    return () if market is None else (("market", validate.market(market)),)


def search_track_request(
    artist: str, title: str, market: str | None = None, limit: int = SEARCH_LIMIT_MAX
) -> ApiRequest:
    """``GET /v1/search?type=track&q=track:"<title>" artist:"<artist>"``.

    Cached as ``spotify:search:{artist}:{title}`` (plus ``market=..`` / ``limit=..`` parts
    when they differ from the defaults, since they change the answer).
    """
    artist = validate.text(artist, "artist")
    title = validate.text(title, "title")
    limit = validate.limit(limit, high=SEARCH_LIMIT_MAX)
    market_params = _market_params(market)
    query = f"track:{quote_phrase(title)} artist:{quote_phrase(artist)}"
    parts = (artist, title, *(f"{k}={v}" for k, v in market_params))
    if limit != SEARCH_LIMIT_MAX:
        parts += (f"limit={limit}",)
    return ApiRequest(
        provider=PROVIDER,
        method="GET",
        endpoint_template=SEARCH_ENDPOINT,
        path=SEARCH_ENDPOINT,
        params=(("q", query), ("type", "track"), ("limit", str(limit)), *market_params),
        cache_kind="spotify:search",
        cache_parts=parts,
        not_found_result="none",
    )


def search_isrc_request(isrc: str, market: str | None = None) -> ApiRequest:
    """``GET /v1/search?type=track&q=isrc:<ISRC>``; cached as ``spotify:isrc:{isrc}``."""
    code = validate.isrc(isrc)
    market_params = _market_params(market)
    return ApiRequest(
        provider=PROVIDER,
        method="GET",
        endpoint_template=SEARCH_ENDPOINT,
        path=SEARCH_ENDPOINT,
        params=(("q", f"isrc:{code}"), ("type", "track"), ("limit", "10"), *market_params),
        cache_kind="spotify:isrc",
        cache_parts=(code, *(f"{k}={v}" for k, v in market_params)),
    )


def track_request(track_id: str, market: str | None = None) -> ApiRequest:
    """``GET /v1/tracks/{id}``; cached as ``spotify:track:{spotify_id}``."""
    tid = validate.spotify_id(track_id, "track_id", "track")
    market_params = _market_params(market)
    return ApiRequest(
        provider=PROVIDER,
        method="GET",
        endpoint_template=TRACK_ENDPOINT,
        path=f"/v1/tracks/{tid}",
        params=market_params,
        cache_kind="spotify:track",
        cache_parts=(tid, *(f"{k}={v}" for k, v in market_params)),
    )


def tracks_requests(ids: Iterable[str], market: str | None = None) -> list[ApiRequest]:
    """``GET /v1/tracks?ids=...`` in chunks of :data:`BATCH_MAX` unique ids, first-seen order.

    Not cached as a unit (``cache_kind`` None): the client caches each track under
    ``spotify:track:{id}`` and asks only for the ids it misses. Put the answers back in
    the caller's order with :func:`assemble_tracks`. The batch endpoint was removed for
    Development-Mode apps in 2026 (it answers 403): fall back to :func:`track_request`.
    """
    unique = list(dict.fromkeys(validate.spotify_ids(ids, "ids", "track")))
    market_params = _market_params(market)
    return [
        ApiRequest(
            provider=PROVIDER,
            method="GET",
            endpoint_template=TRACKS_ENDPOINT,
            path=TRACKS_ENDPOINT,
            params=(("ids", ",".join(unique[i : i + BATCH_MAX])), *market_params),
        )
        for i in range(0, len(unique), BATCH_MAX)
    ]


def assemble_tracks(
    ids: Sequence[str], chunks: Sequence[Sequence[SpotifyTrack | None]]
) -> list[SpotifyTrack | None]:
    """The tracks for ``ids`` in the caller's order (duplicates repeated, None for unknown
    ids), from the parsed answers to :func:`tracks_requests`, in the same order.

    Positions are used, not ``track["id"]``: with a market, Spotify may relink a track and
    answer with another id (``linked_from`` holds the requested one).
    """
    wanted = validate.spotify_ids(ids, "ids", "track")
    unique = list(dict.fromkeys(wanted))
    flat = [track for chunk in chunks for track in chunk]
    if len(flat) != len(unique):
        raise malformed(
            PROVIDER, TRACKS_ENDPOINT, f"expected {len(unique)} tracks, got {len(flat)}"
        )
    by_id = dict(zip(unique, flat, strict=True))
    return [by_id[i] for i in wanted]


def artist_request(artist_id: str) -> ApiRequest:
    """``GET /v1/artists/{id}``; cached as ``spotify:artist:{spotify_id}``."""
    aid = validate.spotify_id(artist_id, "artist_id", "artist")
    return ApiRequest(
        provider=PROVIDER,
        method="GET",
        endpoint_template=ARTIST_ENDPOINT,
        path=f"/v1/artists/{aid}",
        cache_kind="spotify:artist",
        cache_parts=(aid,),
    )


def token_request(client_id: str, client_secret: str) -> ApiRequest:
    """The client-credentials token request: ``POST /api/token`` on the accounts host with
    ``grant_type=client_credentials`` and HTTP Basic credentials (marked secret)."""
    cid, secret = validate.spotify_credentials(client_id, client_secret)
    basic = base64.b64encode(f"{cid}:{secret}".encode()).decode("ascii")
    return ApiRequest(
        provider=PROVIDER,
        method="POST",
        endpoint_template=TOKEN_ENDPOINT,
        path=TOKEN_ENDPOINT,
        data=(("grant_type", "client_credentials"),),
        headers=(("Authorization", f"Basic {basic}"),),
        secret_params=frozenset({"Authorization"}),
    )


# --- token ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpotifyToken:
    """A client-credentials access token. Its ``repr`` hides the token itself.

    ``expires_at`` and ``refresh_at`` are on the clock of the ``now`` given to
    :func:`parse_token` (use a wall clock when the token is shared through Redis).
    """

    access_token: str = field(repr=False)
    token_type: str
    expires_at: float
    refresh_at: float

    def needs_refresh(self, now: float) -> bool:
        """True once ``now`` reaches ``refresh_at``, a little before the real expiry."""
        return now >= self.refresh_at

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value for Web API calls."""
        return f"Bearer {self.access_token}"


def parse_token(body: object, now: float) -> SpotifyToken:
    """The token endpoint's 200 answer ``{access_token, token_type, expires_in}``.

    The refresh point comes 60 s before expiry as spotipy does, or at 90 % of the lifetime
    for short-lived tokens, so a token never counts as expired the moment it is issued.
    """
    if not isinstance(body, Mapping):
        raise malformed(PROVIDER, TOKEN_ENDPOINT, "token answer is not a JSON object")
    token = body.get("access_token")
    token_type = body.get("token_type", "Bearer")
    expires_in = body.get("expires_in")
    if not isinstance(token, str) or not token:
        raise malformed(PROVIDER, TOKEN_ENDPOINT, "token answer has no access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise malformed(PROVIDER, TOKEN_ENDPOINT, "token answer is not a bearer token")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise malformed(PROVIDER, TOKEN_ENDPOINT, "token answer has no positive expires_in")
    margin = min(60.0, 0.1 * float(expires_in))
    return SpotifyToken(
        access_token=token,
        token_type="Bearer",
        expires_at=now + float(expires_in),
        refresh_at=now + float(expires_in) - margin,
    )


# --- parsing --------------------------------------------------------------------------------


def _keys(cls: Any) -> frozenset[str]:
    return frozenset(cls.__required_keys__ | cls.__optional_keys__)


_TRACK_KEYS = _keys(SpotifyTrack)
_ALBUM_KEYS = _keys(SpotifyAlbum)
_ARTIST_REF_KEYS = _keys(SpotifyArtistRef)
_ARTIST_KEYS = _keys(SpotifyArtist)


def _artist_ref(obj: Any) -> SpotifyArtistRef | None:
    # ``type(...) is dict`` first: the Mapping check (an ABC's) costs more than the rest.
    if type(obj) is not dict and not isinstance(obj, Mapping):
        return None
    if not isinstance(obj.get("name"), str):
        return None
    return cast(SpotifyArtistRef, {k: v for k, v in obj.items() if k in _ARTIST_REF_KEYS})


def _trimmed(obj: Mapping[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    """``obj`` without the keys not in ``keys``, in its own order: a copy and the few
    deletions (``available_markets``) cost less than a filtered rebuild."""
    out = dict(obj)
    for k in obj.keys() - keys:
        del out[k]
    return out


def _track(obj: Any, endpoint: str) -> SpotifyTrack:
    """One TrackObject trimmed to the declared fields (drops ``available_markets``)."""
    if not (type(obj) is dict or isinstance(obj, Mapping)):
        raise malformed(PROVIDER, endpoint, "track is not a JSON object")
    if not isinstance(obj.get("id"), str) or not isinstance(obj.get("name"), str):
        raise malformed(PROVIDER, endpoint, "track has no id or name")
    artists = obj.get("artists")
    if not isinstance(artists, list):
        raise malformed(PROVIDER, endpoint, "track has no artists list")
    out = _trimmed(obj, _TRACK_KEYS)
    out["artists"] = [a for a in map(_artist_ref, artists) if a is not None]
    album = obj.get("album")
    if type(album) is dict or isinstance(album, Mapping):
        trimmed = _trimmed(album, _ALBUM_KEYS)
        if isinstance(album.get("artists"), list):
            trimmed["artists"] = [a for a in map(_artist_ref, album["artists"]) if a]
        out["album"] = trimmed
    return cast(SpotifyTrack, out)


def parse_track(body: object) -> SpotifyTrack:
    """``GET /v1/tracks/{id}``."""
    return _track(body, TRACK_ENDPOINT)


def parse_tracks(body: object) -> list[SpotifyTrack | None]:
    """``GET /v1/tracks?ids=``: one entry per requested id, None for unknown ids."""
    if not isinstance(body, Mapping) or not isinstance(body.get("tracks"), list):
        raise malformed(PROVIDER, TRACKS_ENDPOINT, "answer has no tracks list")
    return [None if t is None else _track(t, TRACKS_ENDPOINT) for t in body["tracks"]]


def parse_search_tracks(body: object) -> list[SpotifyTrack]:
    """``GET /v1/search?type=track``: the hits in Spotify's order. Null items (Spotify
    sends some for unavailable content) are skipped."""
    tracks = body.get("tracks") if isinstance(body, Mapping) else None
    items = tracks.get("items") if isinstance(tracks, Mapping) else None
    if not isinstance(items, list):
        raise malformed(PROVIDER, SEARCH_ENDPOINT, "answer has no tracks.items list")
    return [_track(item, SEARCH_ENDPOINT) for item in items if item is not None]


def parse_artist(body: object) -> SpotifyArtist:
    """``GET /v1/artists/{id}``."""
    if not isinstance(body, Mapping):
        raise malformed(PROVIDER, ARTIST_ENDPOINT, "artist is not a JSON object")
    if not isinstance(body.get("id"), str) or not isinstance(body.get("name"), str):
        raise malformed(PROVIDER, ARTIST_ENDPOINT, "artist has no id or name")
    return cast(SpotifyArtist, {k: v for k, v in body.items() if k in _ARTIST_KEYS})


# --- choosing -------------------------------------------------------------------------------


def best_match(tracks: Iterable[SpotifyTrack], artist: str, title: str) -> SpotifyTrack | None:
    """The hit that best matches ``artist`` and ``title``, or None when none is close enough.

    Rule (:mod:`tunegate.providers.matching`): titles and artists are normalised (accents,
    case, ``feat.`` credits, a leading "The", punctuation); a hit qualifies when its title
    scores at least 0.75 and its best credited artist at least 0.8; the highest
    ``0.6 * title + 0.4 * artist`` wins, ties going to Spotify's own order.
    """
    return matching.best_match(
        tracks,
        artist,
        title,
        title_of=lambda t: t["name"],
        artists_of=lambda t: [a["name"] for a in t["artists"]],
    )


def pick_isrc_match(tracks: Sequence[SpotifyTrack], isrc: str) -> SpotifyTrack | None:
    """The first hit whose ``external_ids.isrc`` is ``isrc``; when no hit carries external
    ids (Development-Mode apps lost them for a month in 2026), the first hit."""
    code = validate.isrc(isrc)
    for track in tracks:
        found = track.get("external_ids", {}).get("isrc")
        if isinstance(found, str) and found.replace("-", "").upper() == code:
            return track
    if any("external_ids" in t for t in tracks):
        return None
    return tracks[0] if tracks else None


# --- errors ---------------------------------------------------------------------------------


def _error_fields(body: object) -> tuple[str, str | None]:
    """(message, reason) from ``{"error": {"status", "message", "reason"?}}``."""
    data = decode_body(body)
    if isinstance(data, Mapping) and isinstance(data.get("error"), Mapping):
        err = data["error"]
        reason = err.get("reason")
        return clean_message(err.get("message"), _CREDENTIAL_LIKE), (
            reason if isinstance(reason, str) else None
        )
    return "", None


def classify_error(
    status: int,
    body: object,
    headers: Mapping[str, str],
    *,
    endpoint: str = "",
    now_wall: float | None = None,
) -> ProviderError:
    """The error for a non-2xx Web API answer (see the table in ``docs/providers.md``).

    - 401: :class:`AuthenticationError`, ``code`` :data:`TOKEN_EXPIRED` when the body says
      the token expired, else :data:`TOKEN_INVALID`; either way the client fetches a new
      token and retries once (:func:`should_refresh_token`).
    - 429: :class:`RateLimited` with ``retry_after`` from ``Retry-After``; ``code`` is the
      body's ``reason`` (``"QUOTA_EXCEEDED"`` for the per-account quota).
    - 404: :class:`NotFound`; 5xx: :class:`ProviderUnavailable`.
    - 400, 403 and other 4xx: a permanent :class:`ProviderError` (403 also answers the
      endpoints Development-Mode apps lost in 2026).
    """
    message, reason = _error_fields(body)
    retry_after = retry_after_from(headers, now_wall)
    request_id = request_id_from(headers)
    if status == 401:
        code = TOKEN_EXPIRED if "expired" in message.lower() else TOKEN_INVALID
        return AuthenticationError(
            message or "access token refused",
            provider=PROVIDER,
            endpoint=endpoint,
            status=status,
            code=code,
            request_id=request_id,
        )
    if status == 429:
        note = " (account quota exceeded)" if reason == "QUOTA_EXCEEDED" else ""
        return RateLimited(
            (message or "too many requests") + note,
            provider=PROVIDER,
            endpoint=endpoint,
            status=status,
            code=reason,
            retry_after=retry_after,
            request_id=request_id,
        )
    detail: str | None = reason
    if status == 400:
        detail = detail or "bad_request"
    elif status == 403:
        detail = detail or "forbidden"
        # Development-Mode apps get 403 from the endpoints removed for them in 2026.
        message = (message or "forbidden") + " (endpoint not available to this app?)"
    return error_by_status(
        PROVIDER,
        endpoint,
        status,
        message,
        code=detail,
        retry_after=retry_after,
        request_id=request_id,
    )


def classify_token_error(
    status: int, body: object, headers: Mapping[str, str], *, now_wall: float | None = None
) -> ProviderError:
    """The error for a non-2xx token-endpoint answer, RFC 6749 shape
    ``{"error": "invalid_client", "error_description": ...}``: ``invalid_client`` and
    ``unauthorized_client`` (and any 401) are :class:`AuthenticationError`; 429 and 5xx as
    for the Web API; anything else a permanent :class:`ProviderError`."""
    data = decode_body(body)
    error = data.get("error") if isinstance(data, Mapping) else None
    described = data.get("error_description") if isinstance(data, Mapping) else None
    code = error if isinstance(error, str) else None
    message = clean_message(described, _CREDENTIAL_LIKE) or (code or "")
    if status == 401 or code in ("invalid_client", "unauthorized_client"):
        return AuthenticationError(
            f"client credentials refused: {message}" if message else "client credentials refused",
            provider=PROVIDER,
            endpoint=TOKEN_ENDPOINT,
            status=status,
            code=code,
            request_id=request_id_from(headers),
        )
    return error_by_status(
        PROVIDER,
        TOKEN_ENDPOINT,
        status,
        message,
        code=code,
        retry_after=retry_after_from(headers, now_wall),
        request_id=request_id_from(headers),
    )


def classify_response(
    status: int,
    body: object,
    headers: Mapping[str, str],
    *,
    endpoint: str = "",
    now_wall: float | None = None,
) -> ProviderError | None:
    """None for a 2xx answer, else its error: the one hook the pipeline needs per
    provider (the token endpoint has :func:`classify_token_error`)."""
    if 200 <= status < 300:
        return None
    if endpoint == TOKEN_ENDPOINT:
        return classify_token_error(status, body, headers, now_wall=now_wall)
    return classify_error(status, body, headers, endpoint=endpoint, now_wall=now_wall)


hook = hook_for(classify_response)


def should_refresh_token(error: BaseException) -> bool:
    """True for a Web API 401: fetch a new token and retry the call once."""
    return (
        isinstance(error, AuthenticationError)
        and error.endpoint != TOKEN_ENDPOINT
        and error.code in (TOKEN_EXPIRED, TOKEN_INVALID)
    )
