"""The typed ``/v1`` API: one declared :class:`Endpoint` per client method.

The declaration is the single source of the Starlette route, the parameter checks and the
OpenAPI document (:mod:`tunegate.service.openapi` reads the same table; result schemas come
from the client methods' own return annotations)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tunegate.clients import AsyncGateway
from tunegate.enrich import Providers, Row, enrich_row
from tunegate.exceptions import InvalidInput
from tunegate.observability import track_sources
from tunegate.service.errors import DeadlineExceeded, from_exception, problem
from tunegate.service.json import JSONBody

__all__ = [
    "DEFAULT_DEADLINE",
    "ENDPOINTS",
    "MAX_DEADLINE",
    "MAX_ENRICH_ROWS",
    "Deadlines",
    "Endpoint",
    "Param",
    "x_cache",
]

MAX_ENRICH_ROWS = 50
DEFAULT_DEADLINE = 30.0  # seconds for one /v1 request unless the caller asks for less
MAX_DEADLINE = 120.0
DEADLINE_HEADER = "X-Request-Timeout"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: Literal["query", "path"]
    description: str
    required: bool = True
    kind: Literal["string", "integer", "boolean", "csv"] = "string"
    max_length: int = 500


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ``/v1`` operation. ``call`` gets the gateway and the checked arguments."""

    path: str
    op_id: str
    summary: str
    tag: str
    params: tuple[Param, ...]
    call: Callable[[AsyncGateway, dict[str, Any]], Awaitable[Any]]
    result: Any  # the client method it serves, or a type, for the result schema
    method: Literal["GET", "POST"] = "GET"
    body: Any = None  # a JSON Schema for a request body
    none_is_404: bool = True
    errors: tuple[int, ...] = field(default=(404, 422, 429, 502, 503, 504))
    # Where a result says itself where its parts came from (enrich records' ``sources``).
    sources_of: Callable[[Any], list[Mapping[str, str]]] | None = None


def _artist(required: bool = True) -> Param:
    return Param("artist", "query", "Artist name as a user would type it.", required)


def _title(name: str = "title") -> Param:
    return Param(name, "query", "Track title as a user would type it.")


_ISRC = Param("isrc", "path", "International Standard Recording Code (12 characters).")


def _query(request: Request) -> Mapping[str, str]:
    """The query string as Starlette's ``query_params`` reads it (latin-1, then
    percent-decoded as UTF-8; the last of repeated names wins), as a plain dict: a
    lookup of an absent optional parameter there raises and catches a KeyError inside."""
    raw: bytes = request.scope["query_string"]
    if not raw:
        return _NO_QUERY
    return dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))


_NO_QUERY: Mapping[str, str] = MappingProxyType({})


def _arguments(endpoint: Endpoint, request: Request) -> dict[str, Any]:
    """The declared parameters, checked: a missing or malformed one is a 422 naming it."""
    out: dict[str, Any] = {}
    path = request.scope.get("path_params") or _NO_QUERY
    query = _query(request)
    for p in endpoint.params:
        raw = path.get(p.name) if p.where == "path" else None
        if raw is None:
            raw = query.get(p.name)
        if raw is None or raw == "":
            if p.required:
                raise InvalidInput(p.name, "missing required parameter")
            continue
        raw = str(raw)
        if len(raw) > p.max_length:
            raise InvalidInput(p.name, f"longer than {p.max_length} characters")
        if p.kind == "boolean":
            if raw.lower() not in ("true", "false", "1", "0"):
                raise InvalidInput(p.name, "must be true or false")
            out[p.name] = raw.lower() in ("true", "1")
        elif p.kind == "csv":
            out[p.name] = [part for part in raw.split(",") if part]
        else:
            out[p.name] = raw
    return out


def x_cache(by_provider: Mapping[str, str], *more: Mapping[str, str]) -> str:
    """One word for the whole answer: stale if any part was stale, miss if any part asked a
    provider (or nothing was looked up), hit when every part came from the cache.
    ``more``: further ``provider -> source`` maps (an enrich record's own ``sources``)."""
    values = set(by_provider.values()).union(*(m.values() for m in more))
    if "stale" in values:
        return "stale"
    if "api" in values or not values:
        return "miss"
    return "hit"


