"""MusicBrainz WS/2 (JSON) without I/O: request building, parsing, choosing, errors.

Paths are absolute from the origin (``/ws/2/...`` on ``https://musicbrainz.org`` or on a
mirror). The client sends the validated User-Agent (:func:`validate.musicbrainz_user_agent`)
on every request; MusicBrainz answers 403 without one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, cast
from urllib.parse import urlsplit

from tunegate.exceptions import (
    AuthenticationError,
    ConfigurationError,
    InvalidInput,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
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
from tunegate.providers.spec import MUSICBRAINZ
from tunegate.providers.types import MusicBrainzRecording, MusicBrainzRelease

__all__ = [
    "BASE_URL",
    "DEFAULT_ISRC_INC",
    "DEFAULT_RECORDING_INC",
    "ISRC_INCS",
    "OFFICIAL_CAPACITY",
    "OFFICIAL_RATE",
    "RECORDING_INCS",
    "artist_names",
    "best_recording",
    "check_rate",
    "classify_error",
    "classify_response",
    "credited_artist",
    "get_recording_request",
    "hook",
    "is_official_host",
    "lookup_isrc_request",
    "lucene_escape",
    "lucene_phrase",
    "parse_isrc",
    "parse_recording",
    "parse_search_recordings",
    "pick_isrc_recording",
    "search_recording_request",
]

PROVIDER: Final = "musicbrainz"
BASE_URL: Final = MUSICBRAINZ.base_url
OFFICIAL_RATE: Final = MUSICBRAINZ.rate
"""Requests per second the official service allows per source IP (Rate_Limiting page)."""
OFFICIAL_CAPACITY: Final = MUSICBRAINZ.capacity
"""The largest burst that keeps to that rate: one request, then one per second."""
SEARCH_LIMIT_DEFAULT: Final = 10
SEARCH_LIMIT_MAX: Final = MUSICBRAINZ.search_limit_max

ISRC_ENDPOINT: Final = "/ws/2/isrc/{isrc}"
SEARCH_ENDPOINT: Final = "/ws/2/recording"
RECORDING_ENDPOINT: Final = "/ws/2/recording/{mbid}"

_RELATION_INCS = frozenset(
    f"{entity}-rels"
    for entity in (
        "area",
        "artist",
        "event",
        "genre",
        "instrument",
        "label",
        "place",
        "recording",
        "release",
        "release-group",
        "series",
        "url",
        "work",
    )
)
# musicbrainz-server Controller/WS/2/ISRC.pm, less the user-* incs (they need a login) and
# less "releases" (accepted there but without effect: Serializer/JSON/2/Recording.pm emits
# releases only for a top-level recording) and "genres" (a 400 on /isrc).
ISRC_INCS: Final = frozenset(
    {"artists", "artist-credits", "isrcs", "aliases", "tags", "ratings", "puids"} | _RELATION_INCS
)
# musicbrainz-server Controller/WS/2/Recording.pm, less the user-* incs.
RECORDING_INCS: Final = frozenset(
    {
        "artists",
        "artist-credits",
        "releases",
        "release-groups",
        "isrcs",
        "aliases",
        "tags",
        "genres",
        "ratings",
        "annotation",
        "work-level-rels",
        "puids",
    }
    | _RELATION_INCS
)
DEFAULT_ISRC_INC: Final = ("artist-credits",)
DEFAULT_RECORDING_INC: Final = ("artist-credits", "genres", "isrcs", "tags")

# Lucene query syntax specials: + - && || ! ( ) { } [ ] ^ " ~ * ? : \ /
_LUCENE_SPECIAL = re.compile(r'([+\-&|!(){}\[\]^"~*?:\\/])')

_OFFICIAL_HOSTS = ("musicbrainz.org",)


# --- requests -------------------------------------------------------------------------------


def lucene_escape(text: str) -> str:
    """Backslash-escape every Lucene special character, so user text is only ever text."""
    return _LUCENE_SPECIAL.sub(r"\\\1", text)


def lucene_phrase(text: str) -> str:
    """User text as one quoted, escaped Lucene phrase."""
    return f'"{lucene_escape(text)}"'


def _incs(inc: str | Iterable[str], allowed: frozenset[str], resource: str) -> tuple[str, ...]:
    """``inc`` as a sorted unique tuple; a string may hold several, split on ``+`` or spaces."""
    items = inc.replace("+", " ").split() if isinstance(inc, str) else list(inc)
    out: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput("inc", f"must be strings, got {type(item).__name__}")
        name = item.strip().lower()
        if name not in allowed:
            hint = " (ask get_recording for releases)" if name == "releases" else ""
            raise InvalidInput(
                "inc",
                f"{item!r} is not a valid inc for the {resource} resource{hint}; "
                f"allowed: {', '.join(sorted(allowed))}",
            )
        out.add(name)
    return tuple(sorted(out))


def _inc_params(incs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # MusicBrainz splits inc on "+" or spaces; a space survives URL encoding unambiguously.
    return (("inc", " ".join(incs)),) if incs else ()


def _lookup_request(
    resource: str,
    key: str,
    inc: str | Iterable[str],
    allowed: frozenset[str],
    default: tuple[str, ...],
    endpoint: str,
) -> ApiRequest:
    """``GET /ws/2/{resource}/{key}?fmt=json&inc=...`` (``key`` already validated), cached
    as ``musicbrainz:{resource}:{key}`` plus an ``inc=..`` part when ``inc`` is not the
    default: the one builder of every lookup by id."""
    incs = _incs(inc, allowed, resource)
    parts: tuple[str, ...] = (key,)
    if incs != tuple(sorted(default)):
        parts += ("inc=" + "+".join(incs),)
    return ApiRequest(
        provider=PROVIDER,
        method="GET",
        endpoint_template=endpoint,
        path=f"/ws/2/{resource}/{key}",
        params=(("fmt", "json"), *_inc_params(incs)),
        cache_kind=f"musicbrainz:{resource}",
        cache_parts=parts,
    )


def lookup_isrc_request(isrc: str, inc: str | Iterable[str] = DEFAULT_ISRC_INC) -> ApiRequest:
    """``GET /ws/2/isrc/{isrc}?fmt=json&inc=...``; cached as ``musicbrainz:isrc:{isrc}``
    (plus an ``inc=..`` part when ``inc`` is not the default). ``genres`` is refused: the
    ISRC resource answers 400 to it."""
    code = validate.isrc(isrc)
    return _lookup_request("isrc", code, inc, ISRC_INCS, DEFAULT_ISRC_INC, ISRC_ENDPOINT)


def search_recording_request(
    artist: str, title: str, limit: int = SEARCH_LIMIT_DEFAULT
) -> ApiRequest:
    """``GET /ws/2/recording?query=recording:"<title>" AND artist:"<artist>"&fmt=json``,
    both phrases escaped; cached as ``musicbrainz:search:{artist}:{title}``."""
    artist = validate.text(artist, "artist")
    title = validate.text(title, "title")
    limit = validate.limit(limit, high=SEARCH_LIMIT_MAX)
    query = f"recording:{lucene_phrase(title)} AND artist:{lucene_phrase(artist)}"
    parts: tuple[str, ...] = (artist, title)
    if limit != SEARCH_LIMIT_DEFAULT:
        parts += (f"limit={limit}",)
    return ApiRequest(
        provider=PROVIDER,
        method="GET",
        endpoint_template=SEARCH_ENDPOINT,
        path=SEARCH_ENDPOINT,
        params=(("query", query), ("fmt", "json"), ("limit", str(limit))),
        cache_kind="musicbrainz:search",
        cache_parts=parts,
    )


def get_recording_request(
    mbid: str, inc: str | Iterable[str] = DEFAULT_RECORDING_INC
) -> ApiRequest:
    """``GET /ws/2/recording/{mbid}?fmt=json&inc=...``; cached as
    ``musicbrainz:recording:{mbid}`` (plus ``inc=..`` when not the default)."""
    return _lookup_request(
        "recording",
        validate.mbid(mbid),
        inc,
        RECORDING_INCS,
        DEFAULT_RECORDING_INC,
        RECORDING_ENDPOINT,
    )


# --- the official service's rate rule -------------------------------------------------------


def is_official_host(base_url: str) -> bool:
    """True for musicbrainz.org and its subdomains (www, beta, test)."""
    host = (urlsplit(base_url if "//" in base_url else f"//{base_url}").hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in _OFFICIAL_HOSTS)


def check_rate(base_url: str, rate: float, allow_fast: bool = False, *, capacity: int = 1) -> None:
    """Refuse a rate above 1 request/s, or a burst above 1, against the official service.

    MusicBrainz allows 1 request per second per source IP and answers 503 beyond it
    (https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting): a bucket of capacity 10
    at 1/s would send 10 requests in the first second. ``allow_fast=True`` is the explicit
    override (for an arrangement with MetaBrainz); a self-hosted mirror at another
    ``base_url`` may go as fast as its owner allows.

    Raises:
        ConfigurationError: a non-positive rate, or more than 1/s or a capacity above 1
            against musicbrainz.org without ``allow_fast``.
    """
    if not rate > 0 or rate == float("inf"):
        raise ConfigurationError(f"MusicBrainz rate must be a positive number, got {rate!r}")
    if allow_fast or not is_official_host(base_url):
        return
    if rate > OFFICIAL_RATE:
        what = f"MusicBrainz rate {rate:g}/s is above"
    elif capacity > OFFICIAL_CAPACITY:
        what = f"MusicBrainz capacity {capacity} (a burst of {capacity} at once) is above"
    else:
        return
    raise ConfigurationError(
        f"{what} the official service's limit of {OFFICIAL_RATE:g} request/s per IP, "
        f"burst {OFFICIAL_CAPACITY} (it answers 503 and may block the IP); point base_url "
        "at your own mirror, or pass allow_fast=True if MetaBrainz agreed to more"
    )


# --- parsing --------------------------------------------------------------------------------

_RECORDING_KEYS = frozenset(
    MusicBrainzRecording.__required_keys__ | MusicBrainzRecording.__optional_keys__
)


def _recording(obj: Any, endpoint: str) -> MusicBrainzRecording:
    if not isinstance(obj, Mapping):
        raise malformed(PROVIDER, endpoint, "recording is not a JSON object")
    if not isinstance(obj.get("id"), str) or not isinstance(obj.get("title"), str):
        raise malformed(PROVIDER, endpoint, "recording has no id or title")
    return cast(MusicBrainzRecording, {k: v for k, v in obj.items() if k in _RECORDING_KEYS})


def _recordings(body: object, endpoint: str) -> list[MusicBrainzRecording]:
    items = body.get("recordings") if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        raise malformed(PROVIDER, endpoint, "answer has no recordings list")
    return [_recording(item, endpoint) for item in items]


def parse_isrc(body: object) -> list[MusicBrainzRecording]:
    """``/ws/2/isrc/{isrc}``: every recording carrying the ISRC (often one, sometimes
    several), in MusicBrainz's order."""
    return _recordings(body, ISRC_ENDPOINT)


