"""The Starlette app: typed ``/v1`` API over :class:`tunegate.AsyncGateway`, errors as
``application/problem+json``, ``X-Request-ID`` correlation, ``/healthz``."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunegate import (
    AsyncGateway,
    CircuitBreakerOpenError,
    InvalidInput,
    MalformedResponse,
    NotFound,
    ProviderUnavailable,
    RateLimited,
    RateLimitTimeout,
    Settings,
    TunegateError,
    correlation_id,
)
from tunegate.enrich import Providers, Row, enrich_row

__all__ = ["create_app", "serve"]

PROBLEM = "https://tunegate.dev/problems/"
MAX_ENRICH_ROWS = 50

# (exception class, HTTP status, stable problem type); first match wins.
_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    (InvalidInput, 422, "invalid-input"),
    (NotFound, 404, "not-found"),
    (RateLimited, 429, "rate-limited"),
    (RateLimitTimeout, 429, "rate-limited"),
    (CircuitBreakerOpenError, 503, "breaker-open"),
    (MalformedResponse, 502, "upstream-malformed"),
    (ProviderUnavailable, 503, "upstream-unavailable"),
    (TunegateError, 502, "upstream-error"),
)


def problem(status: int, kind: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM + kind, "title": kind.replace("-", " "), "status": status}
    body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _from_exception(exc: BaseException) -> JSONResponse:
    for cls, status, kind in _ERRORS:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, InvalidInput):
                extra["field"] = exc.field
            response = problem(status, kind, str(exc), **extra)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None and status in (429, 503):
                response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            return response
    raise exc


def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name) or request.path_params.get(name)
    if not value:
        raise InvalidInput(name, "missing required parameter")
    return str(value)


Handler = Callable[[Request], Awaitable[Any]]


def _api(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A JSON endpoint: the handler's value as JSON (404 problem for None), errors mapped."""

    async def endpoint(request: Request) -> Response:
        try:
            value = await fn(request)
        except Exception as exc:  # mapped to a problem, or re-raised as a 500
            return _from_exception(exc)
        if value is None:
            return problem(404, "not-found", f"nothing found for {request.url.path}")
        return JSONResponse(value)

    return endpoint


@contextlib.contextmanager
def _sandbox_settings() -> Iterator[Settings]:
    from tunegate.sandbox import sandbox

    with sandbox() as (_emu, settings):
        yield settings


def create_app(gateway: AsyncGateway | None = None, *, sandbox: bool = False) -> Starlette:
    """The service app. ``gateway`` is used as given (the caller closes it); otherwise one
    is built from the environment, or against the built-in emulator when ``sandbox``."""
    state: dict[str, AsyncGateway] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if gateway is not None:
            state["gw"] = gateway
            yield
            return
        with contextlib.ExitStack() as stack:
            settings = stack.enter_context(_sandbox_settings()) if sandbox else None
            gw = AsyncGateway(settings) if settings is not None else AsyncGateway.from_env()
            state["gw"] = gw
            try:
                yield
            finally:
                await gw.aclose()

    def gw() -> AsyncGateway:
        return state["gw"]

    async def spotify_search(r: Request) -> Any:
        return await gw().spotify.search_track(_param(r, "artist"), _param(r, "title"))

    async def spotify_track(r: Request) -> Any:
        return await gw().spotify.get_track(_param(r, "id"))

    async def spotify_tracks(r: Request) -> Any:
        ids = [i for i in _param(r, "ids").split(",") if i]
        return await gw().spotify.get_tracks(ids)

    async def spotify_isrc(r: Request) -> Any:
        return await gw().spotify.search_by_isrc(_param(r, "isrc"))

    async def mb_isrc(r: Request) -> Any:
        return await gw().musicbrainz.lookup_isrc(_param(r, "isrc"))

    async def mb_search(r: Request) -> Any:
        return await gw().musicbrainz.search_recording(_param(r, "artist"), _param(r, "title"))

    async def mb_recording(r: Request) -> Any:
        return await gw().musicbrainz.get_recording(_param(r, "mbid"))

    async def lastfm_tags(r: Request) -> Any:
        return await gw().lastfm.get_track_tags(_param(r, "artist"), _param(r, "title"))

    async def lastfm_info(r: Request) -> Any:
        return await gw().lastfm.get_track_info(_param(r, "artist"), _param(r, "title"))

    async def lastfm_artist_tags(r: Request) -> Any:
        return await gw().lastfm.get_artist_tags(_param(r, "artist"))

    async def enrich(r: Request) -> Any:
        try:
            body = await r.json()
        except ValueError:
            raise InvalidInput("rows", "body is not JSON") from None
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not 0 < len(rows) <= MAX_ENRICH_ROWS:
            raise InvalidInput("rows", f"must be a list of 1..{MAX_ENRICH_ROWS} objects")
        providers = Providers.of(gw())
        out = []
        for i, item in enumerate(rows):
            if not isinstance(item, dict):
                raise InvalidInput(f"rows[{i}]", "must be an object")
            row = Row(i, str(item.get("artist", "")), str(item.get("title", "")))
            out.append(await enrich_row(providers, row))
        return {"records": out}

    async def healthz(r: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/healthz", healthz),
        Route("/v1/spotify/search", _api(spotify_search)),
        Route("/v1/spotify/tracks", _api(spotify_tracks)),
        Route("/v1/spotify/tracks/{id}", _api(spotify_track)),
        Route("/v1/spotify/isrc/{isrc}", _api(spotify_isrc)),
        Route("/v1/musicbrainz/isrc/{isrc}", _api(mb_isrc)),
        Route("/v1/musicbrainz/recordings", _api(mb_search)),
        Route("/v1/musicbrainz/recordings/{mbid}", _api(mb_recording)),
        Route("/v1/lastfm/tags", _api(lastfm_tags)),
        Route("/v1/lastfm/track", _api(lastfm_info)),
        Route("/v1/lastfm/artist-tags", _api(lastfm_artist_tags)),
        Route("/v1/enrich", _api(enrich), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    return app


class RequestIdMiddleware:
    """Tags the request with its ``X-Request-ID`` (or a fresh one) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")[:128] or None
        with correlation_id(given) as rid:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message)["X-Request-ID"] = rid
                await send(message)

            await self.app(scope, receive, send_with_id)


def serve(host: str = "127.0.0.1", port: int = 8080, sandbox: bool = False) -> None:
    """Run the service on uvicorn until interrupted (in-flight requests get 10 s).

    Configuration comes from the environment, as for ``Gateway.from_env()``."""
    import uvicorn

    app = create_app(sandbox=sandbox)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=10)
