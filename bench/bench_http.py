"""Choose tunegate's HTTP library by measurement: sync and async candidates, one run, side by side.

Usage: ``.venv/bin/python bench/bench_http.py [--seconds 0.3] [--repeats 5]``

A local aiohttp server runs in its own process (so its CPU time does not share our GIL) and
answers ``GET /v1/search`` with a 4112-byte JSON body shaped like a Spotify search response,
keep-alive on. Each client reuses one pooled connection set (the way tunegate uses them) and
reads the whole body. Repeats are interleaved round-robin over all candidates so every figure
samples the whole run's machine state; a figure is the median of the repeats in microseconds
per request, with the min-max. Loopback costs ~100 us a round trip on this 2-vCPU machine,
so compare ratios within one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

BODY_SIZE = 4112


def _body() -> bytes:
    item = b'{"name":"Strobe","artists":[{"name":"deadmau5","id":"2CIMQHirSU0MQqyYHq0eOx"}],'
    out = b'{"tracks":{"href":"https://api.spotify.com/v1/search","items":['
    while len(out) < BODY_SIZE - 200:
        out += item + b'"popularity":61},'
    out = out.rstrip(b",") + b'],"limit":10,"offset":0,"total":1000}}'
    return out + b" " * (BODY_SIZE - len(out))


def serve(port: int) -> None:
    """The server process: aiohttp on 127.0.0.1:port until killed."""
    from aiohttp import web

    body = _body()

    async def search(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/search", search)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("bench server did not start")


# -- candidates --------------------------------------------------------------------------
# Each factory returns (call, close): call() performs one GET and returns the body length.

SyncCall = Callable[[], int]
AsyncCall = Callable[[], Awaitable[int]]


def httpx_sync(url: str) -> tuple[SyncCall, Callable[[], None]]:
    import httpx

    client = httpx.Client(http2=False, trust_env=False)
    return (lambda: len(client.get(url).content)), client.close


def httpx2_sync(url: str) -> tuple[SyncCall, Callable[[], None]]:
    import httpx2

    client = httpx2.Client(trust_env=False)
    return (lambda: len(client.get(url).content)), client.close


def urllib3_sync(url: str) -> tuple[SyncCall, Callable[[], None]]:
    import urllib3

    pool = urllib3.PoolManager(maxsize=16, retries=False)
    return (lambda: len(pool.request("GET", url, preload_content=True).data)), pool.clear


def aiohttp_bridge_sync(url: str) -> tuple[SyncCall, Callable[[], None]]:
    """aiohttp driven from sync code through one private event-loop thread."""
    import aiohttp

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    session = asyncio.run_coroutine_threadsafe(make(), loop).result()

    async def get() -> int:
        async with session.get(url) as resp:
            return len(await resp.read())

    def call() -> int:
        return asyncio.run_coroutine_threadsafe(get(), loop).result()

    def close() -> None:
        asyncio.run_coroutine_threadsafe(session.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    return call, close


async def aiohttp_async(url: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession()

    async def get() -> int:
        async with session.get(url) as resp:
            return len(await resp.read())

    return get, session.close


async def httpx_async(url: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    import httpx

    client = httpx.AsyncClient(trust_env=False)

    async def get() -> int:
        return len((await client.get(url)).content)

    return get, client.aclose


async def httpx2_async(url: str) -> tuple[AsyncCall, Callable[[], Awaitable[None]]]:
    import httpx2

    client = httpx2.AsyncClient(trust_env=False)

    async def get() -> int:
        return len((await client.get(url)).content)

    return get, client.aclose


SYNC = {
    "urllib3.PoolManager": urllib3_sync,
    "httpx.Client": httpx_sync,
    "httpx2.Client": httpx2_sync,
    "aiohttp via a loop thread (sync bridge)": aiohttp_bridge_sync,
}
ASYNC = {
    "aiohttp.ClientSession": aiohttp_async,
    "httpx.AsyncClient": httpx_async,
    "httpx2.AsyncClient": httpx2_async,
}


# -- timing ------------------------------------------------------------------------------


def time_sync(factory: Any, url: str, threads: int, seconds: float) -> float:
    """Microseconds per request: `threads` threads each looping on one shared client."""
    call, close = factory(url)
    try:
        warm_until = time.perf_counter() + 0.05
        while time.perf_counter() < warm_until:
            assert call() == BODY_SIZE
        stop = time.perf_counter() + seconds
        counts = [0] * threads

        def worker(i: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                call()
                n += 1
            counts[i] = n

        start = time.perf_counter()
        if threads == 1:
            worker(0)
        else:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                list(pool.map(worker, range(threads)))
        elapsed = time.perf_counter() - start
        return elapsed / sum(counts) * 1e6
    finally:
        close()


def time_async(factory: Any, url: str, concurrency: int, seconds: float) -> float:
    """Microseconds per request: batches of 128 requests, `concurrency` in flight at once."""

    async def main() -> float:
        call, close = await factory(url)
        try:
            sem = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with sem:
                    await call()

            warm_until = time.perf_counter() + 0.05
            while time.perf_counter() < warm_until:
                assert await call() == BODY_SIZE
            done = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                await asyncio.gather(*(one() for _ in range(128)))
                done += 128
            return (time.perf_counter() - start) / done * 1e6
        finally:
            await close()

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        wait_for(port)
        url = f"http://127.0.0.1:{port}/v1/search"
        figures: dict[tuple[str, str, int], list[float]] = {}
        plan: list[tuple[str, str, int]] = []
        for name in SYNC:
            plan += [("sync", name, 1), ("sync", name, 8)]
        for name in ASYNC:
            plan += [("async", name, 1), ("async", name, 16)]
        for _ in range(args.repeats):
            for kind, name, conc in plan:
                if kind == "sync":
                    us = time_sync(SYNC[name], url, conc, args.seconds)
                else:
                    us = time_async(ASYNC[name], url, conc, args.seconds)
                figures.setdefault((kind, name, conc), []).append(us)
        load = os.getloadavg()
        print(f"# HTTP client bench: GET {BODY_SIZE} B JSON from a local aiohttp server process")
        print(f"# {args.repeats} repeats x {args.seconds}s, interleaved; load {load[0]:.2f}")
        print(f"# Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        print()
        print(
            f"| {'client':<46} | {'concurrency':>11} | {'median us/req':>13} | min-max us | req/s |"
        )
        print(f"|{'-' * 48}|{'-' * 13}:|{'-' * 15}:|---:|---:|")
        for (kind, name, conc), values in figures.items():
            med = statistics.median(values)
            lo, hi = min(values), max(values)
            label = f"{kind}: {name}"
            what = f"{conc} thread{'s' if conc > 1 else ''}" if kind == "sync" else f"{conc} tasks"
            row = f"| {label:<46} | {what:>11} | {med:>13.1f} |"
            print(f"{row} {lo:.1f}-{hi:.1f} | {1e6 / med:,.0f} |")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
