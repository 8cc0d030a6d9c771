"""The providers' own protocols, through the gateway: ``/spotify/v1/...`` (with
``/spotify/api/token``), ``/musicbrainz/ws/2/...`` and ``/lastfm/2.0/``, so spotipy,
musicbrainzngs, pylast (and clients in other languages) work with only their base URL
changed, and share the cache, the quota, the breakers and the retries.

Every forwarded call is an :class:`~tunegate.providers.ApiRequest` sent through the
provider client's ``send_raw`` (its cache scope and headers, Spotify's token, then its
:class:`~tunegate.Pipeline`): no second request path. Its cache kind is the provider
spec's kind for that resource (so it gets that kind's TTL and is invalidated with it), its
key parts start with ``"raw"`` and hold the path and the sorted query, so a raw answer
never meets the typed clients' parsed ones. Only reads are forwarded: Spotify and
MusicBrainz GETs, Last.fm ``*.get*`` and ``*.search`` methods.

Credentials: the service holds the providers' real ones. A Spotify caller gets a
service-issued token from ``/spotify/api/token`` (HMAC-signed, one hour; with callers' keys
configured its client secret must be one of them); a Last.fm caller's ``api_key`` is
replaced by the service's. Spotify's token itself comes from the client's token source (the
one flow that fetches, shares through Redis and refreshes on 401), through the client's
own authorized send.

With callers' API keys configured (:mod:`tunegate.service.callers`) each call runs as the
caller's application: the Spotify token names it, Last.fm's ``api_key`` or ``X-API-Key``
carries it, MusicBrainz takes ``X-API-Key``; an unknown one gets the provider's own 401/403."""

from __future__ import annotations

import base64
import hmac
import re
import time
from collections.abc import Callable, Sequence
from hashlib import sha256
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tunegate.exceptions import ConfigurationError, InvalidInput
from tunegate.observability import track_sources
from tunegate.providers import ApiRequest
from tunegate.service.api import MAX_BODY, x_cache
from tunegate.service.callers import key_in, running_as
from tunegate.service.errors import classify

if TYPE_CHECKING:
    from tunegate.service.ops import State

__all__ = ["TOKEN_TTL", "issue_token", "routes", "verify_token"]

TOKEN_TTL = 3600
_MAX_QUERY = 4096

Pairs = tuple[tuple[str, str], ...]
T = TypeVar("T")


# -- service-issued tokens -------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def issue_token(key: bytes, subject: str, now: float | None = None) -> str:
    """``tg.<claims>.<signature>``: the caller and the expiry, signed with ``key``."""
    claims = _b64(orjson.dumps({"sub": subject, "exp": int((now or time.time()) + TOKEN_TTL)}))
    sig = _b64(hmac.new(key, claims.encode(), sha256).digest())
    return f"tg.{claims}.{sig}"