_DEADLINE_HEADER = DEADLINE_HEADER.lower().encode()


def deadline_of(request: Request, default: float) -> float:
    raw = None
    for name, value in request.scope["headers"]:  # the raw list: Headers.get scans it too
        if name == _DEADLINE_HEADER:
            raw = value.decode("latin-1")
            break
    if raw is None:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        raise InvalidInput(DEADLINE_HEADER, "must be a number of seconds") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_DEADLINE):
        raise InvalidInput(DEADLINE_HEADER, f"must be in (0, {MAX_DEADLINE:g}] seconds")
    return seconds


class Deadlines:
    """The requests' deadlines on each event loop, enforced by one sweeper task per loop
    that wakes every :attr:`TICK` seconds while any request is registered and cancels
    those past due: no timer per request. (``asyncio.timeout`` schedules and cancels a
    loop timer for each one: 10-17 us a request here, the largest single cost of a hit.)
    A deadline is kept to within one tick."""

    TICK = 0.05

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweepers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def enter(self, seconds: float) -> asyncio.Task[Any]:
        """Register the running task to be cancelled ``seconds`` from now."""
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        self._due[task] = loop.time() + seconds
        if loop not in self._sweepers:
            self._sweepers[loop] = loop.create_task(self._sweep(loop))
        return task

    def leave(self, task: asyncio.Task[Any]) -> bool:
        """Unregister ``task``; True when its deadline cancelled it."""
        self._due.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while any(t.get_loop() is loop for t in self._due):
                await asyncio.sleep(self.TICK)
                now = loop.time()
                late = [t for t, when in self._due.items() if when <= now and t.get_loop() is loop]
                for task in late:
                    del self._due[task]
                    self._expired.add(task)
                    task.cancel()
        finally:
            del self._sweepers[loop]

    async def run(self, seconds: float, call: Awaitable[Any]) -> Any:
        """``await call``, or :class:`DeadlineExceeded` once ``seconds`` have passed (a
        cancellation of ``call`` from elsewhere stays a cancellation)."""
        task = self.enter(seconds)
        try:
            value = await call
        except asyncio.CancelledError:
            if self.leave(task):
                task.uncancel()
                raise DeadlineExceeded(seconds) from None
            raise
        except BaseException:  # the call's own error: its answer, whatever the time
            if self.leave(task):
                task.uncancel()
            raise
        if self.leave(task):  # cancelled at its very end, and the call let it go: answered
            task.uncancel()
        return value