def parse_search_recordings(body: object) -> list[MusicBrainzRecording]:
    """``/ws/2/recording?query=``: the hits, best ``score`` first as MusicBrainz sends them."""
    return _recordings(body, SEARCH_ENDPOINT)


def parse_recording(body: object) -> MusicBrainzRecording:
    """``/ws/2/recording/{mbid}``."""
    return _recording(body, RECORDING_ENDPOINT)


def pick_isrc_recording(recordings: Sequence[MusicBrainzRecording]) -> MusicBrainzRecording | None:
    """The recording ``lookup_isrc`` returns: one ISRC can name several recordings (the same
    audio entered twice, or a video); the first non-video recording with the earliest
    ``first-release-date`` wins, undated ones last, ties in MusicBrainz's order."""

    def rank(item: tuple[int, MusicBrainzRecording]) -> tuple[bool, bool, str, int]:
        index, rec = item
        date = rec.get("first-release-date") or ""
        return (bool(rec.get("video")), not date, date, index)

    if not recordings:
        return None
    return min(enumerate(recordings), key=rank)[1]


def credited_artist(recording: MusicBrainzRecording) -> str:
    """The artist credit as printed: names joined by their join phrases
    (``"Ed Sheeran feat. Andrea Bocelli"``)."""
    return "".join(
        credit.get("name", "") + credit.get("joinphrase", "")
        for credit in recording.get("artist-credit", [])
    ).strip()


