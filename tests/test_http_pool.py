"""The HTTP pool's connection limits and body reading (``tunegate._http.HttpPool``), against
a real loopback server: concurrent callers get their own connections up to ``pool_size``
per host, and the body cap holds on every read path (announced, chunked, compressed)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import gzip
import inspect
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator

import orjson
import pytest

from tests.pipeline._server import Reply, ScriptServer, serve
from tunegate._http import TOO_LARGE, HttpConfig, HttpPool, HttpRequest, _Bridge, _get_bridge
from tunegate.exceptions import MalformedResponse, ProviderUnavailable

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


@contextlib.contextmanager
def _loop_held(bridge: _Bridge, block: threading.Event | None = None) -> Iterator[None]:
    """The bridge loop run by another thread for the duration (its exchange lasts until
    the block ends), so this thread's calls are handed over to it; with ``block``, the
    loop is stuck in a callback until that event is set."""
    held, release = threading.Event(), threading.Event()

    async def hold() -> None:
        held.set()
        if block is not None:
            block.wait(5.0)
        while not release.is_set():  # noqa: ASYNC110 (a thread's event, not the loop's)
            await asyncio.sleep(0.005)

    holder = threading.Thread(target=bridge.run, args=(hold(), 10.0))
    holder.start()
    try:
        assert held.wait(5.0)
        yield
    finally:
        release.set()
        if block is not None:
            block.set()
        holder.join(5.0)


@pytest.mark.parametrize("where", ["main thread", "other thread", "handed over"])
def test_the_sync_bridge_hands_back_results_errors_and_timeouts(where: str) -> None:
    """``_Bridge.run``: a coroutine's value or its very exception comes back to the calling
    thread; past the timeout the caller gets ``concurrent.futures.TimeoutError`` and the
    task on the bridge loop is cancelled, not left running. Whether the caller runs the
    loop itself (main thread, another thread) or hands its call to the thread running it."""
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

    def calls() -> None:
        assert bridge.run(value(), None) == 7
        assert bridge.run(value(), 5.0) == 7
        with pytest.raises(Boom) as caught:
            bridge.run(fails(), 5.0)
        assert caught.value is boom
        with pytest.raises(concurrent.futures.TimeoutError):
            bridge.run(_hangs(cancelled), 0.05)
        assert cancelled.result(timeout=5.0)

    if where == "other thread":
        with concurrent.futures.ThreadPoolExecutor(1) as other:
            other.submit(calls).result(timeout=20)
    elif where == "handed over":
        with _loop_held(bridge):
            calls()
    else:
        calls()


def test_sync_callers_on_many_threads_and_inside_a_running_loop_all_get_their_answers() -> None:
    """32 threads at once (one runs the loop, the others hand over, the daemon thread takes
    over when the one leaves), and a sync call from inside another running event loop: each
    gets its own answer, and the loop is free again afterwards."""
    bridge = _get_bridge()

    async def echo(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 5))
        return i

    with concurrent.futures.ThreadPoolExecutor(32) as threads:
        answers = list(threads.map(lambda i: bridge.run(echo(i), 10.0), range(500)))
    assert answers == list(range(500))

    async def inside() -> int:
        return bridge.run(echo(3), 10.0)  # this thread runs a loop: handed over

    assert asyncio.run(inside()) == 3
    assert bridge.run(echo(4), 10.0) == 4


def test_an_idle_bridge_still_runs_its_loops_timers() -> None:
    """No caller for a while: the daemon thread still gives the loop a pass (keep-alive
    expiry, a peer's close) instead of leaving it until the next call."""
    bridge = _get_bridge()
    fired = threading.Event()

    async def arm() -> None:
        asyncio.get_running_loop().call_later(0.2, fired.set)

    bridge.run(arm(), 5.0)
    assert fired.wait(10.0)


async def _hangs(cancelled: concurrent.futures.Future[bool]) -> None:
    """An exchange that never ends by itself; says so in ``cancelled`` when cancelled."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        cancelled.set_result(True)
        raise


@pytest.mark.parametrize("where", ["runs the loop", "handed over"])
def test_an_interrupt_while_a_sync_caller_waits_cancels_its_exchange(where: str) -> None:
    """Ctrl+C in the main thread during a sync call: ``KeyboardInterrupt`` reaches the
    caller and the exchange on the loop is cancelled, not left running; the bridge serves
    the next call."""
    bridge = _get_bridge()
    cancelled = concurrent.futures.Future[bool]()

    async def value() -> int:
        return 7

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl+C reaches the main thread only")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("another SIGINT handler is installed")
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT))
    with contextlib.ExitStack() as stack:
        if where == "handed over":
            stack.enter_context(_loop_held(bridge))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                bridge.run(_hangs(cancelled), 10.0)
        finally:
            timer.join()
        assert cancelled.result(timeout=5.0)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert bridge.run(value(), 5.0) == 7


def test_a_caller_that_gives_up_before_its_exchange_starts_leaves_nothing_unawaited() -> None:
    """A caller whose timeout ends while the loop is stuck in another's callback: its start
    and its cancel run back to back, before the exchange's first step. The coroutine is
    closed (Python's "never awaited" warning would say otherwise) and the bridge serves
    the next caller."""
    bridge = _get_bridge()

    async def value() -> int:
        await asyncio.sleep(0)
        return 7

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unawaited coroutine's warning fails the test
        coro = value()
        gate = threading.Event()
        with _loop_held(bridge, block=gate):
            with pytest.raises(concurrent.futures.TimeoutError):
                bridge.run(coro, 0.01)
            gate.set()
        assert bridge.run(value(), 5.0) == 7
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # never left pending
        del coro
        gc.collect()


# The read timeout below total: what it alone cuts off, what it lets through.
PATIENT_READ = HttpConfig(connect_timeout=1.0, read_timeout=0.3, total_timeout=5.0)


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_the_read_timeout_cuts_off_a_silent_server_and_spares_a_slow_steady_one(
    server: ScriptServer, driver: str
) -> None:
    """``read_timeout`` is the longest silence: no answer for 0.3 s is a timeout long before
    ``total``; a body that drips a byte every 0.05 s for ~1 s (over 3 read timeouts) is read
    whole; an idle keep-alive connection is not timed out between two exchanges."""
    server.script("/silent", Reply(json={"ok": True}, delay=1.5))
    server.script("/drip", Reply(json={"v": "x" * 12}, mode="drip"))
    pool = HttpPool("test", PATIENT_READ)

    def run(path: str) -> bytes:
        if driver == "sync":
            return pool.send(_request(server, path)).body

        async def go() -> bytes:
            try:
                return (await pool.asend(_request(server, path))).body
            finally:
                await pool.aclose()

        return asyncio.run(go())

    with pytest.raises(ProviderUnavailable) as caught:
        run("/silent")  # it answers at 1.5 s, within total: only the read timeout cuts it
    assert isinstance(caught.value.__cause__, TimeoutError)
    started = time.monotonic()
    assert orjson.loads(run("/drip")) == {"v": "x" * 12}
    assert time.monotonic() - started > 3 * PATIENT_READ.read_timeout
    if driver == "sync":  # one session: the second exchange reuses the idle connection
        assert orjson.loads(run("/ok")) == {"ok": True}
        time.sleep(2 * PATIENT_READ.read_timeout)
        assert orjson.loads(run("/ok")) == {"ok": True}
        pool.close()


def test_a_forked_child_gets_its_own_bridge_and_sessions(server: ScriptServer) -> None:
    """After ``os.fork`` the parent's bridge thread and sessions are not the child's: its
    sync and async exchanges open their own and answer; the parent's still work after."""
    pool = HttpPool("test", HttpConfig())
    assert orjson.loads(pool.send(_request(server, "/parent")).body) == {"ok": True}
    parent_bridge = _get_bridge()

    async def once() -> bytes:
        try:
            return (await pool.asend(_request(server, "/child-async"))).body
        finally:
            await pool.aclose()

    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 1
        try:
            body = pool.send(_request(server, "/child-sync"), timeout=5.0).body
            fresh = _get_bridge() is not parent_bridge and _get_bridge().thread.is_alive()
            if orjson.loads(body) == {"ok": True} and fresh:
                code = 0 if orjson.loads(asyncio.run(once())) == {"ok": True} else 3
            else:
                code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _get_bridge() is parent_bridge
    assert orjson.loads(pool.send(_request(server, "/parent")).body) == {"ok": True}
    pool.close()


def test_a_request_is_immutable_equal_by_value_and_shows_no_secret() -> None:
    """What the frozen dataclass it was promised: fields fixed once built, equality and hash
    by value, and a repr naming the method, provider and endpoint only."""

    def build() -> HttpRequest:
        return HttpRequest(
            "GET", "http://x/v1/search", "spotify", "/search", params=(("q", "a"),), secrets=("s3",)
        )

    request = build()
    assert request == build()
    assert hash(request) == hash(build())
    assert (request.params, request.data, request.headers, request.secrets) == (
        (("q", "a"),),
        (),
        (),
        ("s3",),
    )
    with pytest.raises(AttributeError):
        request.url = "http://elsewhere/"  # type: ignore[misc]
    assert repr(request) == str(request) == "HttpRequest(GET spotify /search)"


def test_the_aiohttp_names_the_one_timer_read_timeout_needs_are_there() -> None:
    """Without them the pool falls back to aiohttp's own timers (3 a request): correct, but
    slower; an aiohttp release that renames them must be noticed here, not in a benchmark."""
    from tunegate import _http

    assert _http._LAZY_READ_TIMER


async def test_a_shorter_read_timeout_on_a_reused_connection_is_kept() -> None:
    """The one-timer protocol on a connection reused by a request with a shorter sock_read
    than the one before: the silent server is cut off at the shorter timeout, as aiohttp's
    own timers do, not when the earlier request's timer would have fired."""
    import functools
    from typing import Any

    import aiohttp
    from aiohttp import web

    from tunegate._http import _ReadTimeoutProtocol

    async def fast(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def silent(_: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/fast", fast)
    app.router.add_get("/silent", silent)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    connector = aiohttp.TCPConnector(limit=1)
    factory: Any = functools.partial(_ReadTimeoutProtocol, loop=connector._loop)
    connector._factory = factory  # as HttpPool installs it
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            long, short = aiohttp.ClientTimeout(sock_read=10), aiohttp.ClientTimeout(sock_read=0.3)
            async with session.get(f"http://127.0.0.1:{port}/fast", timeout=long) as r:
                await r.read()
            with pytest.raises(aiohttp.ServerTimeoutError):
                async with session.get(f"http://127.0.0.1:{port}/silent", timeout=short) as r:
                    await asyncio.wait_for(r.read(), 2.5)
    finally:
        await runner.cleanup()