def verify_token(key: bytes, token: str, now: float | None = None) -> str | None:
    """The caller named by a valid, unexpired token; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "tg":
        return None
    expected = _b64(hmac.new(key, parts[1].encode(), sha256).digest())
    if not hmac.compare_digest(expected, parts[2]):
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    if not isinstance(claims, dict) or claims.get("exp", 0) < (now or time.time()):
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


# -- shared plumbing ----------------------------------------------------------------------


def _query(request: Request, drop: Sequence[str] = ()) -> Pairs:
    if len(request.url.query) > _MAX_QUERY:
        raise InvalidInput("query", f"longer than {_MAX_QUERY} characters")
    return tuple((k, v) for k, v in request.query_params.multi_items() if k not in drop)


def _canonical(params: Pairs) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params))


def _template(path: str, rules: Sequence[tuple[re.Pattern[str], T]], fallback: T) -> T:
    """A bounded label (and cache kind) for logs and metrics: never the raw path."""
    for pattern, template in rules:
        if pattern.fullmatch(path):
            return template
    return fallback


_Shape = Callable[[int, str, int | None, str], Response]


async def _forward(
    state: State,
    provider: Literal["spotify", "musicbrainz", "lastfm"],
    request: Request,
    make: Callable[[Any], ApiRequest],
    expect: Literal["json", "xml"],
    shape: _Shape,
    media: str,
    rewrite: tuple[str, str] | None = None,
    app: str | None = None,
) -> Response:
    """Send ``make(client)`` through the provider's pipeline, as caller ``app`` (the
    application of the caller's key, when keys are configured); the answer in the
    provider's own form, errors in its own error shape, ``X-Cache`` as on ``/v1``."""
    with track_sources() as sources, running_as(app):
        try:
            client = getattr(state.gw(), provider)
            # The client's own entry for a request of ours: its cache scope, its headers
            # (MusicBrainz's User-Agent), on Spotify its bearer token, then its pipeline.
            value = await client.send_raw(make(client), expect=expect)
        except Exception as exc:
            found = classify(exc)
            if found is None:
                raise
            status = found.status
            if found.kind == "invalid-input":
                status = 400
            elif found.kind == "not-configured":
                status = 503
            retry_after = getattr(exc, "retry_after", None)
            seconds = int(retry_after + 0.999) if isinstance(retry_after, int | float) else None
            response = shape(status, str(exc), seconds if found.retry_after else None, media)
        else:
            body = value.encode() if isinstance(value, str) else orjson.dumps(value)
            if rewrite is not None:
                body = body.replace(rewrite[0].encode(), rewrite[1].encode())
            response = Response(body, media_type=media)
    response.raw_headers.append((b"x-cache", x_cache(sources.by_provider).encode()))
    return response


# -- Spotify ------------------------------------------------------------------------------


_SPOTIFY_RULES = [
    (re.compile(r"/v1/tracks/[^/]+"), ("/v1/tracks/{id}", "spotify:track")),
    (re.compile(r"/v1/tracks"), ("/v1/tracks", "spotify:track")),
    (re.compile(r"/v1/search"), ("/v1/search", "spotify:search")),
    (re.compile(r"/v1/artists/[^/]+"), ("/v1/artists/{id}", "spotify:artist")),
    (re.compile(r"/v1/albums/[^/]+"), ("/v1/albums/{id}", "spotify:album")),
]


def _spotify_error(status: int, message: str, retry_after: int | None, media: str) -> Response:
    body = orjson.dumps({"error": {"status": status, "message": message}})
    response = Response(body, status_code=status, media_type="application/json")
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, retry_after))
    return response


