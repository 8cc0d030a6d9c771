"""How deep a failure surfaces: a failing public call raises its typed error through a
short traceback with one driver loop in it (flows compose with ``yield from``; the error is
raised where the pipeline decides it, its low-level cause kept as ``__cause__``)."""

from __future__ import annotations

import asyncio
import socket
import traceback
from typing import Any

import pytest

from tests._loops import driver_loops
from tests.pipeline._server import Reply, ScriptServer
from tests.pipeline.conftest import MakePipeline, item
from tunegate import AsyncSpotifyClient, RetryPolicy, SpotifyClient
from tunegate.exceptions import ProviderUnavailable, TunegateError

MAX_FRAMES = 12
DRIVERS = {"drive", "adrive"}
RETRY = RetryPolicy(max_attempts=2, base=0.01, cap=0.02, deadline=5.0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def depth(exc: BaseException) -> tuple[int, int]:
    """Frames in ``exc``'s traceback, and how many of them are driver loops (printed)."""
    print("".join(traceback.format_exception(exc)))
    frames = traceback.extract_tb(exc.__traceback__)
    return len(frames), sum(1 for f in frames if f.name in DRIVERS)


@pytest.mark.parametrize(
    "shared", [False, pytest.param(True, marks=pytest.mark.redis)], ids=["local", "redis"]
)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_failing_search_track_raises_typed_error_through_a_short_traceback(
    kind: str, shared: bool, request: pytest.FixtureRequest
) -> None:
    """Also with the token, limiter and breakers shared through Redis: their flows run in
    the same driver loop."""
    url = f"http://127.0.0.1:{closed_port()}"
    options: dict[str, Any] = {"base_url": url, "auth_url": url, "retry": RETRY, "metrics": False}
    if shared:
        options["redis"] = request.getfixturevalue("redis_url")
    caught: BaseException | None = None
    if kind == "sync":
        client = SpotifyClient("a" * 32, "b" * 32, **options)
        try:
            client.search_track("Deadmau5", "Strobe")
        except TunegateError as exc:
            caught = exc
        finally:
            client.close()
    else:

        async def go() -> BaseException | None:
            aclient = AsyncSpotifyClient("a" * 32, "b" * 32, **options)
            try:
                await aclient.search_track("Deadmau5", "Strobe")
            except TunegateError as exc:
                return exc
            finally:
                await aclient.aclose()
            return None

        caught = asyncio.run(go())

    assert isinstance(caught, ProviderUnavailable)
    assert caught.__cause__ is not None  # the connection error, kept as the cause
    frames, drivers = depth(caught)
    print(f"{kind}: {frames} frames, {drivers} driver loop(s)")
    assert drivers == 1
    assert frames <= MAX_FRAMES


@pytest.mark.redis
@pytest.mark.parametrize("one_link", [True, False], ids=["one-link", "cache-own-link"])
def test_shared_breaker_and_limiter_run_in_the_callers_driver_loop(
    redis_url: str, server: ScriptServer, make: MakePipeline, one_link: bool
) -> None:
    """A miss with the cache, limiter, breaker and single-flight all in Redis enters one
    driver loop, and never a second inside it (measured with a profile hook), whether the
    cache shares single-flight's link (folded scripts) or has its own."""
    from tunegate._redis import RedisLink
    from tunegate.breaker import CircuitBreaker
    from tunegate.cache import CacheManager
    from tunegate.ratelimit import RateLimiter

    link = RedisLink(redis_url)
    limiter = RateLimiter(redis=link)
    limiter.configure_provider("test", rate=100.0, capacity=10)
    pipeline = make(
        cache=CacheManager(link if one_link else RedisLink(redis_url)),
        rate_limiter=limiter,
        circuit_breaker=CircuitBreaker("test", redis=link),
        redis=link,
    )
    server.script("/items/1", Reply(503), Reply(json={"v": 1}))
    try:
        with driver_loops() as loops:
            value = pipeline.call(item(1))
    finally:
        link.close()
    assert value == {"v": 1}
    assert server.count("/items/1") == 2  # a retry too: every stage ran
    assert (loops.entered, loops.deepest) == (1, 1)
