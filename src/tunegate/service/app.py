"""The Starlette app: the typed ``/v1`` API over :class:`tunegate.AsyncGateway`, the
providers' own protocols under ``/spotify``, ``/musicbrainz``, ``/lastfm``, operations
(``/healthz``, ``/readyz``, ``/metrics``, ``/admin/...``), ``/openapi.json``, ``/docs``
and the ``/status`` page. Errors are ``application/problem+json``; every answer carries
``X-Request-ID``."""

from __future__ import annotations

import contextlib
import gc
import random
import secrets
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunegate.clients import AsyncGateway, Settings
from tunegate.config import DEFAULT_DRAIN, service_config
from tunegate.exceptions import ConfigurationError
from tunegate.observability import correlation_id, new_registry
from tunegate.service import ops, passthrough
from tunegate.service.api import DEFAULT_DEADLINE, ENDPOINTS, Deadlines, handler
from tunegate.service.callers import CallerKeys, guarded
from tunegate.service.openapi import DOCS_HTML, openapi_document
from tunegate.service.status import STATUS_HTML

if TYPE_CHECKING:
    from tunegate.config import CliConfig
    from tunegate.observability import CollectorRegistry

__all__ = ["ServiceOptions", "create_app", "serve"]


@dataclass(frozen=True)
class ServiceOptions:
    """What the service needs beyond the gateway. ``admin_token`` None: the admin
    endpoints answer 401 to everyone. ``registry``: the Prometheus registry ``/metrics``
    shows (the gateway's pipelines must record into it; None: a new one when the service
    builds its gateway, else prometheus-client's global one). ``api_keys``: the callers'
    keys, each naming an application (:mod:`tunegate.service.callers`); when set, every
    ``/v1`` and pass-through request must carry one and runs as that application for the
    limiter's fair share. ``token_key`` signs the tokens ``/spotify/api/token`` issues
    (random per process unless set)."""

    admin_token: str | None = field(default=None, repr=False)
    deadline: float = DEFAULT_DEADLINE
    registry: CollectorRegistry | None = None
    api_keys: CallerKeys = field(default_factory=CallerKeys, repr=False)
    token_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    # Seconds SIGTERM waits for in-flight requests before cancelling them (TUNEGATE_DRAIN).
    drain: int = DEFAULT_DRAIN

    @classmethod
    def from_config(cls, config: CliConfig, **given: Any) -> ServiceOptions:
        """From the configuration's service settings (``admin_token``, ``token_key``,
        ``drain``, ``api_keys``: see :mod:`tunegate.config`); ``given`` wins. Raises
        ConfigurationError, naming a caller key entry by its position, for bad keys."""
        given.setdefault("api_keys", CallerKeys.of(config.caller_key_table()))
        key = config.secret("token_key")
        if key:  # several service processes must sign the callers' tokens alike
            given.setdefault("token_key", key.encode())
        given.setdefault("drain", config.drain)
        return cls(admin_token=config.secret("admin_token"), **given)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> ServiceOptions:
        """From the service's variables alone (``TUNEGATE_ADMIN_TOKEN``,
        ``TUNEGATE_TOKEN_KEY``, ``TUNEGATE_DRAIN``, ``TUNEGATE_API_KEYS``), no file: what
        :func:`create_app` uses when given no options. Raises ConfigurationError naming
        the variable, never its value."""
        return cls.from_config(service_config(environ), **given)


@contextlib.contextmanager
def _sandbox_settings() -> Iterator[Settings]:
    from tunegate.sandbox import sandbox

    with sandbox() as (_emu, settings):
        yield settings


def _new_registry() -> CollectorRegistry | None:
    return new_registry()


def create_app(
    gateway: AsyncGateway | None = None,
    *,
    sandbox: bool = False,
    settings: Settings | None = None,
    options: ServiceOptions | None = None,
    cache_path: str | None = None,
    owns_gateway: bool = False,
    freeze_gc: bool = False,
) -> Starlette:
    """The service app. ``gateway`` is used as given (the caller closes it); otherwise one
    is built at startup from ``settings`` (default: the environment), or against the
    built-in emulator when ``sandbox``. ``cache_path``: a SQLite cache file for a service
    without Redis (default: in memory). ``owns_gateway``: close the given gateway at
    shutdown (on the server's loop, where its connections live). ``freeze_gc``: once
    started, move every object alive then out of the garbage collector's sight
    (``gc.freeze``), as ``tunegate serve`` does (see :func:`_frozen_at_start`)."""
    opts = options if options is not None else ServiceOptions.from_env()
    registry = opts.registry
    if registry is None and gateway is None:
        registry = _new_registry()
    state = ops.State(registry=registry, options=opts)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if gateway is not None:
            state.gateway = gateway
            _frozen_at_start(freeze_gc)
            try:
                yield
            finally:
                await state.aclose()
                if owns_gateway:
                    await gateway.aclose()
            return
        with contextlib.ExitStack() as stack:
            chosen = settings
            if sandbox:
                chosen = stack.enter_context(_sandbox_settings())
            elif chosen is None:
                chosen = Settings.from_env()
            cache = None
            if cache_path and cache_path != "memory" and not chosen.redis_url:
                from tunegate.cache import CacheManager

                cache = CacheManager.sqlite(cache_path)
            gw = AsyncGateway(chosen, registry=registry, cache_manager=cache)
            state.gateway = gw
            _frozen_at_start(freeze_gc)
            try:
                yield
            finally:
                await state.aclose()
                await gw.aclose()
                if cache is not None:
                    await cache.aclose()

    routes: list[Route] = []
    deadlines = Deadlines()
    for endpoint in ENDPOINTS:
        run = guarded(opts.api_keys, handler(endpoint, state.gw, opts.deadline, deadlines))
        routes.append(
            Route(endpoint.path, ops.timed(state, endpoint.path, run), methods=[endpoint.method])
        )
    routes += ops.routes(state)
    routes += passthrough.routes(state)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_HTML)

    async def status_page(request: Request) -> Response:
        return HTMLResponse(STATUS_HTML)

    routes += [
        Route("/openapi.json", openapi, include_in_schema=False),
        Route("/docs", docs, include_in_schema=False),
        Route("/status", status_page, include_in_schema=False),
        Route("/", status_page, include_in_schema=False),
    ]
    document = openapi_document(routes, caller_keys=bool(opts.api_keys))
    app = Starlette(lifespan=lifespan)
    app.router = PrefixRouter(routes, lifespan=lifespan)
    app.add_middleware(RequestIdMiddleware)
    app.state.tunegate = state
    return app