def _token_key(state: State) -> bytes:
    return state.options.token_key


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body (parsed here: Starlette's parser needs python-multipart)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise InvalidInput("body", f"larger than {MAX_BODY} bytes")
    raw = await request.body()
    try:
        return dict(parse_qsl(raw[:MAX_BODY].decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise InvalidInput("body", "not UTF-8") from None


async def spotify_token(state: State, request: Request) -> Response:
    form = await _form(request)
    client_id = str(form.get("client_id") or "")
    secret = str(form.get("client_secret") or "")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode()
        except ValueError:
            decoded = ""
        client_id, _, secret = decoded.partition(":")
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "client_credentials only")
    keys = state.options.api_keys
    app = keys.app_of(secret) if keys else client_id[:64]
    if not client_id or app is None:
        return _oauth_error(401, "invalid_client", "Invalid client")
    # With keys configured the token names the application: its calls run as that caller.
    token = issue_token(_token_key(state), app)
    body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
    body["expires_in"] = TOKEN_TTL
    return Response(orjson.dumps(body), media_type="application/json")


def _oauth_error(status: int, error: str, description: str) -> Response:
    body = {"error": error, "error_description": description}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def spotify_api(state: State, request: Request) -> Response:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    subject = verify_token(_token_key(state), token.strip()) if scheme.lower() == "bearer" else None
    keys = state.options.api_keys
    if subject is None or (keys and subject not in keys.apps()):  # a revoked application
        return _spotify_error(401, "Invalid access token", None, "application/json")
    path = "/v1/" + str(request.path_params["path"])
    label, kind = _template(path, _SPOTIFY_RULES, ("/v1/{other}", "spotify:other"))

    def make(client: Any) -> ApiRequest:
        params = _query(request)
        return ApiRequest(
            provider="spotify",
            method="GET",
            endpoint_template=label,
            path=path,
            params=params,
            cache_kind=kind,
            cache_parts=("raw", path, _canonical(params)),  # the client adds its scope
        )

    upstream = state.gw().spotify.base_url if _configured(state, "spotify") else ""
    ours = str(request.base_url).rstrip("/") + "/spotify"
    rewrite = (upstream, ours) if upstream else None
    app = subject if keys else None
    return await _forward(
        state, "spotify", request, make, "json", _spotify_error, "application/json", rewrite, app
    )


def _configured(state: State, provider: str) -> bool:
    try:
        getattr(state.gw(), provider)
    except ConfigurationError:
        return False
    return True


# -- MusicBrainz --------------------------------------------------------------------------

_MB_ENTITY = re.compile(r"/ws/2/([a-z-]+)(/.*)?")


def _musicbrainz_error(status: int, message: str, retry_after: int | None, media: str) -> Response:
    if media == "application/json":
        body = orjson.dumps({"error": message, "help": "tunegate gateway"})
    else:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<error><text>{escape(message)}</text></error>'
        ).encode()
    response = Response(body, status_code=status, media_type=media)
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, retry_after))
    return response


def _mb_kind(path: str, params: Pairs) -> tuple[str, str]:
    m = _MB_ENTITY.fullmatch(path)
    entity = m.group(1) if m else "other"
    lookup = bool(m and m.group(2) and m.group(2).strip("/"))
    if entity == "isrc":
        return "/ws/2/isrc/{isrc}", "musicbrainz:isrc"
    if entity == "recording" and lookup:
        return "/ws/2/recording/{mbid}", "musicbrainz:recording"
    if not lookup and any(k == "query" for k, _ in params):
        return f"/ws/2/{entity}?query=", "musicbrainz:search"
    suffix = "/{id}" if lookup else ""
    return f"/ws/2/{entity}{suffix}", f"musicbrainz:{entity}"


async def musicbrainz_api(state: State, request: Request) -> Response:
    path = "/ws/2/" + str(request.path_params["path"])
    params = _query(request)
    fmt = dict(params).get("fmt", "xml")
    json_wanted = fmt == "json" or "json" in request.headers.get("accept", "")
    media = "application/json" if json_wanted else "application/xml"
    keys = state.options.api_keys
    app = keys.app_of(key_in(request.headers)) if keys else None
    if keys and app is None:
        return _musicbrainz_error(401, "a known API key is required (X-API-Key)", None, media)
    if json_wanted and fmt != "json":
        params = (*params, ("fmt", "json"))
    label, kind = _mb_kind(path, params)

    def make(client: Any) -> ApiRequest:
        return ApiRequest(
            provider="musicbrainz",
            method="GET",
            endpoint_template=label,
            path=path,
            params=params,
            cache_kind=kind,
            cache_parts=("raw", path, _canonical(params)),  # the client adds its scope
        )

    expect: Literal["json", "xml"] = "json" if json_wanted else "xml"
    return await _forward(
        state, "musicbrainz", request, make, expect, _musicbrainz_error, media, app=app
    )


# -- Last.fm ------------------------------------------------------------------------------

