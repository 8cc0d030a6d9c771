"""Warm cache hits through ``tunegate serve`` beside its floors, measured in one run.

Usage: ``.venv/bin/python bench/bench_serve.py [--seconds 5] [--connections 16]``
       ``.venv/bin/python bench/bench_serve.py --outage 60 --down 10 [--rate 50]``

Figures (requests/s, p50 and p99 latency), each from one bounded wrk run on loopback
(``wrk -t1 -cN -dS --latency``; an aiohttp load loop when wrk is not installed):

- floor: the same server and framework (Starlette on uvicorn with uvloop + httptools, one
  worker) answering a constant body, the same bytes as the cached track;
- the typed API, ``GET /v1/spotify/tracks/{id}``, memory cache, warm;
- the pass-through, ``GET /musicbrainz/ws/2/recording/{mbid}?fmt=json``, memory, warm;
- the typed API with the Redis cache (a private ``redis-server``), warm;
- in process: ``await AsyncSpotifyClient.get_track`` warm hit (memory; and Redis), and a
  bare ``redis.asyncio`` GET + ``orjson.loads`` of the same value: no HTTP at all.

``--outage T``: only the issue's second figure: warm typed-API hits at a fixed rate for T
seconds with the private Redis (the cache and the shared state) stopped in the middle for
``--down`` seconds (default a third); 5xx answers and X-Cache per phase, and the time to
the first hit after Redis returns.

Servers run in child processes (this script with ``--child``), against the emulator; the
first request of each is the miss that fills the cache. The machine is shared: read the
ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests/_redis_server.py: the one private-redis helper
    sys.path.insert(1, str(ROOT))

from tests._redis_server import RedisServer, free_port  # noqa: E402

# -- the child servers ------------------------------------------------------------------


def _child(mode: str, port: int, redis_url: str | None) -> None:
    """``floor``: a constant body; ``service``: the tunegate app on the emulator."""
    import uvicorn

    if mode == "floor":
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        body = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()

        async def constant(request: Any) -> Response:
            return Response(body, media_type="application/json")

        app: Any = Starlette(routes=[Route("/floor", constant)])
    else:
        from dataclasses import replace

        from tunegate.clients import AsyncGateway, Settings
        from tunegate.emulator import Emulator
        from tunegate.service import create_app

        emu = Emulator(catalog_size=2_000, rate_limits=False).start()
        settings = Settings.from_env(emu.env())
        if redis_url:
            settings = replace(settings, redis_url=redis_url)
        app = create_app(AsyncGateway(settings), owns_gateway=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


@contextmanager
def _server(
    mode: str, redis_url: str | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    import httpx

    port = free_port()
    args = [sys.executable, __file__, "--child", mode, "--port", str(port)]
    if redis_url:
        args += ["--redis-url", redis_url]
    child_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    proc = subprocess.Popen(args, env=child_env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{mode} server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- load -------------------------------------------------------------------------------


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(url: str, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def aiohttp_load(url: str, seconds: float, connections: int) -> dict[str, float]:
    import aiohttp

    async def run() -> dict[str, float]:
        latencies: list[float] = []
        bad = 0
        stop = time.perf_counter() + seconds

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal bad
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with session.get(url) as r:
                    await r.read()
                    bad += r.status >= 300
                latencies.append((time.perf_counter() - t0) * 1000)

        conn = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=conn) as session:
            await asyncio.gather(*(worker(session) for _ in range(connections)))
        latencies.sort()
        return {
            "rps": len(latencies) / seconds,
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[int(len(latencies) * 0.99)],
            "non_2xx": bad,
        }

    return asyncio.run(run())


# -- in process -------------------------------------------------------------------------


def in_process(redis_url: str | None, seconds: float) -> dict[str, dict[str, float]]:
    import orjson
    import redis.asyncio

    from tunegate.clients import AsyncGateway, Settings
    from tunegate.emulator import Emulator

    out: dict[str, dict[str, float]] = {}

    async def loop(fn: Any) -> dict[str, float]:
        await fn()
        lat: list[float] = []
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await fn()
            lat.append(time.perf_counter() - t0)
        lat.sort()
        return {
            "rps": len(lat) / sum(lat),
            "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
        }

    async def run() -> None:
        from dataclasses import replace

        with Emulator(catalog_size=2_000, rate_limits=False) as emu:
            tid = emu.catalog.track(
                next(i for i in range(100) if emu.catalog.track(i).spotify_id)
            ).spotify_id
            assert tid is not None
            for label, url in (("memory", None), ("redis", redis_url)):
                if label == "redis" and not url:
                    continue
                settings = replace(Settings.from_env(emu.env()), redis_url=url)
                async with AsyncGateway(settings) as gw:
                    out[f"library get_track hit ({label})"] = await loop(
                        lambda gw=gw: gw.spotify.get_track(tid)
                    )
            if redis_url:
                client = redis.asyncio.Redis.from_url(redis_url)
                value = orjson.dumps({"id": tid, "name": "x" * 900})
                await client.set("bench:serve:get", value)

                async def get() -> Any:
                    raw = await client.get("bench:serve:get")
                    assert raw is not None
                    return orjson.loads(raw)

                out["bare redis GET + orjson.loads"] = await loop(get)
                await client.aclose()

    asyncio.run(run())
    return out


# -- main -------------------------------------------------------------------------------


@contextmanager
def _private_redis() -> Iterator[RedisServer | None]:
    """The tests' private redis-server (``tests/_redis_server.py``: the one helper, with the
    stop/start the outage phase needs), or None without a redis-server binary."""
    if shutil.which("redis-server") is None:
        yield None
        return
    with RedisServer() as server:
        yield server


def outage(total: float, down_at: float, down_for: float, rate: float) -> None:
    """The issue's second figure: a fixed rate of warm typed-API requests while Redis (the
    cache and the shared state) is stopped for ``down_for`` seconds; 5xx answers, X-Cache
    by phase, and the time from Redis's return to the first hit again."""
    import aiohttp

    from tunegate.emulator.catalog import Catalog

    cat = Catalog(2_000, 0)
    ids = [t.spotify_id for t in (cat.track(i) for i in range(400)) if t.spotify_id][:50]
    with _private_redis() as redis_server:
        if redis_server is None:
            print("outage: no redis-server binary; skipped")
            return
        with _server("service", redis_server.url) as url:

            async def run() -> list[tuple[float, int, str]]:
                out: list[tuple[float, int, str]] = []
                async with aiohttp.ClientSession() as session:
                    for tid in ids:  # fill the cache
                        async with session.get(f"{url}/v1/spotify/tracks/{tid}") as r:
                            await r.read()
                    start = time.monotonic()
                    stopped = restarted = False
                    tasks = []

                    async def one(tid: str) -> None:
                        t0 = time.monotonic() - start
                        try:
                            async with session.get(
                                f"{url}/v1/spotify/tracks/{tid}",
                                timeout=aiohttp.ClientTimeout(total=30),
                            ) as r:
                                await r.read()
                                out.append((t0, r.status, r.headers.get("X-Cache", "")))
                        except (aiohttp.ClientError, TimeoutError):
                            out.append((t0, 599, ""))

                    n = 0
                    while (now := time.monotonic() - start) < total:
                        if not stopped and now >= down_at:
                            await asyncio.to_thread(redis_server.stop)
                            stopped = True
                        if stopped and not restarted and now >= down_at + down_for:
                            await asyncio.to_thread(redis_server.start)
                            restarted = True
                        tasks.append(asyncio.ensure_future(one(ids[n % len(ids)])))
                        n += 1
                        await asyncio.sleep(max(0.0, n / rate - (time.monotonic() - start)))
                    await asyncio.gather(*tasks)
                return out

            results = asyncio.run(run())
    back = down_at + down_for
    phases = {"before": (0, down_at), "redis down": (down_at, back), "after": (back, total)}
    print(f"outage: {rate:g} req/s for {total:g} s, Redis stopped {down_at:g}..{back:g} s")
    for name, (lo, hi) in phases.items():
        part = [r for r in results if lo <= r[0] < hi]
        errors = sum(1 for r in part if r[1] >= 500)
        caches = {k: sum(1 for r in part if r[2] == k) for k in ("hit", "miss", "stale")}
        print(f"  {name:<11} {len(part):>5} requests, {errors} 5xx, X-Cache {caches}")
    first_hit = next((r[0] for r in sorted(results) if r[0] >= back and r[2] == "hit"), None)
    recovery = "never" if first_hit is None else f"{first_hit - back:.2f} s"
    print(f"  first hit after Redis returned: {recovery}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--child", choices=["floor", "service"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis-url")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--outage", type=float, metavar="SECONDS", help="only the Redis-outage run, this long"
    )
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s of --outage")
    parser.add_argument(
        "--down", type=float, help="seconds Redis stays stopped (default: a third of --outage)"
    )
    a = parser.parse_args()
    if a.child:
        _child(a.child, a.port, a.redis_url)
        return
    sys.path.insert(0, str(ROOT / "src"))
    if a.outage:
        down = a.down if a.down is not None else a.outage / 3
        outage(a.outage, (a.outage - down) / 2, down, a.rate)
        return
    import httpx

    from tunegate.emulator.catalog import Catalog

    load = wrk if shutil.which("wrk") else aiohttp_load
    loader = "wrk" if load is wrk else "aiohttp loop"
    cat = Catalog(2_000, 0)
    t = next(cat.track(i) for i in range(200) if cat.track(i).spotify_id and cat.track(i).mbid)
    figures: dict[str, dict[str, float]] = {}
    with _private_redis() as redis_server:
        redis_url = None if redis_server is None else redis_server.url
        with _server("service") as url:
            typed = f"{url}/v1/spotify/tracks/{t.spotify_id}"
            passthrough = f"{url}/musicbrainz/ws/2/recording/{t.mbid}?fmt=json"
            body = httpx.get(typed, timeout=30).content  # the miss; then every call is a hit
            assert httpx.get(typed, timeout=30).headers["x-cache"] == "hit"
            httpx.get(passthrough, timeout=30)
            assert httpx.get(passthrough, timeout=30).headers["x-cache"] == "hit"
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                f.write(body)
            with _server("floor", env={"BENCH_FLOOR_BODY": f.name}) as floor:
                figures["floor: constant body (same framework)"] = load(
                    f"{floor}/floor", a.seconds, a.connections
                )
            figures["typed API hit (memory)"] = load(typed, a.seconds, a.connections)
            figures["pass-through hit (memory)"] = load(passthrough, a.seconds, a.connections)
            os.unlink(f.name)
        if redis_url:
            with _server("service", redis_url) as url:
                typed = f"{url}/v1/spotify/tracks/{t.spotify_id}"
                passthrough = f"{url}/musicbrainz/ws/2/recording/{t.mbid}?fmt=json"
                for u in (typed, passthrough):
                    httpx.get(u, timeout=30)
                    assert httpx.get(u, timeout=30).headers["x-cache"] == "hit"
                figures["typed API hit (redis)"] = load(typed, a.seconds, a.connections)
                figures["pass-through hit (redis)"] = load(passthrough, a.seconds, a.connections)
        figures.update(in_process(redis_url, min(a.seconds, 3.0)))
    import starlette
    import uvicorn

    print(
        f"tunegate serve bench: {loader}, {a.connections} connections, {a.seconds:g} s each; "
        f"Starlette {starlette.__version__} on uvicorn {uvicorn.__version__} "
        f"(uvloop + httptools, 1 worker); Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    floor_rps = figures["floor: constant body (same framework)"]["rps"]
    print(f"{'figure':<44} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs floor':>9}")
    for name, fig in figures.items():
        vs = f"{floor_rps / fig['rps']:.2f}x" if not name.startswith(("library", "bare")) else ""
        print(f"{name:<44} {fig['rps']:>10.0f} {fig['p50_ms']:>8.3f} {fig['p99_ms']:>8.3f} {vs:>9}")
        if fig.get("non_2xx"):
            print(f"  !! {fig['non_2xx']:.0f} answers were not 2xx")
    get = figures.get("bare redis GET + orjson.loads")
    hit = figures.get("typed API hit (redis)")
    if get and hit:
        # The target: a Redis hit within 1.5x of (floor + GET + encode), per request
        # (one worker is one core: the cost of a request is 1 / its throughput).
        import orjson

        t0 = time.perf_counter()
        for _ in range(10_000):
            orjson.dumps(json.loads(body))
        encode = (time.perf_counter() - t0) / 10_000
        budget = 1 / floor_rps + 1 / get["rps"] + encode
        ratio = (1 / hit["rps"]) / budget
        verdict = "met" if ratio <= 1.5 else "missed"
        print(
            f"target: typed Redis hit {1e6 / hit['rps']:.0f} us/request vs floor + GET + encode "
            f"{budget * 1e6:.0f} us = {ratio:.2f}x (target <= 1.5x: {verdict})"
        )
    if a.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