def artist_names(recording: MusicBrainzRecording) -> list[str]:
    """The credited names, one per artist."""
    return [c["name"] for c in recording.get("artist-credit", []) if c.get("name")]


def best_recording(
    recordings: Iterable[MusicBrainzRecording], artist: str, title: str
) -> MusicBrainzRecording | None:
    """The hit that best matches ``artist`` and ``title``, or None: the same rule as
    Spotify's (:mod:`tunegate.providers.matching`), on the recording title and the credited
    artists (each, and the whole credit); ties keep MusicBrainz's score order."""
    return matching.best_match(
        recordings,
        artist,
        title,
        title_of=lambda r: r["title"],
        artists_of=lambda r: [*artist_names(r), credited_artist(r)],
    )


# --- errors ---------------------------------------------------------------------------------

# The three throttling answers (older musicbrainz-server ControllerBase/WS/2.pm; the
# gateway in front of the service today sends the same texts).
_THROTTLE_TEXTS = (
    ("exceeding the allowable rate limit", "ip_rate_limit"),
    ("currently busy", "server_busy"),
    ("has not identified itself", "user_agent_throttled"),
    ("being throttled", "user_agent_throttled"),
)
_MIN_THROTTLE_WAIT = 1.0


_TAG = re.compile(r"<[^>]+>")


