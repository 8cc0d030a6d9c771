"""The HTTP pool's connection limits and body reading (``tunegate._http.HttpPool``), against
a real loopback server: concurrent callers get their own connections up to ``pool_size``
per host, and the body cap holds on every read path (announced, chunked, compressed)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
from collections.abc import Iterator

import orjson
import pytest

from tests.pipeline._server import Reply, ScriptServer, serve
from tunegate._http import TOO_LARGE, HttpConfig, HttpPool, HttpRequest
from tunegate.exceptions import MalformedResponse

HOLD = 0.3  # seconds the server holds each answer, so the callers overlap


@pytest.fixture
def server() -> Iterator[ScriptServer]:
    yield from serve()


def _request(server: ScriptServer, path: str) -> HttpRequest:
    return HttpRequest("GET", f"{server.url}{path}", "test", path)


def _fan_out(pool: HttpPool, server: ScriptServer, n: int, driver: str) -> list[bytes]:
    """``n`` overlapping exchanges through ``pool``: tasks on one loop, or threads."""
    requests = [_request(server, f"/slow/{i}") for i in range(n)]
    if driver == "sync":
        with concurrent.futures.ThreadPoolExecutor(n) as threads:
            bodies = [r.body for r in threads.map(pool.send, requests)]
        pool.close()
        return bodies

    async def go() -> list[bytes]:
        try:
            answers = await asyncio.gather(*(pool.asend(r) for r in requests))
            return [a.body for a in answers]
        finally:
            await pool.aclose()

    return asyncio.run(go())


def _ports(server: ScriptServer) -> set[int]:
    return {s.peer_port for s in server.requests() if s.path.startswith("/slow/")}


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_the_default_pool_gives_16_concurrent_callers_16_connections(
    server: ScriptServer, driver: str
) -> None:
    """The default ``pool_size`` is sized for a 16-way fan-out: no caller waits for another's
    connection (the former default of 10 made 6 of 16 wait, issue 12 figure 4)."""
    assert HttpConfig().pool_size >= 16
    server.default = Reply(json={"ok": True}, delay=HOLD)
    pool = HttpPool("test", HttpConfig())
    bodies = _fan_out(pool, server, 16, driver)
    assert [orjson.loads(b) for b in bodies] == [{"ok": True}] * 16
    assert len(_ports(server)) == 16


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_pool_size_caps_the_connections_per_host(server: ScriptServer, driver: str) -> None:
    """With ``pool_size=4``, 12 overlapping callers share 4 connections (the rest queue)."""
    server.default = Reply(json={"ok": True}, delay=HOLD)
    pool = HttpPool("test", HttpConfig(pool_size=4))
    bodies = _fan_out(pool, server, 12, driver)
    assert len(bodies) == 12
    assert len(_ports(server)) == 4


@pytest.mark.parametrize("mode", ["normal", "stream", "gzip"])
def test_bodies_over_64_kib_arrive_whole_on_every_read_path(
    server: ScriptServer, mode: str
) -> None:
    """Announced (one read), chunked (the capped chunk loop) and gzip (inflated in the loop)
    bodies larger than one 64 KiB chunk come back byte for byte."""
    value = {"blob": "".join(f"{i:07d}" for i in range(30_000))}  # 210 KB of JSON
    server.script("/big", Reply(json=value, mode=mode))
    pool = HttpPool("test", HttpConfig())
    try:
        answer = pool.send(_request(server, "/big"))
    finally:
        pool.close()
    assert answer.status == 200
    assert orjson.loads(answer.body) == value
    encoding = answer.headers.get("Content-Encoding")
    assert encoding == ("gzip" if mode == "gzip" else None)


def test_a_compressed_body_that_inflates_past_the_cap_is_too_large(
    server: ScriptServer,
) -> None:
    """The cap counts the decompressed bytes: a small gzip body announcing a small length
    that inflates to more than ``max_body_bytes`` is refused, not read whole."""
    value = {"blob": "x" * 50_000}
    assert len(gzip.compress(orjson.dumps(value))) < 4096  # what the server announces
    server.script("/bomb", Reply(json=value, mode="gzip"))
    pool = HttpPool("test", HttpConfig(max_body_bytes=4096))
    try:
        with pytest.raises(MalformedResponse) as caught:
            pool.send(_request(server, "/bomb"))
    finally:
        pool.close()
    assert caught.value.code == TOO_LARGE


def test_the_sync_bridge_hands_back_results_errors_and_timeouts() -> None:
    """``_Bridge.run``: a coroutine's value or its very exception comes back to the calling
    thread; past the timeout the caller gets ``concurrent.futures.TimeoutError`` and the
    task on the bridge loop is cancelled, not left running."""
    from tunegate._http import _get_bridge

    bridge = _get_bridge()

    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    class Boom(Exception):
        pass

    boom = Boom()

    async def fails() -> None:
        await asyncio.sleep(0)
        raise boom

    cancelled = concurrent.futures.Future[bool]()

    async def hangs() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set_result(True)
            raise

    assert bridge.run(value(), None) == 7
    assert bridge.run(value(), 5.0) == 7
    with pytest.raises(Boom) as caught:
        bridge.run(fails(), 5.0)
    assert caught.value is boom
    with pytest.raises(concurrent.futures.TimeoutError):
        bridge.run(hangs(), 0.05)
    assert cancelled.result(timeout=5.0)
