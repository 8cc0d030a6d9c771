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


def _app(mode: str, redis_url: str | None) -> Any:
    """``floor``: a constant body; ``service``: the tunegate app on the emulator."""
    if mode == "floor":
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        body = Path(os.environ["BENCH_FLOOR_BODY"]).read_bytes()

        async def constant(request: Any) -> Response:
            return Response(body, media_type="application/json")

        return Starlette(routes=[Route("/floor", constant)])
    import inspect
    from dataclasses import replace

    from tunegate.clients import AsyncGateway, Settings
    from tunegate.emulator import Emulator
    from tunegate.service import create_app

    emu = Emulator(catalog_size=2_000, rate_limits=False).start()
    settings = Settings.from_env(emu.env())
    if redis_url:
        settings = replace(settings, redis_url=redis_url)
    known = inspect.signature(create_app).parameters  # a baseline tree may predate it
    extra = {"freeze_gc": True} if "freeze_gc" in known else {}
    return create_app(AsyncGateway(settings), owns_gateway=True, **extra)


def granian_app() -> Any:
    """The factory Granian's worker calls (``--factory bench_serve:granian_app``)."""
    return _app(os.environ["BENCH_MODE"], os.environ.get("BENCH_REDIS_URL") or None)


def _child(mode: str, port: int, redis_url: str | None, server: str) -> None:
    if server == "granian":  # one worker, one thread, uvloop: uvicorn's setup, Granian's I/O
        env = {**os.environ, "BENCH_MODE": mode, "BENCH_REDIS_URL": redis_url or ""}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bench"), env.get("PYTHONPATH", "")])
        args = ["--interface", "asgi", "--loop", "uvloop", "--workers", "1"]
        args += ["--runtime-mode", "st", "--http", "1", "--no-ws", "--no-access-log"]
        args += ["--log-level", "warning", "--host", "127.0.0.1", "--port", str(port)]
        args += ["--factory", "bench_serve:granian_app"]
        os.execve(sys.executable, [sys.executable, "-m", "granian", *args], env)
    import uvicorn

    uvicorn.run(
        _app(mode, redis_url),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


_PIDS: dict[str, int] = {}  # server URL -> its process, for the CPU it spends per request


@contextmanager
def _server(
    mode: str,
    redis_url: str | None = None,
    env: dict[str, str] | None = None,
    src: Path | None = None,
    server: str = "uvicorn",
    extra_path: str = "",
) -> Iterator[str]:
    """A child server; ``src``: the source tree it imports tunegate from (default ours);
    ``server``: uvicorn or granian (``extra_path``: where Granian is, if not installed)."""
    import httpx

    port = free_port()
    args = [sys.executable, __file__, "--child", mode, "--port", str(port), "--server", server]
    if redis_url:
        args += ["--redis-url", redis_url]
    path = os.pathsep.join(p for p in (str(src or ROOT / "src"), extra_path) if p)
    child_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    proc = subprocess.Popen(args, env=child_env)
    url = f"http://127.0.0.1:{port}"
    _PIDS[url] = proc.pid
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its child processes (Granian's worker) so far
    (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        kids = [
            int(k)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for k in (task / "children").read_text().split()
        ]
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_seconds(k) for k in kids)


def measured(load: Any, url: str, seconds: float, connections: int) -> dict[str, float]:
    """``load``'s figures plus ``cpu_us``: the server process's CPU time per request (its
    own cost, which other work on a shared machine moves far less than req/s)."""
    pid = next((p for u, p in _PIDS.items() if url.startswith(u)), None)
    before = _cpu_seconds(pid) if pid else 0.0
    fig = load(url, seconds, connections)
    if pid and fig.get("requests"):
        fig["cpu_us"] = (_cpu_seconds(pid) - before) / fig["requests"] * 1e6
    return fig


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
    total = re.search(r"(\d+) requests in", out)
    return {
        "requests": int(total.group(1)) if total else 0,
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
            "requests": len(latencies),
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
        cpu0 = time.process_time()
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await fn()
            lat.append(time.perf_counter() - t0)
        cpu = time.process_time() - cpu0
        lat.sort()
        return {
            "cpu_us": cpu / len(lat) * 1e6,
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
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every figure (medians)")
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument(
        "--granian",
        metavar="PATH",
        nargs="?",
        const="",
        help="also measure floor and hits under Granian (PATH: where it is installed, e.g."
        " pip install --target PATH granian; omit when it is in the environment)",
    )
    parser.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="also measure the service from this source tree (e.g. an older commit's src/),"
        " interleaved with ours in every round",
    )
    parser.add_argument(
        "--down", type=float, help="seconds Redis stays stopped (default: a third of --outage)"
    )
    a = parser.parse_args()
    if a.child:
        _child(a.child, a.port, a.redis_url, a.server)
        return
    sys.path.insert(0, str(ROOT / "src"))
    if a.outage:
        down = a.down if a.down is not None else a.outage / 3
        outage(a.outage, (a.outage - down) / 2, down, a.rate)
        return

    from tunegate.emulator.catalog import Catalog

    load = wrk if shutil.which("wrk") else aiohttp_load
    loader = "wrk" if load is wrk else "aiohttp loop"
    cat = Catalog(2_000, 0)
    t = next(cat.track(i) for i in range(200) if cat.track(i).spotify_id and cat.track(i).mbid)
    trees: list[tuple[str, Path | None]] = [("", None)]
    if a.baseline_src:
        trees.append((" [baseline]", Path(a.baseline_src).resolve()))
    if a.granian is not None:
        trees.append((" [granian]", None))
    runs: list[dict[str, dict[str, float]]] = []
    body = b""
    with _private_redis() as redis_server:
        redis_url = None if redis_server is None else redis_server.url
        for _round in range(a.rounds):
            figures: dict[str, dict[str, float]] = {}
            for label, src in trees:  # interleaved: each round measures every tree
                got, body = _service_figures(t, label, src, None, load, a, body)
                figures.update(got)
                if redis_url:
                    redis_server.flush()  # type: ignore[union-attr]
                    got, _ = _service_figures(t, label, src, redis_url, load, a, body)
                    figures.update(got)
            runs.append(figures)
        ours = in_process(redis_url, min(a.seconds, 3.0))
    figures = _median(runs)
    figures.update(ours)
    import starlette
    import uvicorn

    print(
        f"tunegate serve bench: {loader}, {a.connections} connections, {a.seconds:g} s each, "
        f"{a.rounds} round(s) (medians); Starlette {starlette.__version__} on uvicorn "
        f"{uvicorn.__version__} (uvloop + httptools, 1 worker); Python "
        f"{platform.python_version()}; load average {os.getloadavg()[0]:.2f}"
    )
    floor = figures[FLOOR]
    print(
        f"{'figure':<46} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs floor':>9} "
        f"{'CPU us/req':>10}"
    )
    for name, fig in figures.items():
        in_proc = name.startswith(("library", "bare"))
        own = figures.get(FLOOR + " [granian]", floor) if name.endswith("[granian]") else floor
        vs = "" if in_proc else f"{own['rps'] / fig['rps']:.2f}x"
        cpu = f"{fig['cpu_us']:.0f}" if fig.get("cpu_us") else ""
        print(
            f"{name:<46} {fig['rps']:>9.0f} {fig['p50_ms']:>8.3f} {fig['p99_ms']:>8.3f} "
            f"{vs:>9} {cpu:>10}"
        )
        if fig.get("non_2xx"):
            print(f"  !! {fig['non_2xx']:.0f} answers were not 2xx")
    get = figures.get("bare redis GET + orjson.loads")
    if get:
        # The target: a Redis hit within 1.5x of (floor + GET + encode), per request
        # (one worker is one core: the cost of a request is 1 / its throughput). Beside it
        # the same ratio in CPU time (the server's per request; the in-process GET's).
        import orjson

        t0 = time.perf_counter()
        for _ in range(10_000):
            orjson.dumps(json.loads(body))
        encode = (time.perf_counter() - t0) / 10_000
        for label, _src in trees:
            hit = figures.get(f"typed API hit (redis){label}")
            if not hit:
                continue
            floor = figures.get(FLOOR + label, figures[FLOOR])
            budget = 1 / floor["rps"] + 1 / get["rps"] + encode
            ratio = (1 / hit["rps"]) / budget
            verdict = "met" if ratio <= 1.5 else "missed"
            line = (
                f"target{label}: typed Redis hit {1e6 / hit['rps']:.0f} us/request vs floor + "
                f"GET + encode {budget * 1e6:.0f} us = {ratio:.2f}x (target <= 1.5x: {verdict})"
            )
            if hit.get("cpu_us") and floor.get("cpu_us") and get.get("cpu_us"):
                cpu_budget = floor["cpu_us"] + get["cpu_us"] + encode * 1e6
                line += (
                    f"; CPU {hit['cpu_us']:.0f} us vs {cpu_budget:.0f} us = "
                    f"{hit['cpu_us'] / cpu_budget:.2f}x"
                )
            print(line)
    if a.json:
        print(json.dumps(figures, indent=2))


FLOOR = "floor: constant body (same framework)"


def _service_figures(
    t: Any,
    label: str,
    src: Path | None,
    redis_url: str | None,
    load: Any,
    a: argparse.Namespace,
    body: bytes,
) -> tuple[dict[str, dict[str, float]], bytes]:
    """Warm hits of one service process (memory cache, or Redis), and the floor with the
    first (ours, memory): the same bytes the typed hit answers."""
    import httpx

    figures: dict[str, dict[str, float]] = {}
    where = "redis" if redis_url else "memory"
    server = "granian" if label == " [granian]" else "uvicorn"
    extra = a.granian or "" if server == "granian" else ""
    with _server("service", redis_url, src=src, server=server, extra_path=extra) as url:
        typed = f"{url}/v1/spotify/tracks/{t.spotify_id}"
        passthrough = f"{url}/musicbrainz/ws/2/recording/{t.mbid}?fmt=json"
        for u in (typed, passthrough):
            got = httpx.get(u, timeout=30)  # the miss; then every call is a hit
            if u == typed:
                body = got.content
            assert httpx.get(u, timeout=30).headers["x-cache"] == "hit"
        if label in ("", " [granian]") and not redis_url:  # each server's own floor
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                f.write(body)
            env = {"BENCH_FLOOR_BODY": f.name}
            try:
                with _server("floor", env=env, server=server, extra_path=extra) as floor:
                    figures[FLOOR + label] = measured(
                        load, f"{floor}/floor", a.seconds, a.connections
                    )
            finally:
                os.unlink(f.name)
        figures[f"typed API hit ({where}){label}"] = measured(load, typed, a.seconds, a.connections)
        figures[f"pass-through hit ({where}){label}"] = measured(
            load, passthrough, a.seconds, a.connections
        )
    return figures, body


def _median(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per figure and measure, the median over the rounds (req/s, p50, p99, CPU)."""
    import statistics

    out: dict[str, dict[str, float]] = {}
    for name in runs[0]:
        keys = runs[0][name].keys()
        out[name] = {k: statistics.median(r[name][k] for r in runs if k in r[name]) for k in keys}
    return out


if __name__ == "__main__":
    main()