def _message(body: object) -> str:
    """The error text of a JSON ``{"error": ...}``, XML ``<error><text>`` or HTML body."""
    data = decode_body(body)
    if isinstance(data, Mapping):
        return clean_message(data.get("error"))
    if isinstance(data, str):
        return clean_message(_TAG.sub(" ", data))
    return ""


def classify_error(
    status: int,
    body: object,
    headers: Mapping[str, str],
    *,
    endpoint: str = "",
    now_wall: float | None = None,
) -> ProviderError:
    """The error for a non-2xx answer (see the table in ``docs/providers.md``).

    - 503 with one of the throttling texts (per-IP rate, "currently busy", unidentified
      application): :class:`RateLimited`, ``retry_after`` at least 1 s (MusicBrainz often
      sends ``Retry-After: 0`` on a global shed); ``code`` names which. Any other 503 and
      other 5xx: :class:`ProviderUnavailable`.
    - 403: :class:`AuthenticationError` (``code="user_agent_rejected"``): MusicBrainz
      refuses requests without a proper User-Agent. 401: :class:`AuthenticationError`.
    - 404: :class:`NotFound`.
    - 400: a permanent :class:`ProviderError` (``code="bad_request"``), not
      :class:`InvalidInput`: input was validated before the call, so a 400 means the
      service and tunegate disagree, which retrying or rewording will not fix.
    """
    message = _message(body)
    retry_after = retry_after_from(headers, now_wall)
    request_id = request_id_from(headers)
    if status == 503:
        lowered = message.lower()
        for text, code in _THROTTLE_TEXTS:
            if text in lowered:
                return RateLimited(
                    message,
                    provider=PROVIDER,
                    endpoint=endpoint,
                    status=status,
                    code=code,
                    retry_after=max(retry_after or 0.0, _MIN_THROTTLE_WAIT),
                    request_id=request_id,
                )
        return ProviderUnavailable(
            message or "service unavailable",
            provider=PROVIDER,
            endpoint=endpoint,
            status=status,
            retry_after=retry_after,
            request_id=request_id,
        )
    if status == 403:
        return AuthenticationError(
            "MusicBrainz refused the request; it requires a User-Agent of the form "
            f"'AppName/1.0 ( contact@example.com )'{': ' + message if message else ''}",
            provider=PROVIDER,
            endpoint=endpoint,
            status=status,
            code="user_agent_rejected",
            request_id=request_id,
        )
    return error_by_status(
        PROVIDER,
        endpoint,
        status,
        message,
        code="bad_request" if status == 400 else None,
        retry_after=retry_after,
        request_id=request_id,
    )