_READ_METHOD = re.compile(r"[a-z]+\.(get[A-Za-z]*|search)")
_LASTFM_KINDS = {
    "track.gettoptags": "lastfm:track_tags",
    "track.getinfo": "lastfm:track_info",
    "track.getcorrection": "lastfm:correction",
    "artist.gettoptags": "lastfm:artist_tags",
    "artist.getinfo": "lastfm:artist_info",
}
_LASTFM_CODES = {404: 6, 400: 6, 403: 10, 429: 29, 503: 16, 504: 16, 502: 8}
# Refused: they act for a user (a session key or a signature made with the app's secret).
_PER_USER = ("sk", "api_sig", "token", "password", "authToken")


def _lastfm_error(status: int, message: str, retry_after: int | None, media: str) -> Response:
    code = _LASTFM_CODES.get(status, 8)
    if media == "application/json":
        body = orjson.dumps({"error": code, "message": message})
    else:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<lfm status="failed">'
            f'<error code="{code}">{escape(message)}</error></lfm>'
        ).encode()
    # pylast reads the error from the body, and gives up on 5xx with a generic message.
    response = Response(body, status_code=status, media_type=media)
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, retry_after))
    return response


async def lastfm_api(state: State, request: Request) -> Response:
    params = _query(request)
    if request.method == "POST":  # pylast sends every call as a form POST
        params = (*params, *(await _form(request)).items())
    given = dict(params)
    method = given.get("method", "")
    json_wanted = given.get("format") == "json"
    media = "application/json" if json_wanted else "text/xml"
    if not _READ_METHOD.fullmatch(method) or any(k in given for k in _PER_USER):
        return _lastfm_error(400, f"method {method!r} is not served by the gateway", None, media)
    keys = state.options.api_keys
    app = keys.app_of(key_in(request.headers) or given.get("api_key")) if keys else None
    if keys and app is None:  # Last.fm's own answer to an unknown key: error 10, HTTP 403
        return _lastfm_error(403, "Invalid API key - You must be granted a valid key", None, media)
    keep = tuple((k, v) for k, v in params if k not in ("api_key", "format", "callback"))
    label = f"/2.0/?method={method}"
    kind = _LASTFM_KINDS.get(method.lower(), f"lastfm:{method.lower().replace('.', '_')}")
    expect: Literal["json", "xml"] = "json" if json_wanted else "xml"

    def make(client: Any) -> ApiRequest:
        key = state.gw().settings.lastfm_api_key or ""
        fmt: Pairs = (("format", "json"),) if json_wanted else ()
        return ApiRequest(
            provider="lastfm",
            method="GET",
            endpoint_template=label,
            path="/2.0/",
            params=(*keep, ("api_key", key), *fmt),
            cache_kind=kind,
            cache_parts=("raw", _canonical(keep), expect),  # the client adds its scope
            secret_params=frozenset({"api_key"}),
        )

    return await _forward(state, "lastfm", request, make, expect, _lastfm_error, media, app=app)


def routes(state: State) -> list[Route]:
    from tunegate.service.ops import timed

    def bind(fn: Callable[[State, Request], Any], shape: _Shape, media: str) -> Any:
        async def run(request: Request) -> Response:
            try:
                response: Response = await fn(state, request)
            except InvalidInput as exc:  # refused before any upstream call: the caller's 400
                return shape(400, str(exc), None, media)
            return response

        return run

    def r(path: str, fn: Any, methods: list[str], shape: _Shape, media: str) -> Route:
        label = re.sub(r"\{(\w+):\w+\}", r"{\1}", path)
        return Route(path, timed(state, label, bind(fn, shape, media)), methods=methods)

    js, xml = "application/json", "application/xml"
    return [
        r("/spotify/api/token", spotify_token, ["POST"], _spotify_error, js),
        r("/spotify/v1/{path:path}", spotify_api, ["GET"], _spotify_error, js),
        r("/musicbrainz/ws/2/{path:path}", musicbrainz_api, ["GET"], _musicbrainz_error, xml),
        r("/lastfm/2.0/", lastfm_api, ["GET", "POST"], _lastfm_error, "text/xml"),
    ]
