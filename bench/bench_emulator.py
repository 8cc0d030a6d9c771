"""Requests per second of one emulator process, beside a bare aiohttp "hello" server measured
the same way in the same run (the baseline says what this machine can do at all).

Each server runs in its own process; the load generator (aiohttp client, keep-alive, a fixed
number of concurrent workers) runs here for a fixed time per scenario. Quotas are off: the
point is the server's own throughput. Runs in well under a minute:

    python bench/bench_emulator.py
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from multiprocessing.synchronize import Event as EventType
from typing import Any

import aiohttp
from aiohttp import web

SECONDS = 3.0
WORKERS = 32
MB_AGENT = "tunegate-bench/0.1 ( https://example.org/tunegate )"


def _serve_baseline(ready: Any, stop: EventType) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.to_thread(stop.wait)
        await runner.cleanup()

    asyncio.run(main())


def _serve_emulator(ready: Any, stop: EventType) -> None:
    from tunegate.emulator import Emulator

    with Emulator(rate_limits=False) as emu:
        ready.put((emu.port, emu.issue_spotify_token()))
        stop.wait()


async def _load(url: str, headers: dict[str, str], seconds: float) -> tuple[int, int]:
    done = errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=WORKERS)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status == 200:
                        done += 1
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return done, errors


def _measure(name: str, url: str, headers: dict[str, str]) -> float:
    asyncio.run(_load(url, headers, 0.3))  # warm-up: connections, caches
    done, errors = asyncio.run(_load(url, headers, SECONDS))
    rate = done / SECONDS
    print(f"  {name:<44} {rate:>9,.0f} req/s" + (f"  ({errors} errors)" if errors else ""))
    return rate


def _run(target: Any) -> tuple[mp.Process, Any, EventType]:
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=target, args=(ready, stop), daemon=True)
    proc.start()
    return proc, ready.get(timeout=60), stop


def main() -> None:
    print(f"one server process, {WORKERS} keep-alive workers, {SECONDS:.0f} s per scenario")
    proc, port, stop = _run(_serve_baseline)
    base = _measure("baseline: bare aiohttp hello world", f"http://127.0.0.1:{port}/", {})
    stop.set()
    proc.join(10)

    proc, (port, token), stop = _run(_serve_emulator)
    root = f"http://127.0.0.1:{port}"
    scenarios = [
        (
            "spotify GET /v1/tracks/{id}",
            f"{root}/v1/tracks/3n3Ppam7vgaVa1iaRUc9Lp",
            {"Authorization": f"Bearer {token}"},
        ),
        (
            "musicbrainz GET /ws/2/isrc/{isrc}?fmt=json",
            f"{root}/ws/2/isrc/GBAHS1400099?fmt=json",
            {"User-Agent": MB_AGENT},
        ),
        (
            "lastfm track.getTopTags (JSON)",
            f"{root}/2.0/?method=track.getTopTags&artist=AC/DC&track=Hells+Bells"
            "&api_key=tunegate-test-key&format=json",
            {},
        ),
        (
            "spotify GET /v1/search?q=track:golden",
            f"{root}/v1/search?q=track:golden&type=track&limit=10",
            {"Authorization": f"Bearer {token}"},
        ),
    ]
    rates = [_measure(name, url, headers) for name, url, headers in scenarios]
    stop.set()
    proc.join(10)
    print(
        f"  emulator, simple lookups: {min(rates[:3]):,.0f}-{max(rates[:3]):,.0f} req/s "
        f"({min(rates[:3]) / base:.0%}-{max(rates[:3]) / base:.0%} of the baseline); "
        f"target >= 1,000 req/s: {'met' if min(rates[:3]) >= 1000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