def _frozen_at_start(freeze: bool) -> None:
    """``gc.freeze()`` once the app and its gateway are built: what lives from startup on
    (modules, the gateway, the emulator's catalogue with ``--sandbox``) is never scanned
    by a full collection again. Measured under wrk on a Redis hit: 6 full collections in
    8 s of up to 58 ms each without it (the p99), 2.6 ms in all with it."""
    if freeze:
        gc.collect()
        gc.freeze()


class PrefixRouter(Router):
    """Starlette's router, trying only the routes whose literal prefix (the template up to
    its first parameter) the path starts with. A route's regular expression is anchored
    on that prefix, so the first full (or partial: 405) match is the same route as in
    Starlette's loop, which costs about 1 us a route tried: ``/healthz`` came after 20.
    Nothing matched: Starlette's own loop, for its slash redirect and 404."""

    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(list(routes), **kwargs)
        self._prefixed = [(_literal_prefix(route), route) for route in self.routes]

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = self
        path = get_route_path(scope)
        partial: tuple[BaseRoute, Scope] | None = None
        for prefix, route in self._prefixed:
            if not path.startswith(prefix):
                continue
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial = route, child_scope
        if partial is not None:
            scope["route"] = partial[0]
            scope.update(partial[1])
            await partial[0].handle(scope, receive, send)
            return
        await super().app(scope, receive, send)  # no route: the redirect or the 404


def _literal_prefix(route: BaseRoute) -> str:
    """What every path ``route`` matches starts with ("" for a route of another kind)."""
    path = getattr(route, "path", None)
    if not isinstance(route, Route) or not isinstance(path, str):
        return ""
    return path.split("{", 1)[0]


_ids = random.Random()  # seeded from os.urandom; request ids need to be distinct, not secret


def new_request_id() -> str:
    """A fresh request id: 16 hex digits (uuid4 reads os.urandom per call, a few us)."""
    return f"{_ids.getrandbits(64):016x}"


class RequestIdMiddleware:
    """Tags the request with its ``X-Request-ID`` (or a fresh one) and echoes it back.
    Reads and writes the raw header lists: it runs on every request, hits included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value[:128].decode("latin-1")
                given = text if text.isprintable() else None
                break
        with correlation_id(given or new_request_id()) as rid:
            header = (b"x-request-id", rid.encode("latin-1"))

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), header]
                await send(message)

            await self.app(scope, receive, send_with_id)


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    sandbox: bool = False,
    config: CliConfig | None = None,
) -> None:
    """Run the service on uvicorn until SIGTERM or SIGINT: it stops accepting connections
    at once, lets in-flight requests finish for ``TUNEGATE_DRAIN`` seconds (10), cancels
    the rest, closes the gateway and exits.

    ``config`` (the CLI's configuration: flags > environment > TOML file) gives the
    service's own settings and, unless ``sandbox``, the providers' settings and the cache;
    without it everything comes from the environment (``Gateway.from_env()``,
    :meth:`ServiceOptions.from_env`)."""
    import uvicorn

    provider_config = None if sandbox else config
    settings = None if provider_config is None else provider_config.client_settings()
    cache_path = None if provider_config is None else provider_config.cache
    try:
        if config is None:
            options = ServiceOptions.from_env()
        else:
            options = ServiceOptions.from_config(config)
    except ConfigurationError as exc:  # bad caller keys: one line, exit 2
        print(f"tunegate serve: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app = create_app(
        sandbox=sandbox,
        settings=settings,
        cache_path=cache_path,
        options=options,
        freeze_gc=True,
    )
    # No access log: a pass-through URL may carry a caller's key in its query string.
    uvicorn.run(
        app, host=host, port=port, timeout_graceful_shutdown=options.drain, access_log=False
    )