def classify_response(
    status: int,
    body: object,
    headers: Mapping[str, str],
    *,
    endpoint: str = "",
    now_wall: float | None = None,
) -> ProviderError | None:
    """None for a 2xx answer, else its error."""
    if 200 <= status < 300:
        return None
    return classify_error(status, body, headers, endpoint=endpoint, now_wall=now_wall)


hook = hook_for(classify_response)


# --- ISRC batches (one recording search for many ISRCs) --------------------------------------

ISRC_BATCH_DEFAULT: Final = 50
"""ISRCs per batch search: 50 ``isrc:`` clauses make a URL of about 1.3 KB."""
ISRC_BATCH_MAX: Final = 200
"""The most a batch may hold: about 5 KB of URL, under the 6-7 KB where the real service
was measured to start failing (``shared/research/wave2-anchors.md`` section 4.2)."""
ISRC_BATCH_LIMIT: Final = SEARCH_LIMIT_MAX  # hits per page: the search's own maximum
_ISRC_LOOKUP_KEYS = (
    "id",
    "title",
    "length",
    "disambiguation",
    "video",
    "first-release-date",
    "artist-credit",
)

__all__ += [
    "ISRC_BATCH_DEFAULT",
    "ISRC_BATCH_LIMIT",
    "ISRC_BATCH_MAX",
    "IsrcBatch",
    "as_isrc_lookup",
    "check_isrc_batch_size",
    "isrc_batch_request",
    "parse_isrc_batch",
]


def check_isrc_batch_size(size: object) -> int:
    """``size`` when it is a whole number from 1 to :data:`ISRC_BATCH_MAX`, else
    ConfigurationError."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= ISRC_BATCH_MAX:
        raise ConfigurationError(
            f"the ISRC batch size must be a whole number from 1 to {ISRC_BATCH_MAX} (longer "
            f"searches pass the URL length MusicBrainz accepts), got {size!r}"
        )
    return size


def isrc_batch_request(isrcs: Sequence[str]) -> ApiRequest:
    """``GET /ws/2/recording?query=isrc:A OR isrc:B ...&limit=100&fmt=json`` for up to
    :data:`ISRC_BATCH_MAX` ISRCs (validated, upper-cased, duplicates dropped). Not cached as
    a unit: the client caches each ISRC's answer under the key :func:`lookup_isrc_request`
    gives it, so single lookups hit."""
    codes = list(dict.fromkeys(validate.isrc(code) for code in isrcs))
    if not codes:
        raise InvalidInput("isrcs", "give at least one ISRC")
    if len(codes) > ISRC_BATCH_MAX:
        raise InvalidInput("isrcs", f"at most {ISRC_BATCH_MAX} ISRCs a batch, got {len(codes)}")
    query = " OR ".join(f"isrc:{code}" for code in codes)
    return ApiRequest(
        provider=PROVIDER,
        method="GET",
        endpoint_template=SEARCH_ENDPOINT,
        path=SEARCH_ENDPOINT,
        params=(("query", query), ("fmt", "json"), ("limit", str(ISRC_BATCH_LIMIT))),
    )


def as_isrc_lookup(hit: Mapping[str, Any]) -> MusicBrainzRecording:
    """A search hit in the shape ``/ws/2/isrc/{isrc}`` gives with the default ``inc``
    (``artist-credits``): search-only fields (score, releases, isrcs, tags) dropped,
    ``video`` a boolean, ``disambiguation`` present. So a batched answer and a single
    lookup's are the same value, in the cache and to the caller."""
    out: dict[str, Any] = {k: hit[k] for k in _ISRC_LOOKUP_KEYS if k in hit}
    out["video"] = bool(out.get("video"))
    out.setdefault("disambiguation", "")
    return cast(MusicBrainzRecording, out)


IsrcBatch = tuple[dict[str, list[MusicBrainzRecording]], bool]
"""``(found, complete)``: per asked ISRC the recordings carrying it (lookup-shaped, in the
search's order; absent when none was returned), and whether the answer held every hit
(False when it was cut at the page limit)."""


