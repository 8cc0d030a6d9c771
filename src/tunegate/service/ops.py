"""Operations: ``/healthz``, ``/readyz``, ``/metrics``, ``/status.json`` and the admin
endpoints behind a bearer token, plus the service's own HTTP metrics.

The admin token is compared in constant time and never logged, echoed or counted: the
only trace of a refused call is a 401 problem and the route label ``/admin/...``."""

from __future__ import annotations

import asyncio
import hmac
import math
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tunegate.clients import AsyncGateway
from tunegate.exceptions import ConfigurationError, InvalidInput
from tunegate.observability import HAVE_PROMETHEUS, exposition, http_server_metrics
from tunegate.service.errors import UNAUTHORIZED, from_exception, problem
from tunegate.service.json import JSONBody

if TYPE_CHECKING:
    from tunegate._redis import RedisLink
    from tunegate.observability import CollectorRegistry
    from tunegate.service.app import ServiceOptions

__all__ = ["State", "Timed", "routes", "timed"]

PROVIDERS = ("spotify", "musicbrainz", "lastfm")
_RECENT_ERRORS = 20
_RATE_WINDOW = 10.0  # seconds over which /status reports the request rate


class _HttpMetrics:
    """The server side: requests by route template, method and status; latency by route.
    Labels are the declared templates only (never a raw path, a query or a token)."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[Any, _HttpMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, requests: Any, latency: Any) -> None:
        self.requests, self.latency = requests, latency
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def child(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        """The labelled counter and histogram (remembered: ``labels()`` takes a lock and
        builds a key on every call, and routes and statuses are few)."""
        key = (route, method, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
        return found

    @classmethod
    def of(cls, registry: Any) -> _HttpMetrics:
        found = cls._by_registry.get(registry)
        if found is None:
            made = http_server_metrics(registry)
            assert made is not None  # callers check HAVE_PROMETHEUS
            found = cls._by_registry[registry] = cls(*made)
        return found


@dataclass
class State:
    """What the routes share: the gateway (set at startup), the options, counters."""

    registry: CollectorRegistry | None
    options: ServiceOptions
    gateway: AsyncGateway | None = None
    started: float = field(default_factory=time.time)
    in_flight: int = 0  # requests being answered (the status page's, and drain's, figure)
    recent_errors: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=_RECENT_ERRORS)
    )
    _times: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    _metrics: _HttpMetrics | None = None
    _readiness_link: RedisLink | None = None

    def __post_init__(self) -> None:
        if not HAVE_PROMETHEUS:  # pragma: no cover - the serve extra brings it
            return
        from tunegate.observability import REGISTRY

        self._metrics = _HttpMetrics.of(self.registry if self.registry is not None else REGISTRY)

    def gw(self) -> AsyncGateway:
        if self.gateway is None:
            raise ConfigurationError("the service has not started")
        return self.gateway

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self._times.append(time.monotonic())
        if self._metrics is not None:
            requests, latency = self._metrics.child(route, method, status)
            requests.inc()
            latency.observe(seconds)

    def request_rate(self) -> float:
        since = time.monotonic() - _RATE_WINDOW
        return sum(1 for t in self._times if t >= since) / _RATE_WINDOW

    def readiness_link(self) -> RedisLink | None:
        url = self.gw().settings.redis_url
        if url and self._readiness_link is None:
            from tunegate._redis import RedisLink

            self._readiness_link = RedisLink(url)
        return self._readiness_link

    async def aclose(self) -> None:
        if self._readiness_link is not None:
            await self._readiness_link.aclose()
            self._readiness_link.close()
            self._readiness_link = None


Endpoint = Callable[[Request], Awaitable[Response]]


class Timed:
    """The ASGI app of a route: ``fn`` answers a :class:`Request`, with the HTTP metrics
    and, for answers that are the gateway's failure (429 and 5xx), a line in the status
    page's recent errors. An ASGI app rather than a function, so Starlette calls it as it
    is: its request/response wrapper (a second Request, an exception-handler layer of
    nested closures) cost about 8 us of a hit and handles nothing ours raise (errors
    become problems here; anything else is the server error middleware's 500)."""

    __slots__ = ("fn", "route", "state")

    def __init__(self, state: State, route: str, fn: Endpoint) -> None:
        self.state, self.route, self.fn = state, route, fn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        start = time.perf_counter()
        state.in_flight += 1  # one event loop: no lock
        try:
            response = await self.fn(Request(scope, receive, send))
        finally:
            state.in_flight -= 1
        status = response.status_code
        state.observe(self.route, scope["method"], status, time.perf_counter() - start)
        if status == 429 or status >= 500:
            state.recent_errors.append(
                {
                    "time": time.time(),
                    "route": self.route,
                    "status": status,
                    "problem": _kind(response),
                }
            )
        await response(scope, receive, send)


def timed(state: State, route: str, fn: Endpoint) -> Timed:
    """The route's ASGI app for ``fn`` (:class:`Timed`)."""
    return Timed(state, route, fn)


def _kind(response: Response) -> str | None:
    if response.media_type != "application/problem+json":
        return None
    try:
        kind = orjson.loads(bytes(response.body)).get("type", "")
    except (ValueError, AttributeError):
        return None
    return str(kind).rsplit("/", 1)[-1] or None


# -- health -----------------------------------------------------------------------------


async def _breakers(gw: AsyncGateway) -> dict[str, Any]:
    # The async form: a shared breaker's state is a Redis read, which must not block the loop.
    return {name: dict(stats) for name, stats in (await gw.breakers.aget_stats()).items()}


def _configured(gw: AsyncGateway) -> list[str]:
    found = []
    for name in PROVIDERS:
        try:
            getattr(gw, name)
        except ConfigurationError:
            continue
        found.append(name)
    return found


async def readiness(state: State) -> tuple[bool, dict[str, Any]]:
    gw = state.gw()
    checks: dict[str, Any] = {}
    providers = _configured(gw)
    checks["providers"] = {"ok": bool(providers), "configured": providers}
    link = state.readiness_link()
    if link is not None:
        try:
            await link.aio.ping()
        except Exception as exc:  # any failure to answer is "not ready"
            checks["redis"] = {"ok": False, "error": type(exc).__name__}
        else:
            checks["redis"] = {"ok": True}
    ready = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    body["breakers"] = {k: v["state"] for k, v in (await _breakers(gw)).items()}
    return ready, body


async def status_snapshot(state: State) -> dict[str, Any]:
    """What ``/status`` shows: per provider breaker, limiter, cache and call figures."""
    gw = state.gw()
    # Clients' stats have no async form and may read shared state in Redis: off the loop.
    stats = await asyncio.to_thread(gw.get_stats)
    limiter = await gw.limiter.aget_stats()
    breakers = await _breakers(gw)
    providers = {}
    for name in PROVIDERS:
        s = stats.get(name)
        bucket = limiter.get(name)
        breaker = breakers.get(name)
        providers[name] = {
            "configured": s is not None,
            "breaker": None if breaker is None else breaker["state"],
            "breaker_retry_at": None if breaker is None else breaker["retry_at"],
            "tokens": None if bucket is None else round(bucket["available_tokens"], 3),
            "rate": None if bucket is None else bucket["rate"],
            "capacity": None if bucket is None else bucket["capacity"],
            "paused_until": None if bucket is None else bucket["paused_until"],
            "cache_hit_ratio": None if s is None else round(s["cache_hit_ratio"], 4),
            "api_calls": None if s is None else s["api_calls"],
            "api_errors": None if s is None else s["api_errors"],
            "stale_served": None if s is None else s["stale_served"],
        }
    return {
        "time": time.time(),
        "uptime": round(time.time() - state.started, 1),
        "request_rate": state.request_rate(),
        "in_flight": state.in_flight,
        "providers": providers,
        "recent_errors": list(state.recent_errors)[::-1],
    }


# -- admin ------------------------------------------------------------------------------


def _authorized(state: State, request: Request) -> Response | None:
    """None when the bearer token is the admin token; else the 401 answer."""
    expected = state.options.admin_token
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    ok = (
        expected is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )
    if ok:
        return None
    u = UNAUTHORIZED
    response = problem(u.status, u.kind, "a valid admin bearer token is required", u.title)
    response.headers["WWW-Authenticate"] = 'Bearer realm="tunegate-admin"'
    return response


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except ValueError:
        raise InvalidInput("body", "not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput("body", "must be a JSON object")
    return value


def _number(body: dict[str, Any], name: str, *, required: bool = True) -> float | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(name, "must be a finite number")
    if value <= 0:
        raise InvalidInput(name, "must be > 0")
    return float(value)


def _provider(request: Request, gw: AsyncGateway) -> str:
    name = str(request.path_params["provider"])
    if name not in gw.limiter.buckets:
        raise InvalidInput("provider", f"no rate limit for {name!r}")
    return name


def admin(state: State, fn: Callable[[Request, AsyncGateway], Awaitable[Any]]) -> Endpoint:
    async def run(request: Request) -> Response:
        refused = _authorized(state, request)
        if refused is not None:
            return refused
        try:
            return JSONBody(await fn(request, state.gw()))
        except Exception as exc:
            return from_exception(exc)

    return run


async def _admin_breakers(request: Request, gw: AsyncGateway) -> Any:
    return await _breakers(gw)


async def _admin_breaker_reset(request: Request, gw: AsyncGateway) -> Any:
    name = str(request.path_params["name"])
    breaker = gw.breakers.get(name)
    if breaker is None:
        raise InvalidInput("name", f"no breaker named {name!r}")
    await breaker.areset()
    return {"name": name, "state": str(await breaker.astate())}


async def _admin_invalidate(request: Request, gw: AsyncGateway) -> Any:
    body = await _body(request)
    pattern = body.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidInput("pattern", "must be a non-empty string")
        return {"deleted": await gw.cache.ainvalidate_pattern(pattern)}
    kind = body.get("kind")
    parts = body.get("parts", [])
    if not isinstance(kind, str) or not kind:
        raise InvalidInput("kind", "give 'kind' (and 'parts') or 'pattern'")
    if not isinstance(parts, list) or not all(isinstance(p, str | int) for p in parts):
        raise InvalidInput("parts", "must be a list of strings")
    scope: tuple[str, ...] = ()
    provider = kind.split(":", 1)[0]
    if body.get("scoped", True) and provider in PROVIDERS:
        try:  # the client's origin part, so an emulator's or a mirror's entries match
            scope = getattr(gw, provider).cache_scope
        except ConfigurationError:
            scope = ()
    return {"deleted": await gw.cache.ainvalidate(kind, *scope, *parts)}


async def _admin_stats(request: Request, gw: AsyncGateway) -> Any:
    return await asyncio.to_thread(gw.get_stats)


async def _admin_pause(request: Request, gw: AsyncGateway) -> Any:
    name = _provider(request, gw)
    seconds = _number(await _body(request), "seconds")
    assert seconds is not None
    await gw.limiter.apause(name, seconds)
    paused = (await gw.limiter.aget_stats())[name]["paused_until"]
    return {"provider": name, "paused_until": paused}


async def _admin_resume(request: Request, gw: AsyncGateway) -> Any:
    name = _provider(request, gw)
    # Ends the pause on the shared bucket too: every process behind one Redis resumes.
    await gw.limiter.aresume(name)
    stats = (await gw.limiter.aget_stats())[name]
    # Callers already asleep until slots behind the pause keep them (the limiter cannot
    # call them back): say when the next token is free, so an operator sees it.
    missing = max(0.0, 1.0 - float(stats["available_tokens"]))
    return {
        "provider": name,
        "paused_until": stats["paused_until"],
        "next_token_in": round(missing / float(stats["rate"]), 3),
    }


async def _admin_rate(request: Request, gw: AsyncGateway) -> Any:
    name = _provider(request, gw)
    body = await _body(request)
    bucket = gw.limiter.buckets[name]
    if body.get("reset"):
        await bucket.areset_rate()
    else:
        rate = _number(body, "rate")
        capacity = _number(body, "capacity", required=False)
        assert rate is not None
        await bucket.aadjust_rate(rate, None if capacity is None else max(1, int(capacity)))
    return {"provider": name, "rate": bucket.rate, "capacity": bucket.capacity}


def routes(state: State) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return JSONBody({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready, body = await readiness(state)
        return JSONBody(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        body, media_type = exposition(state.registry)
        return Response(body, media_type=media_type)

    async def status_json(request: Request) -> Response:
        return JSONBody(await status_snapshot(state))

    def r(path: str, fn: Endpoint, method: str = "GET") -> Route:
        return Route(path, timed(state, path, fn), methods=[method])

    return [
        r("/healthz", healthz),
        r("/readyz", readyz),
        r("/metrics", metrics),
        r("/status.json", status_json),
        r("/admin/stats", admin(state, _admin_stats)),
        r("/admin/breakers", admin(state, _admin_breakers)),
        r("/admin/breakers/{name}/reset", admin(state, _admin_breaker_reset), "POST"),
        r("/admin/cache/invalidate", admin(state, _admin_invalidate), "POST"),
        r("/admin/limits/{provider}/pause", admin(state, _admin_pause), "POST"),
        r("/admin/limits/{provider}/resume", admin(state, _admin_resume), "POST"),
        r("/admin/limits/{provider}/rate", admin(state, _admin_rate), "POST"),
    ]
