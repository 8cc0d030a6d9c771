"""Spotify: the client-credentials token endpoint and the Web API's search, track and artist
endpoints, as an app in Development Mode sees them (2026).

Shapes follow the recorded responses in shared/fixtures/real/spotify plus the fields the
current API adds (``is_local``, album ``release_date``/``release_date_precision``/
``total_tracks``); ``preview_url`` is null as it is for apps since its deprecation.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from tunegate.emulator import _words as W
from tunegate.emulator._http import Provider, Route, json_response, origin
from tunegate.emulator.catalog import Album, Catalog
from tunegate.emulator.ids import BASE62_ID
from tunegate.emulator.match import (
    albums_in_years,
    artists_with_genre,
    intersect,
    top_ranked,
    track_set,
    tracks_in_years,
    tracks_with_genre,
)
from tunegate.emulator.text import ascii_int, tokens

__all__ = ["SpotifyProvider", "parse_query"]

SEARCH_TYPES = ("album", "artist", "playlist", "track", "show", "episode", "audiobook")
MAX_OFFSET = 1000
BATCH_MAX = 50
_FIELDS = ("track", "artist", "album", "isrc", "year", "genre", "upc", "tag")
_QUERY_TERM = re.compile(r'(\w+):"([^"]*)"?|(\w+):(\S+)|"([^"]*)"?|(\S+)')
_MARKET = re.compile(r"^[A-Z]{2}$")
_YEAR = re.compile(r"^([0-9]{4})(?:-([0-9]{4}))?$")
_OPEN = "https://open.spotify.com"
_MESSAGES = {
    400: "Bad request",
    401: "Invalid access token",
    403: "Forbidden",
    404: "Not found",
    429: "Too many requests",
    500: "Server error.",
    502: "Bad gateway.",
    503: "Service unavailable",
    504: "Gateway timeout",
}
_IMAGE = "https://i.scdn.co/image/ab67616d0000"


@dataclass
class Query:
    """A parsed ``q``: free words plus field filters (``track:``, ``artist:``, ...)."""

    free: list[str] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)
    isrc: str | None = None
    years: tuple[int, int] | None = None
    bad_year: bool = False

    def words(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    @property
    def empty(self) -> bool:
        return not (self.free or self.fields or self.isrc or self.years or self.bad_year)


def parse_query(q: str) -> Query:
    query = Query()
    for m in _QUERY_TERM.finditer(q):
        name = (m.group(1) or m.group(3) or "").lower()
        value = m.group(2) if m.group(1) else m.group(4)
        if name in _FIELDS and value is not None:
            if name == "isrc":
                query.isrc = value.strip().upper()
            elif name == "year":
                ym = _YEAR.match(value.strip())
                if ym:
                    low = int(ym.group(1))
                    query.years = (low, int(ym.group(2) or low))
                else:
                    query.bad_year = True
            else:
                query.fields.setdefault(name, []).extend(tokens(value))
        else:
            query.free.extend(tokens(m.group(0)))
    return query


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return json_response(
        {"error": {"status": status, "message": message, **extra}}, status, headers
    )


class SpotifyProvider(Provider):
    name = "spotify"

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/api/token", self.token, "token"),
            Route("GET", "/v1/search", self.search, "search"),
            Route("GET", "/v1/tracks/{id}", self.get_track, "track"),
            Route("GET", "/v1/tracks", self.get_tracks, "tracks"),
            Route("GET", "/v1/tracks/", self.get_tracks, "tracks"),  # spotipy's spelling
            Route("GET", "/v1/artists/{id}", self.get_artist, "artist"),
            Route("GET", "/v1/artists", self.get_artists, "artists"),
            Route("GET", "/v1/artists/", self.get_artists, "artists"),
            Route("*", "/v1/{tail:.*}", self.unknown, "unknown"),
        ]

    # ------------------------------------------------------------------ gatekeeping
    async def admit(
        self, request: web.Request, endpoint: str, now: float
    ) -> tuple[str, web.Response | None]:
        client = request.remote or "unknown"
        if endpoint == "token":  # accounts.spotify.com: no bearer token, no Web API quota
            return client, None
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth:
            return client, _error(401, "No token provided", _www_auth("invalid_request"))
        if scheme.lower() != "bearer":
            return client, _error(400, "Only valid bearer authentication supported")
        entry = self.state.tokens.get(token.strip())
        if entry is None:
            return client, _error(401, "Invalid access token", _www_auth("invalid_token"))
        app, expires_at = entry
        if now >= expires_at:
            return app, _error(401, "The access token expired", _www_auth("invalid_token"))
        if not self.state.config.rate_limits:
            return app, None
        decision = self.state.limiter(self.name).check(app, now)
        if decision.allowed:
            return app, None
        self.state.stats.throttle(self.name, "rejected")
        return app, _error(
            429,
            "Too many requests",
            {"Retry-After": str(decision.retry_after)},
            reason="QUOTA_EXCEEDED",
        )

    def error(self, request: web.Request, status: int, *, retry_after: float = 1.0) -> web.Response:
        headers = {"Retry-After": str(math.ceil(retry_after))} if status in (429, 503) else None
        if request.path.startswith("/api/token"):  # the accounts service: OAuth's error body
            return json_response(
                {"error": "server_error", "error_description": "Server error"}, status, headers
            )
        return _error(status, _MESSAGES.get(status, "Error"), headers)

    # ------------------------------------------------------------------ token
    async def token(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        form = await request.post()
        client_id = secret = None
        auth = request.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, sep, secret = decoded.partition(":")
            if not sep:
                return _token_error("invalid_client", "Invalid client")
        elif "client_id" in form:
            client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        grant = form.get("grant_type")
        if grant is None:
            return _token_error("unsupported_grant_type", "grant_type parameter is missing")
        if grant != "client_credentials":
            return _token_error(
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token",
            )
        if not client_id or client_id not in state.config.spotify_clients:
            return _token_error("invalid_client", "Invalid client")
        if not secrets.compare_digest(state.config.spotify_clients[client_id], secret or ""):
            return _token_error("invalid_client", "Invalid client secret")
        lifetime = state.config.token_lifetime
        token = state.tokens.issue(client_id, state.clock.monotonic(), lifetime)
        return json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": math.ceil(lifetime)}
        )

    # ------------------------------------------------------------------ lookups
    async def get_track(self, request: web.Request) -> web.StreamResponse:
        cat = self.state.catalog
        return self._one(request, cat.track_by_spotify_id, track_json, market=True)

    async def get_tracks(self, request: web.Request) -> web.StreamResponse:
        cat = self.state.catalog
        return self._several(request, "tracks", cat.track_by_spotify_id, track_json, market=True)

    async def get_artists(self, request: web.Request) -> web.StreamResponse:
        cat = self.state.catalog
        return self._several(request, "artists", cat.artist_by_spotify_id, artist_json)

    def _several(
        self,
        request: web.Request,
        key: str,
        find: Callable[[str], int | None],
        render: Callable[[Catalog, int, str], dict[str, Any]],
        *,
        market: bool = False,
    ) -> web.Response:
        """``GET /v1/{key}?ids=``: removed for Development-Mode apps in 2026 (403 there)."""
        if not self.state.config.spotify_batch_tracks:
            return _error(403, "Forbidden")
        bad = _check_market(request) if market else None
        if bad is not None:
            return bad
        raw = request.query.get("ids", "")
        ids = [s.strip() for s in raw.split(",")] if raw else []
        if not ids or any(not BASE62_ID.match(s) for s in ids):
            return _error(400, "invalid id")
        if len(ids) > BATCH_MAX:
            return _error(400, "Too many ids requested")
        cat, base = self.state.catalog, origin(request)
        found = [find(s) for s in ids]
        return json_response({key: [None if i is None else render(cat, i, base) for i in found]})

    async def get_artist(self, request: web.Request) -> web.StreamResponse:
        cat = self.state.catalog
        return self._one(request, cat.artist_by_spotify_id, artist_json)

    def _one(
        self,
        request: web.Request,
        find: Callable[[str], int | None],
        render: Callable[[Catalog, int, str], dict[str, Any]],
        *,
        market: bool = False,
    ) -> web.Response:
        """``GET /v1/{kind}/{id}``: a bad market, then a malformed id (400), then an unknown
        one (404), in that order as Spotify checks them."""
        bad = _check_market(request) if market else None
        if bad is not None:
            return bad
        sid = request.match_info["id"]
        if not BASE62_ID.match(sid):
            return _error(400, "invalid id")
        found = find(sid)
        if found is None:
            return _error(404, "non existing id")
        return json_response(render(self.state.catalog, found, origin(request)))

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        return _error(404, "Service not found")

    # ------------------------------------------------------------------ search
    async def search(self, request: web.Request) -> web.StreamResponse:
        params = request.query
        q = params.get("q", params.get("query", ""))
        if not q.strip():
            return _error(400, "No search query")
        if "type" not in params:
            return _error(400, "Missing parameter type")
        types = [t.strip() for t in params["type"].split(",")]
        for t in types:
            if t not in SEARCH_TYPES:
                return _error(400, f"Bad search type field {t}")
        cfg = self.state.config
        limit_max = cfg.spotify_search_limit_max
        limit = _int_param(params.get("limit"), 5 if limit_max <= 10 else 20)
        if limit is None or not 0 <= limit <= limit_max:
            return _error(400, "Invalid limit")
        offset = _int_param(params.get("offset"), 0)
        if offset is None or not 0 <= offset <= MAX_OFFSET:
            return _error(400, "Invalid offset")
        bad = _check_market(request)
        if bad is not None:
            return bad
        query = parse_query(q)
        cat, base = self.state.catalog, origin(request)
        market = params.get("market")
        out: dict[str, Any] = {}
        for t in dict.fromkeys(types):
            if t == "track":
                total, items = _search_tracks(cat, query, offset, limit)
                page = [track_json(cat, i, base) for i in items]
            elif t == "artist":
                total, items = _search_artists(cat, query, offset, limit)
                page = [artist_json(cat, a, base) for a in items]
            elif t == "album":
                total, albums = _search_albums(cat, query, offset, limit)
                page = [album_json(cat, cat.album(al), base) for al in albums]
            else:
                total, page = 0, []
            out[t + "s"] = _paging(base, q, params["type"], market, offset, limit, total, page)
        return json_response(out)


def _www_auth(error: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer realm="spotify", error="{error}"'}


def _token_error(error: str, description: str) -> web.Response:
    return json_response({"error": error, "error_description": description}, 400)


def _int_param(value: str | None, default: int) -> int | None:
    if value is None or value == "":
        return default
    return ascii_int(value)


def _check_market(request: web.Request) -> web.Response | None:
    market = request.query.get("market")
    if market is None or market == "from_token" or _MARKET.match(market):
        return None
    return _error(400, "Invalid market code")


def _paging(
    base: str,
    q: str,
    types: str,
    market: str | None,
    offset: int,
    limit: int,
    total: int,
    items: list[Any],
) -> dict[str, Any]:
    def href(off: int) -> str:
        params = {"query": q, "type": types}
        if market:
            params["market"] = market
        params.update(offset=str(off), limit=str(limit))
        return f"{base}/v1/search?{urlencode(params, quote_via=quote)}"

    has_next = limit > 0 and offset + limit < min(total, MAX_OFFSET + limit)
    return {
        "href": href(offset),
        "items": items,
        "limit": limit,
        "next": href(offset + limit) if has_next else None,
        "offset": offset,
        "previous": href(max(0, offset - limit)) if offset > 0 and limit > 0 else None,
        "total": total,
    }


# ---------------------------------------------------------------------- matching


def _search_tracks(cat: Catalog, query: Query, offset: int, limit: int) -> tuple[int, list[int]]:
    if query.bad_year or query.words("upc") or query.words("tag"):
        return 0, []  # upc and tag filters apply to albums only
    sets = [track_set(cat, "title", t) for t in query.words("track")]
    sets += [track_set(cat, "artist", t) for t in query.words("artist")]
    sets += [track_set(cat, "album", t) for t in query.words("album")]
    sets += [track_set(cat, "any", t) for t in query.free]
    if query.isrc is not None:
        sets.append(set(cat.tracks_by_isrc(query.isrc)))
    if query.years is not None:
        sets.append(tracks_in_years(cat, *query.years))
    if query.words("genre"):
        sets.append(tracks_with_genre(cat, query.words("genre")))
    idx = cat.index()
    found = intersect(sets)
    n = offset + limit
    if found is None:  # no usable words: every track, most popular first
        everything = range(cat.size)
        ranked = top_ranked((i for i in everything if i not in idx.off_spotify), n, idx.track_rank)
        return cat.size - len(idx.off_spotify), ranked[offset:]
    keep = found - idx.off_spotify
    want = query.words("track") or query.free
    return len(keep), _rank_tracks(cat, keep, want, n)[offset:]


def _rank_tracks(cat: Catalog, keep: set[int], want: list[str], n: int) -> list[int]:
    """Exact title first, then titles holding every word, then the rest; popularity within
    each (Spotify-like)."""
    idx = cat.index()
    keys, lengths = idx.track_rank, idx.title_len
    if not want:
        return top_ranked(keep, n, keys)
    holding = (intersect(track_set(cat, "title", w) for w in want) or set()) & keep
    exact = {i for i in holding if lengths[i] == len(want) and cat.title_tokens(i) == want}
    ranked = top_ranked(exact, n, keys)
    ranked += top_ranked(holding - exact, n - len(ranked), keys)
    ranked += top_ranked(keep - holding, n - len(ranked), keys)
    return ranked


def _search_artists(cat: Catalog, query: Query, offset: int, limit: int) -> tuple[int, list[int]]:
    if query.isrc or query.words("track") or query.words("album") or query.bad_year:
        return 0, []
    idx = cat.index()
    words = query.free + query.words("artist")
    sets = [set(idx.artist.get(t, ())) for t in words]
    if query.words("genre"):
        sets.append(artists_with_genre(cat, query.words("genre")))
    found = intersect(sets)
    keep = set(range(cat.n_artists)) if found is None else found
    named = {a for a in idx.artist_name.get(" ".join(words), ()) if a in keep}
    n = offset + limit
    ranked = top_ranked(named, n, idx.artist_rank)  # the exact name first, then popularity
    ranked += top_ranked(keep - named, n - len(ranked), idx.artist_rank)
    return len(keep), ranked[offset:]


def _search_albums(cat: Catalog, query: Query, offset: int, limit: int) -> tuple[int, list[int]]:
    if query.isrc or query.words("track") or query.bad_year:
        return 0, []
    idx = cat.index()
    sets = [set(idx.album.get(t, ())) for t in query.free + query.words("album")]
    for t in query.words("artist"):
        sets.append({al for a in idx.artist.get(t, ()) for al in cat.albums_of_artist(a)})
    if query.years is not None:
        sets.append(albums_in_years(cat, *query.years))
    found = intersect(sets)
    keep: Iterable[int] = range(cat.n_albums) if found is None else found
    total = cat.n_albums if found is None else len(found)
    return total, top_ranked(keep, offset + limit, idx.album_rank)[offset:]


# ---------------------------------------------------------------------- serialisation


def _images(hash_: str, sizes: tuple[int, ...] = (640, 300, 64)) -> list[dict[str, Any]]:
    prefixes = {640: "b273", 300: "1e02", 320: "1e02", 160: "4851", 64: "4851"}
    return [
        {"height": s, "url": f"{_IMAGE}{prefixes.get(s, 'b273')}{hash_[:24]}", "width": s}
        for s in sizes
    ]


def artist_simple(cat: Catalog, a: int, base: str) -> dict[str, Any]:
    artist = cat.artist(a)
    sid = artist.spotify_id
    return {
        "external_urls": {"spotify": f"{_OPEN}/artist/{sid}"},
        "href": f"{base}/v1/artists/{sid}",
        "id": sid,
        "name": artist.name,
        "type": "artist",
        "uri": f"spotify:artist:{sid}",
    }


def artist_json(cat: Catalog, a: int, base: str) -> dict[str, Any]:
    """The full artist object: the simplified one plus its own fields, keys in Spotify's
    (alphabetical) order."""
    artist = cat.artist(a)
    full = {
        **artist_simple(cat, a, base),
        "followers": {"href": None, "total": artist.followers},
        "genres": list(artist.genres),
        "images": _images(artist.image_hash, (640, 320, 160)),
        "popularity": artist.popularity,
    }
    return dict(sorted(full.items()))


def album_json(cat: Catalog, album: Album, base: str) -> dict[str, Any]:
    sid = album.spotify_id
    return {
        "album_type": album.album_type,
        "artists": [artist_simple(cat, album.artist, base)],
        "available_markets": list(W.MARKETS),
        "external_urls": {"spotify": f"{_OPEN}/album/{sid}"},
        "href": f"{base}/v1/albums/{sid}",
        "id": sid,
        "images": _images(album.image_hash),
        "name": album.name,
        "release_date": album.release_date,
        "release_date_precision": album.date_precision,
        "total_tracks": album.total_tracks,
        "type": "album",
        "uri": f"spotify:album:{sid}",
    }


def track_json(cat: Catalog, i: int, base: str) -> dict[str, Any]:
    track = cat.track(i)
    sid = track.spotify_id
    assert sid is not None, "only tracks on Spotify are serialised for Spotify"
    return {
        "album": album_json(cat, track.album, base),
        "artists": [artist_simple(cat, a, base) for a in track.artists],
        "available_markets": list(W.MARKETS),
        "disc_number": 1,
        "duration_ms": track.duration_ms,
        "explicit": track.explicit,
        "external_ids": {"isrc": track.isrc},
        "external_urls": {"spotify": f"{_OPEN}/track/{sid}"},
        "href": f"{base}/v1/tracks/{sid}",
        "id": sid,
        "is_local": False,
        "name": track.display_title,
        "popularity": track.popularity,
        "preview_url": None,
        "track_number": track.track_number,
        "type": "track",
        "uri": f"spotify:track:{sid}",
    }
