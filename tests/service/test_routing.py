"""The service's router picks the route Starlette's own loop would, for every path shape it
serves (static, templated, ``{path:path}``), a wrong method (405), an unknown path (404) and
a missing trailing slash (the redirect); and the requests' deadlines (one sweeper per loop)
answer 504 without turning a cancellation from elsewhere into one."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.routing import Router
from starlette.testclient import TestClient

from tunegate.service import create_app
from tunegate.service.api import Deadlines
from tunegate.service.app import PrefixRouter
from tunegate.service.errors import DeadlineExceeded

PATHS = [
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/status",
    "/status.json",
    "/openapi.json",
    "/docs",
    "/v1/spotify/search",
    "/v1/spotify/tracks",
    "/v1/spotify/tracks/4BUJ9WFhRWo4Vj9Z2dPwkf",
    "/v1/spotify/tracks/",
    "/v1/musicbrainz/isrc/USIR20400500/recordings",
    "/v1/musicbrainz/recordings/91062ff3-b045-44e3-9bbb-1da946b8e0b2",
    "/v1/enrich",
    "/spotify/v1/tracks/abc",
    "/spotify/api/token",
    "/musicbrainz/ws/2/recording/x",
    "/lastfm/2.0/",
    "/lastfm/2.0",
    "/admin/breakers/spotify/reset",
    "/admin/limits/spotify/pause",
    "/nothing/here",
    "/v1/nothing",
]


def _chosen(router: Router, path: str, method: str) -> tuple[str, Any]:
    sent: list[dict[str, Any]] = []
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "scheme": "http",
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    seen: list[Any] = []
    for route in router.routes:  # record which route handles it, answer nothing upstream
        route.handle = _recorder(route, seen)  # type: ignore[method-assign]
    try:
        asyncio.run(router.app(scope, receive, send))
    finally:
        for route in router.routes:
            del route.handle
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    return (f"route {seen[0].path}" if seen else f"status {status}"), scope.get("path_params")


def _recorder(route: Any, seen: list[Any]) -> Any:
    async def handle(scope: Any, receive: Any, send: Any) -> None:
        seen.append(route)

    return handle


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_the_prefix_router_picks_starlettes_route(method: str) -> None:
    app = create_app()
    ours = app.router
    assert isinstance(ours, PrefixRouter)
    plain = Router(list(ours.routes))
    for path in PATHS:
        assert _chosen(ours, path, method) == _chosen(plain, path, method), (method, path)


def test_unknown_paths_and_methods_answer_as_starlette_does() -> None:
    with TestClient(create_app(), raise_server_exceptions=True) as c:
        assert c.get("/nothing/here").status_code == 404
        assert c.delete("/healthz").status_code == 405
        assert c.get("/healthz").json() == {"status": "ok"}


def test_a_deadline_is_a_deadline_exceeded_and_a_cancellation_stays_one() -> None:
    deadlines = Deadlines()

    async def run() -> None:
        with pytest.raises(DeadlineExceeded):
            await deadlines.run(0.01, asyncio.sleep(5))
        assert await deadlines.run(5, asyncio.sleep(0, "done")) == "done"

        async def fails() -> None:
            raise LookupError("the call's own error")

        with pytest.raises(LookupError):
            await deadlines.run(5, fails())
        assert not deadlines._due  # every way out unregisters the task
        inner = asyncio.ensure_future(deadlines.run(5, asyncio.sleep(5)))
        await asyncio.sleep(0)
        inner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await inner
        assert asyncio.current_task() is not None
        # The sweeper ends once nothing is registered.
        for _ in range(100):
            if not deadlines._sweepers:
                break
            await asyncio.sleep(Deadlines.TICK)
        assert not deadlines._sweepers

    asyncio.run(run())