def parse_isrc_batch(body: object, isrcs: Iterable[str]) -> IsrcBatch:
    """The answer to :func:`isrc_batch_request`, split back per ISRC. A hit counts for an
    ISRC only when its ``isrcs`` list names it (search scores alone prove nothing); a hit
    naming several asked ISRCs counts for each."""
    hits = _recordings(body, SEARCH_ENDPOINT)
    raw = body.get("recordings") if isinstance(body, Mapping) else None
    assert isinstance(raw, list)  # _recordings checked it
    asked = set(isrcs)
    found: dict[str, list[MusicBrainzRecording]] = {}
    for item, hit in zip(raw, hits, strict=True):
        codes = item.get("isrcs")
        if not isinstance(codes, list):
            raise malformed(PROVIDER, SEARCH_ENDPOINT, "recording search hit has no isrcs list")
        recording = as_isrc_lookup(hit)
        for code in dict.fromkeys(c.upper() for c in codes if isinstance(c, str)):
            if code in asked:
                found.setdefault(code, []).append(recording)
    count = body.get("count") if isinstance(body, Mapping) else None
    offset = body.get("offset", 0) if isinstance(body, Mapping) else 0
    if isinstance(count, bool) or not isinstance(count, int):
        raise malformed(PROVIDER, SEARCH_ENDPOINT, "recording search answer has no count")
    if isinstance(offset, bool) or not isinstance(offset, int):
        offset = 0
    return found, offset + len(hits) >= count


# --- releases, and every search hit (the design's get_release and search_recording) ---------

RELEASE_ENDPOINT: Final = "/ws/2/release/{mbid}"
# musicbrainz-server Controller/WS/2/Release.pm, less the user-* incs and collections (a
# login's). "recordings" lists the tracks of each medium; "media" the media alone.
RELEASE_INCS: Final = frozenset(
    {
        "artists",
        "artist-credits",
        "labels",
        "recordings",
        "release-groups",
        "media",
        "discids",
        "isrcs",
        "aliases",
        "tags",
        "genres",
        "annotation",
        "recording-level-rels",
        "work-level-rels",
    }
    | _RELATION_INCS
)
DEFAULT_RELEASE_INC: Final = ("artist-credits", "labels", "recordings", "release-groups")
# What a release lookup may carry (musicbrainz-server's JSON serializer); others are dropped.
_RELEASE_KEYS: Final = frozenset(
    {
        "id",
        "title",
        "status",
        "status-id",
        "date",
        "country",
        "disambiguation",
        "quality",
        "packaging",
        "packaging-id",
        "barcode",
        "asin",
        "text-representation",
        "release-events",
        "cover-art-archive",
        "artist-credit",
        "release-group",
        "label-info",
        "media",
        "track-count",
        "tags",
        "genres",
        "relations",
        "annotation",
    }
)


def get_release_request(mbid: str, inc: str | Iterable[str] = DEFAULT_RELEASE_INC) -> ApiRequest:
    """``GET /ws/2/release/{mbid}?fmt=json&inc=...``; cached as
    ``musicbrainz:release:{mbid}`` (plus ``inc=..`` when not the default)."""
    return _lookup_request(
        "release", validate.mbid(mbid), inc, RELEASE_INCS, DEFAULT_RELEASE_INC, RELEASE_ENDPOINT
    )


def parse_release(body: object) -> MusicBrainzRelease:
    """``/ws/2/release/{mbid}``: the release, with the keys its ``inc`` list brought."""
    if not isinstance(body, Mapping):
        raise malformed(PROVIDER, RELEASE_ENDPOINT, "release is not a JSON object")
    if not isinstance(body.get("id"), str) or not isinstance(body.get("title"), str):
        raise malformed(PROVIDER, RELEASE_ENDPOINT, "release has no id or title")
    media = body.get("media")
    if media is not None and not isinstance(media, list):
        raise malformed(PROVIDER, RELEASE_ENDPOINT, "release media is not a list")
    return cast(MusicBrainzRelease, {k: v for k, v in body.items() if k in _RELEASE_KEYS})


def search_recordings_request(
    artist: str, title: str, limit: int = SEARCH_LIMIT_DEFAULT
) -> ApiRequest:
    """The request of :func:`search_recording_request`, cached apart (as
    ``musicbrainz:search_hits:{artist}:{title}``): it holds every hit, not the best one."""
    request = search_recording_request(artist, title, limit)
    return dataclasses.replace(request, cache_kind="musicbrainz:search_hits")