def handler(
    endpoint: Endpoint,
    gateway: Callable[[], AsyncGateway],
    default_deadline: float,
    deadlines: Deadlines | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for ``endpoint``: arguments checked, the call under the
    deadline and :func:`track_sources`, errors as problems, ``X-Cache`` on every answer."""
    limits = Deadlines() if deadlines is None else deadlines

    async def run(request: Request) -> Response:
        value: Any = None
        with track_sources() as sources:
            try:
                seconds = deadline_of(request, default_deadline)
                args = _arguments(endpoint, request)
                if endpoint.method == "POST":
                    args["body"] = await _json_body(request)
                value = await limits.run(seconds, endpoint.call(gateway(), args))
            except Exception as exc:  # mapped to a problem, or re-raised (a 500)
                response: Response = from_exception(exc)
            else:
                if value is None and endpoint.none_is_404:
                    response = problem(
                        404, "not-found", f"nothing found for {request.url.path}", "Not found"
                    )
                else:
                    response = JSONBody(value)
        more = [] if endpoint.sources_of is None or value is None else endpoint.sources_of(value)
        # Appended to the raw list: MutableHeaders' __setitem__ rescans and re-encodes them.
        response.raw_headers.append((b"x-cache", x_cache(sources.by_provider, *more).encode()))
        return response

    return run


MAX_BODY = 1 << 20  # bytes: 50 rows are a few kB


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise InvalidInput("body", f"larger than {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidInput("body", f"larger than {MAX_BODY} bytes")
    try:
        return orjson.loads(raw)
    except ValueError:
        raise InvalidInput("body", "not valid JSON") from None


# -- the operations ---------------------------------------------------------------------


async def _enrich(gw: AsyncGateway, args: dict[str, Any]) -> dict[str, Any]:
    body = args["body"]
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not 0 < len(rows) <= MAX_ENRICH_ROWS:
        raise InvalidInput("rows", f"must be a list of 1..{MAX_ENRICH_ROWS} objects")
    parsed = []
    for i, item in enumerate(rows):
        if not isinstance(item, dict):
            raise InvalidInput(f"rows[{i}]", "must be an object")
        text = {}
        for name in ("artist", "title", "isrc", "spotify_id"):
            value = item.get(name)
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"rows[{i}].{name}", "must be a string")
            text[name] = value
        if not (text["artist"] or "").strip() or not (text["title"] or "").strip():
            field_name = "artist" if not (text["artist"] or "").strip() else "title"
            raise InvalidInput(f"rows[{i}].{field_name}", "must be a non-empty string")
        parsed.append(
            Row(
                i,
                text["artist"] or "",
                text["title"] or "",
                isrc=text["isrc"] or None,
                spotify_id=text["spotify_id"] or None,
            )
        )
    providers = Providers.of(gw)
    gate = asyncio.Semaphore(8)  # a batch shares the providers' quotas with everyone else

    async def one(row: Row) -> dict[str, Any]:
        async with gate:
            return await enrich_row(providers, row)

    return {"records": list(await asyncio.gather(*(one(r) for r in parsed)))}


def _endpoints() -> tuple[Endpoint, ...]:
    from tunegate.clients import AsyncLastFmClient, AsyncMusicBrainzClient, AsyncSpotifyClient

    S, M, L = AsyncSpotifyClient, AsyncMusicBrainzClient, AsyncLastFmClient
    market = Param("market", "query", "ISO 3166-1 alpha-2 market.", required=False)
    inc = Param("inc", "query", "MusicBrainz includes, '+' or ',' separated.", required=False)
    autocorrect = Param(
        "autocorrect", "query", "Let Last.fm correct misspellings.", False, "boolean"
    )
    return (
        Endpoint(
            "/v1/spotify/search",
            "spotify_search_track",
            "Best Spotify track for an artist and title",
            "spotify",
            (_artist(), _title(), market),
            lambda gw, a: gw.spotify.search_track(a["artist"], a["title"], market=a.get("market")),
            S.search_track,
        ),
        Endpoint(
            "/v1/spotify/tracks",
            "spotify_get_tracks",
            "Several Spotify tracks by id (null for unknown ids)",
            "spotify",
            (Param("ids", "query", "Comma-separated Spotify track ids.", kind="csv"), market),
            lambda gw, a: gw.spotify.get_tracks(a["ids"], market=a.get("market")),
            S.get_tracks,
            none_is_404=False,
        ),
        Endpoint(
            "/v1/spotify/tracks/{id}",
            "spotify_get_track",
            "One Spotify track by id",
            "spotify",
            (Param("id", "path", "Spotify track id (22 base-62 characters)."), market),
            lambda gw, a: gw.spotify.get_track(a["id"], market=a.get("market")),
            S.get_track,
        ),
        Endpoint(
            "/v1/spotify/isrc/{isrc}",
            "spotify_search_by_isrc",
            "The Spotify track of an ISRC",
            "spotify",
            (_ISRC, market),
            lambda gw, a: gw.spotify.search_by_isrc(a["isrc"], market=a.get("market")),
            S.search_by_isrc,
        ),
        Endpoint(
            "/v1/musicbrainz/isrc/{isrc}",
            "musicbrainz_lookup_isrc",
            "The MusicBrainz recording of an ISRC",
            "musicbrainz",
            (_ISRC, inc),
            lambda gw, a: gw.musicbrainz.lookup_isrc(a["isrc"], **_inc(a)),
            M.lookup_isrc,
        ),
        Endpoint(
            "/v1/musicbrainz/isrc/{isrc}/recordings",
            "musicbrainz_lookup_isrc_recordings",
            "Every MusicBrainz recording of an ISRC",
            "musicbrainz",
            (_ISRC, inc),
            lambda gw, a: gw.musicbrainz.lookup_isrc_recordings(a["isrc"], **_inc(a)),
            M.lookup_isrc_recordings,
            none_is_404=False,
        ),
        *_batched_isrcs(M),
        Endpoint(
            "/v1/musicbrainz/recordings",
            "musicbrainz_search_recording",
            "Best MusicBrainz recording for an artist and title",
            "musicbrainz",
            (_artist(), _title()),
            lambda gw, a: gw.musicbrainz.search_recording(a["artist"], a["title"]),
            M.search_recording,
        ),
        Endpoint(
            "/v1/musicbrainz/recordings/{mbid}",
            "musicbrainz_get_recording",
            "One MusicBrainz recording by MBID",
            "musicbrainz",
            (Param("mbid", "path", "MusicBrainz recording id (a UUID)."), inc),
            lambda gw, a: gw.musicbrainz.get_recording(a["mbid"], **_inc(a)),
            M.get_recording,
        ),
        Endpoint(
            "/v1/lastfm/tags",
            "lastfm_get_track_tags",
            "Last.fm top tags of a track",
            "lastfm",
            (_artist(), _title(), autocorrect),
            lambda gw, a: gw.lastfm.get_track_tags(a["artist"], a["title"], **_auto(a)),
            L.get_track_tags,
            none_is_404=False,
        ),
        Endpoint(
            "/v1/lastfm/track",
            "lastfm_get_track_info",
            "Last.fm track info",
            "lastfm",
            (_artist(), _title(), autocorrect),
            lambda gw, a: gw.lastfm.get_track_info(a["artist"], a["title"], **_auto(a)),
            L.get_track_info,
        ),
        Endpoint(
            "/v1/lastfm/artist-tags",
            "lastfm_get_artist_tags",
            "Last.fm top tags of an artist",
            "lastfm",
            (_artist(), autocorrect),
            lambda gw, a: gw.lastfm.get_artist_tags(a["artist"], **_auto(a)),
            L.get_artist_tags,
            none_is_404=False,
        ),
        Endpoint(
            "/v1/enrich",
            "enrich",
            f"Enrich 1..{MAX_ENRICH_ROWS} rows as `tunegate enrich` does (same records)",
            "enrich",
            (),
            _enrich,
            dict[str, list[dict[str, Any]]],
            method="POST",
            body=ENRICH_BODY,
            none_is_404=False,
            errors=(422, 503, 504),
            sources_of=_record_sources,
        ),
    )


MAX_ISRCS = 100


def _batched_isrcs(client_class: Any) -> tuple[Endpoint, ...]:
    """The batched ISRC lookup (``lookup_isrcs``: one MusicBrainz search per 50 ISRCs)."""

    async def call(gw: AsyncGateway, args: dict[str, Any]) -> Any:
        if len(args["isrcs"]) > MAX_ISRCS:
            raise InvalidInput("isrcs", f"at most {MAX_ISRCS} ISRCs per request")
        return await gw.musicbrainz.lookup_isrcs(args["isrcs"])

    described = f"Comma-separated ISRCs (1..{MAX_ISRCS})."
    isrcs = Param("isrcs", "query", described, kind="csv", max_length=13 * MAX_ISRCS)
    return (
        Endpoint(
            "/v1/musicbrainz/isrcs",
            "musicbrainz_lookup_isrcs",
            "MusicBrainz recordings of several ISRCs, batched (null for unknown ones)",
            "musicbrainz",
            (isrcs,),
            call,
            client_class.lookup_isrcs,
            none_is_404=False,
        ),
    )


def _record_sources(value: Any) -> list[Mapping[str, str]]:
    records = value.get("records", []) if isinstance(value, dict) else []
    return [r["sources"] for r in records if isinstance(r.get("sources"), dict)]


def _inc(args: dict[str, Any]) -> dict[str, Any]:
    raw = args.get("inc")
    return {} if raw is None else {"inc": [p for p in raw.replace("+", ",").split(",") if p]}


def _auto(args: dict[str, Any]) -> dict[str, Any]:
    return {} if "autocorrect" not in args else {"autocorrect": args["autocorrect"]}


_ROW = {
    "type": "object",
    "required": ["artist", "title"],
    "properties": {
        "artist": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "title": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "isrc": {"type": "string"},
        "spotify_id": {"type": "string"},
    },
}
ENRICH_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["rows"],
    "properties": {
        "rows": {"type": "array", "minItems": 1, "maxItems": MAX_ENRICH_ROWS, "items": _ROW}
    },
}

ENDPOINTS: tuple[Endpoint, ...] = _endpoints()
