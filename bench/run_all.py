"""``bench/run``: tunegate beside what users would pick instead, in one interleaved run.

Usage: ``bench/run [--quick]`` (or ``python bench/run_all.py [--quick]``).

Every figure is a function returning one sample; the runner calls repeat 1 of every
figure, then repeat 2, ... (round-robin), so each figure samples the whole run's machine
state. Ratios against an anchor measured in the same run are what count: this machine's
absolute figures drift by up to +-50% between runs. Heavy figures (subprocesses, memory
fills, the enrich runs) take one sample per run. Writes ``bench/results/latest.json``,
``bench/results/latest.png`` and the marked table block of ``bench/README.md``.

It starts its own redis-server on a free port and the emulator in its own process (limits
lifted; figure 8 starts one with its quotas on). Only the public API is used: the clients,
``CacheManager``, ``RateLimiter``, ``CircuitBreaker``, ``Retrying`` and the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import _fig_enrich
import _fig_miss
import _fig_policy
import _fig_redis
import orjson
from _ctx import Ctx
from _timing import timed  # bench/ is on sys.path when a script runs

from tunegate import CacheManager

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BEGIN, END = "<!-- bench:table:begin -->", "<!-- bench:table:end -->"
PLAN = "#missed-targets-where-the-time-goes-and-the-plan"  # the README section each miss has


@dataclass
class Figure:
    """One row: ``sample`` gives one value, ``anchor`` one of its anchor (same repeat).

    The target is checked on the ratio value/anchor, or on the value itself when there is
    no anchor: ``op`` is "<=" or ">=" against ``limit``; None is an information row."""

    name: str
    unit: str
    sample: Callable[[], float]
    anchor_name: str = ""
    anchor: Callable[[], float] | None = None
    op: str | None = None
    limit: float = 0.0
    once: bool = False  # heavy: one sample per run
    note: str = ""
    values: list[float] = field(default_factory=list)
    anchors: list[float] = field(default_factory=list)
    spent: float = 0.0  # seconds this row took, setup and anchor included

    @property
    def target(self) -> str:
        if self.op is None:
            return "info"
        return f"{self.op} {self.limit:g}{'x' if self.anchor is not None else ''}"

    def met(self, ratio: float) -> bool | None:
        if self.op is None:
            return None
        return ratio <= self.limit if self.op == "<=" else ratio >= self.limit


def _summary(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


class Bench:
    """Figures 1, 7 and 9 here; the others in ``_fig_*.py``. ``shared(name, fn)`` runs
    ``fn`` once per repeat (``once_per_run`` once per run) for rows that reuse a sample."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.ctx = Ctx.start(quick)
        self.seconds = self.ctx.seconds
        self.artist, self.title = self.ctx.queries[3]
        self.params = self.ctx.params(self.artist, self.title)
        self.http = __import__("httpx").Client()
        body = self.http.get(self.ctx.search_url, params=self.params, headers=self.ctx.headers)
        body.raise_for_status()
        self.payload = body.content
        self.per_repeat: dict[str, Any] = {}
        self.per_run: dict[str, Any] = {}

    def close(self) -> None:
        self.http.close()
        self.ctx.close()

    def shared(self, name: str, fn: Callable[[], Any]) -> Any:
        if name not in self.per_repeat:
            self.per_repeat[name] = fn()
        return self.per_repeat[name]

    def once_per_run(self, name: str, fn: Callable[[], Any]) -> Any:
        if name not in self.per_run:
            self.per_run[name] = fn()
        return self.per_run[name]

    # -- 1. warm memory hit ----------------------------------------------------------------
    def memory_hit(self) -> float:
        def run() -> float:
            with self.ctx.spotify(CacheManager.memory()) as client:
                assert client.search_track(self.artist, self.title) is not None
                return timed(lambda: client.search_track(self.artist, self.title), self.seconds)

        return float(self.shared("memory_hit", run))

    def memory_ahit(self) -> float:
        async def setup() -> Any:
            client = await self.ctx.aspotify(CacheManager.memory())
            assert await client.search_track(self.artist, self.title) is not None
            return client

        from _timing import atimed

        with asyncio.Runner() as runner:
            client = runner.run(setup())
            us = atimed(runner, lambda: client.search_track(self.artist, self.title), self.seconds)
            runner.run(client.aclose())
        return us

    def dict_orjson(self) -> float:
        def run() -> float:
            d = {f"k{i}": self.payload for i in range(1000)}
            d["key"] = self.payload
            loads = orjson.loads
            return timed(lambda: loads(d["key"]), self.seconds)

        return float(self.shared("dict_orjson", run))

    def requests_cache_hit(self) -> float:
        import requests_cache

        url, params, headers = self.ctx.search_url, self.params, self.ctx.headers
        with requests_cache.CachedSession(backend="memory") as session:
            session.get(url, params=params, headers=headers)
            return timed(lambda: session.get(url, params=params, headers=headers), self.seconds)

    # -- 9. emulator throughput ------------------------------------------------------------
    def emulator_rps(self) -> float:
        url, params, headers = self.ctx.search_url, self.params, self.ctx.headers
        get = self.http.get
        return 1e6 / timed(lambda: get(url, params=params, headers=headers), self.seconds)

    # -- 7. memory (one subprocess per sample, so RSS is this figure's alone) --------------
    def memory_probe(self, figure: str) -> float:
        # 7b only needs to overfill its cap (~4x here); 7a is the 200,000.
        n = 5_000 if self.quick else (200_000 if figure == "ratio" else 40_000)
        cap = "16" if self.quick else "64"  # MiB; still overfilled 2x by the quick run
        out = subprocess.run(
            [sys.executable, str(HERE / "_memory_probe.py"), figure, str(n), cap],
            check=True,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        result = json.loads(out.stdout)
        self.per_run[f"memory_{figure}"] = result
        return float(result["ratio"])


def figures(b: Bench) -> list[Figure]:
    c = b.ctx
    n = "5,000 (--quick)" if b.quick else "200,000"
    cap = "16 MiB (--quick)" if b.quick else "64 MiB"
    fill = "5,000" if b.quick else "40,000"
    sh, once = b.shared, b.once_per_run

    def tg_redis_hit() -> float:
        return float(sh("tg_redis_hit", lambda: _fig_redis.tunegate_hit(c)))

    def original_hit() -> float:
        return float(sh("original_hit", lambda: _fig_redis.original_hit(c)))

    def tg_amiss() -> float:
        return float(sh("tg_amiss", lambda: _fig_miss.tunegate_amiss(c)))

    def tg_miss() -> float:
        return float(sh("tg_miss", lambda: _fig_miss.tunegate_miss(c)))

    def aiohttp_miss() -> float:
        return float(sh("aiohttp_miss", lambda: _fig_miss.aiohttp_miss(c)))

    def overhead(stack: Callable[[Ctx], float], floor: Callable[[Ctx], float]) -> float:
        return stack(c) - floor(c)

    def tg_stack() -> float:
        return float(
            sh("tg_stack", lambda: overhead(_fig_policy.tunegate_stack, _fig_policy.floor))
        )

    def tg_astack() -> float:
        return float(
            sh("tg_astack", lambda: overhead(_fig_policy.tunegate_astack, _fig_policy.afloor))
        )

    def tg_piece(piece: str, asynchronous: bool) -> Callable[[], float]:
        if asynchronous:
            return lambda: _fig_policy.tunegate_astack(c, piece) - _fig_policy.afloor(c)
        return lambda: _fig_policy.tunegate_stack(c, piece) - _fig_policy.floor(c)

    def redis_miss(key: str) -> float:
        r = once("redis_miss", lambda: _fig_miss.redis_miss_round_trips(c))
        return float(r[key])

    def throughput(pool_size: int | None, side: int) -> float:
        pair = sh(f"fig4_{pool_size}", lambda: _fig_miss.throughput_pair(c, pool_size))
        return float(pair[side])

    def same(use_cache: bool, key: str) -> float:
        return float(once(f"same{use_cache}", lambda: _fig_miss.identical(c, use_cache))[key])

    def limiter(kind: str, key: str) -> float:
        return float(once(f"limiter_{kind}", lambda: _fig_policy.shared_limiter(c, kind))[key])

    def enrich(key: str) -> float:
        r = once("enrich", lambda: _fig_enrich.run(c))
        if key == "ratio":
            return float(r["elapsed"] / r["bound"]) if r["bound"] > 0 else float("inf")
        if key == "speedup":
            return float(r["plain_elapsed"] / r["elapsed"])
        return float(r[key])

    rows = _fig_enrich.ROWS[b.quick]
    return [
        Figure(
            "1. memory hit, SpotifyClient.search_track",
            "us",
            b.memory_hit,
            "dict lookup + orjson.loads of the same body",
            b.dict_orjson,
            "<=",
            0.5,
        ),
        Figure(
            "1a. memory hit, AsyncSpotifyClient.search_track",
            "us",
            b.memory_ahit,
            "dict lookup + orjson.loads of the same body",
            b.dict_orjson,
            "<=",
            0.5,
        ),
        Figure(
            "1b. requests-cache memory hit (same response)",
            "us",
            b.requests_cache_hit,
            "tunegate memory hit (target: tunegate >= 30x faster)",
            b.memory_hit,
            ">=",
            30,
        ),
        Figure(
            "2. Redis hit, SpotifyClient.search_track",
            "us",
            tg_redis_hit,
            "redis-py GET + orjson.loads of the same value",
            lambda: _fig_redis.get_orjson(c),
            "<=",
            1.3,
        ),
        Figure(
            "2a. Redis hit, AsyncSpotifyClient.search_track",
            "us",
            lambda: _fig_redis.tunegate_ahit(c),
            "redis.asyncio GET + orjson.loads of the same value",
            lambda: _fig_redis.aget_orjson(c),
            "<=",
            1.3,
        ),
        Figure(
            "2b. Redis round trips per warm Redis hit",
            "round trips",
            lambda: float(once("rt_hit", lambda: _fig_redis.round_trips_per_hit(c))),
            op="<=",
            limit=1,
            once=True,
            note="counted by a TCP proxy in front of the private Redis",
        ),
        Figure(
            "2c. requests-cache RedisCache hit (same response)",
            "us",
            lambda: _fig_redis.requests_cache_redis(c),
            "tunegate Redis hit (target: tunegate >= 5x faster)",
            tg_redis_hit,
            ">=",
            5,
        ),
        Figure(
            "2d. hishel RedisStorage hit (same response)",
            "us",
            lambda: _fig_redis.hishel_redis(c),
            "tunegate Redis hit (target: tunegate >= 5x faster)",
            tg_redis_hit,
            ">=",
            5,
        ),
        Figure(
            "2f. Redis hit, SpotifyClient.search_track, beside the design's original",
            "us",
            tg_redis_hit,
            "original CacheManager hit: GET + json.loads + its 2 stats counters, same value",
            original_hit,
            "<=",
            1.0,
        ),
        Figure(
            "2g. Redis hit on a stored string not decoded in this process before",
            "us",
            lambda: _fig_redis.tunegate_hit_first_read(c),
            "original CacheManager hit: GET + json.loads + its 2 stats counters, same value",
            original_hit,
            "<=",
            1.0,
            note=(
                "decoded_entries=0: no key known fresh, every hit a first look (a GET once"
                " FirstLook has seen mostly hits) and a decode (lazily frozen)"
            ),
        ),
        Figure(
            "3. miss, AsyncSpotifyClient.search_track (memory cache)",
            "us",
            tg_amiss,
            "bare aiohttp GET + orjson.loads, same URLs",
            aiohttp_miss,
            "<=",
            1.25,
        ),
        Figure(
            "3a. miss, SpotifyClient.search_track (sync via the loop thread)",
            "us",
            tg_miss,
            "bare aiohttp GET + orjson.loads, same URLs",
            aiohttp_miss,
            "<=",
            1.25,
        ),
        Figure(
            "3b. miss, SpotifyClient.search_track beside httpx.Client",
            "us",
            tg_miss,
            "httpx.Client GET + orjson.loads, same URLs",
            lambda: _fig_miss.httpx_miss(c),
        ),
        Figure(
            "3c. Redis-backed miss: Redis round trips before the answer",
            "round trips",
            lambda: redis_miss("before_answer"),
            op="<=",
            limit=2,
            once=True,
            note="CacheManager(redis): limiter, breaker, single-flight share its Redis",
        ),
        Figure(
            "3d. Redis-backed miss: Redis round trips in all",
            "round trips",
            lambda: redis_miss("in_all"),
            once=True,
        ),
        Figure(
            "4. 200 distinct misses, 16 at a time: throughput",
            "req/s",
            lambda: throughput(None, 0),
            "bare aiohttp, same URLs, 16 at a time, the same connection limits",
            lambda: throughput(None, 1),
            ">=",
            0.8,
        ),
        Figure(
            "4d. the same 200 misses with HttpConfig(pool_size=10), the former default",
            "req/s",
            lambda: throughput(10, 0),
            "bare aiohttp, same URLs, 16 at a time, 10 connections per host",
            lambda: throughput(10, 1),
            note="diagnostic: 6 of the 16 callers wait for a connection on both sides",
        ),
        Figure(
            "4a. 64 identical concurrent misses: upstream calls",
            "calls",
            lambda: same(True, "upstream"),
            op="<=",
            limit=1,
            once=True,
        ),
        Figure(
            "4b. 64 identical concurrent misses: each follower's cost",
            "us",
            lambda: same(True, "follower_us"),
            once=True,
            note="(elapsed of 64 - elapsed of one alone) / 63",
        ),
        Figure(
            "4c. 64 identical concurrent calls, use_cache=False: upstream calls",
            "calls",
            lambda: same(False, "upstream"),
            once=True,
            note="the public API has no single-flight switch; use_cache=False is the nearest",
        ),
        Figure(
            "5. granted path, breaker + limiter + retry, sync (minus a direct call)",
            "us",
            tg_stack,
            op="<=",
            limit=3,
            note="CPU time; Retrying.call(breaker.call, fn), fn: limiter.acquire, then the no-op",
        ),
        Figure(
            "5a. granted path, breaker + limiter + retry, async (minus an await)",
            "us",
            tg_astack,
            op="<=",
            limit=3,
            note="CPU time; Retrying.acall(breaker.acall, fn), fn: limiter.aacquire, the no-op",
        ),
        Figure(
            "5b. pybreaker + pyrate-limiter + tenacity, sync (minus a direct call)",
            "us",
            lambda: overhead(_fig_policy.pyrate_tenacity_stack, _fig_policy.floor),
            "tunegate's stack (5)",
            tg_stack,
        ),
        Figure(
            "5c. pybreaker + limits + stamina, sync (minus a direct call)",
            "us",
            lambda: overhead(_fig_policy.limits_stamina_stack, _fig_policy.floor),
            "tunegate's stack (5)",
            tg_stack,
        ),
        Figure(
            "5d. pybreaker + pyrate-limiter + tenacity, async (minus an await)",
            "us",
            lambda: overhead(_fig_policy.pyrate_tenacity_astack, _fig_policy.afloor),
            "tunegate's stack (5a)",
            tg_astack,
            note="tenacity.AsyncRetrying, pybreaker's calling() block, try_acquire_async",
        ),
        Figure(
            "5e. pybreaker + limits + stamina, async (minus an await)",
            "us",
            lambda: overhead(_fig_policy.limits_stamina_astack, _fig_policy.afloor),
            "tunegate's stack (5a)",
            tg_astack,
            note="stamina on an async def, pybreaker's calling() block, limits.aio",
        ),
        *(
            Figure(
                f"5{letter}. split of 5{'a' if asynchronous else ''}: {what} alone",
                "us",
                tg_piece(piece, asynchronous),
                note="CPU time, minus a direct call or an await",
            )
            for letter, asynchronous, piece, what in (
                ("f", False, "breaker", "breaker.call(no-op)"),
                ("g", False, "limiter", "limiter.acquire + no-op"),
                ("h", False, "retry", "Retrying.call(no-op)"),
                ("i", True, "breaker", "breaker.acall(no-op)"),
                ("j", True, "limiter", "limiter.aacquire + no-op"),
                ("k", True, "retry", "Retrying.acall(no-op)"),
            )
        ),
        Figure(
            "6. shared limiter, 4 processes, 10/s: worst window / (rate x t + capacity)",
            "x",
            lambda: limiter("tunegate", "worst"),
            op="<=",
            limit=1,
            once=True,
            note="every window between two grants, by the time each grant returned",
        ),
        Figure(
            "6a. shared limiter: share of the rate used",
            "x",
            lambda: limiter("tunegate", "usage"),
            op=">=",
            limit=0.95,
            once=True,
        ),
        Figure(
            "6b. shared limiter: most-served / least-served process",
            "x",
            lambda: limiter("tunegate", "fairness"),
            op="<=",
            limit=1.5,
            once=True,
        ),
        Figure(
            "6c. pyrate-limiter RedisBucket, same test: worst window / bound",
            "x",
            lambda: limiter("pyrate", "worst"),
            once=True,
            note="bound for its 1 s sliding log: rate x t + rate",
        ),
        Figure(
            "6d. pyrate-limiter RedisBucket: share of the rate used",
            "x",
            lambda: limiter("pyrate", "usage"),
            once=True,
        ),
        Figure(
            "6e. pyrate-limiter RedisBucket: most-served / least-served process",
            "x",
            lambda: limiter("pyrate", "fairness"),
            once=True,
        ),
        Figure(
            f"7a. resident bytes, {n} search responses",
            "x",
            lambda: b.memory_probe("ratio"),
            op="<=",
            limit=1.5,
            once=True,
            note="over a dict of the same body bytes, right-sized (orjson buffers: see the JSON)",
        ),
        Figure(
            f"7b. RSS growth / max_bytes ({cap} cap, overfilled by {fill} responses)",
            "x",
            lambda: b.memory_probe("bound"),
            op="<=",
            limit=1.5,
            once=True,
        ),
        Figure(
            f"8. tunegate enrich, {rows} rows at real quotas: elapsed / quota bound",
            "x",
            lambda: enrich("ratio"),
            op="<=",
            limit=1.05,
            once=True,
            note="bound: max over providers of (calls - burst) / rate",
        ),
        Figure(
            f"8a. tunegate enrich, {rows} rows: elapsed",
            "s",
            lambda: enrich("elapsed"),
            once=True,
        ),
        Figure(
            f"8b. plain spotipy + musicbrainzngs + pylast script, {rows} rows: elapsed",
            "s",
            lambda: enrich("plain_elapsed"),
            once=True,
        ),
        Figure(
            "8c. speed-up of tunegate enrich over the plain script",
            "x",
            lambda: enrich("speedup"),
            once=True,
        ),
        Figure(
            "9. emulator throughput, httpx.Client search (emulator in its own process)",
            "req/s",
            b.emulator_rps,
        ),
    ]


NOT_MEASURED = [
    (
        "2e. near cache (local copy kept coherent through Redis invalidation)",
        "not offered by tunegate's public API (no client-side caching option)",
    ),
]


def _selected(name: str, only: list[str] | None) -> bool:
    number = name.split(".", 1)[0]
    return only is None or any(number == o or number.rstrip("abcdefghijk") == o for o in only)


def run(quick: bool, only: list[str] | None = None) -> dict[str, Any]:
    repeats = 3 if quick else 5
    started = time.perf_counter()
    load_start = os.getloadavg()
    b = Bench(quick)
    figs = [f for f in figures(b) if _selected(f.name, only)]
    extra: dict[str, Any] = {}
    try:
        for rep in range(repeats):
            b.per_repeat = {}
            for f in figs:
                if f.once and rep:
                    continue
                t0 = time.perf_counter()
                f.values.append(f.sample())
                if f.anchor is not None:
                    f.anchors.append(f.anchor())
                f.spent += time.perf_counter() - t0
        extra = {k: v for k, v in b.per_run.items() if isinstance(v, dict)}
    finally:
        b.close()
    rows = []
    for f in figs:
        v = _summary(f.values)
        a = _summary(f.anchors)
        assert v is not None
        ratio = v["median"] / a["median"] if a is not None else v["median"]
        rows.append(
            {
                "figure": f.name,
                "unit": f.unit,
                "value": v,
                "anchor_name": f.anchor_name,
                "anchor": a,
                "ratio": ratio,
                "target": f.target,
                "met": f.met(ratio),
                "note": f.note,
                "spent_s": round(f.spent, 2),
            }
        )
    for name, why in NOT_MEASURED:
        if _selected(name, only):
            rows.append({"figure": name, "met": None, "target": "see issue 12", "note": why})
    versions = {"redis-server": b.ctx.redis.version}
    for pkg in (
        "tunegate",
        "aiohttp",
        "httpx",
        "redis",
        "hiredis",
        "orjson",
        "requests-cache",
        "requests",
        "hishel",
        "pybreaker",
        "pyrate-limiter",
        "limits",
        "tenacity",
        "stamina",
        "spotipy",
        "musicbrainzngs",
        "pylast",
        "matplotlib",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "absent"
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "elapsed_s": round(time.perf_counter() - started, 1),
        "quick": quick,
        "repeats": repeats,
        "seconds_per_sample": b.seconds,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_start": load_start,
            "load_end": os.getloadavg(),
        },
        "versions": versions,
        "rows": rows,
        "details": extra,
    }


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 1000 else f"{x:.3g}"


def table(result: dict[str, Any]) -> str:
    lines = [
        "| figure | median | min-max | anchor (median) | ratio | target | met |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    for r in result["rows"]:
        if "value" not in r:
            lines.append(f"| {r['figure']} | - | - | - | - | - | not measured: {r['note']} |")
            continue
        v, a = r["value"], r["anchor"]
        anchor = f"{r['anchor_name']} ({_fmt(a['median'])} {r['unit']})" if a else r["anchor_name"]
        met = {True: "met", False: f"MISSED ([profile, plan]({PLAN}))", None: "-"}[r["met"]]
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(
            f"| {r['figure']}{note} | {_fmt(v['median'])} {r['unit']} | "
            f"{_fmt(v['min'])}-{_fmt(v['max'])} | {anchor} | {r['ratio']:.3g} | "
            f"{r['target']} | {met} |"
        )
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "value" in r and r["met"] is not None]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    names = [r["figure"][:70] for r in rows]

    def score(r: dict[str, Any]) -> float:  # <= 1 is met, whichever way the target points
        op, limit = r["target"].split()
        limit_f = float(limit.rstrip("x"))
        ratio = math.inf if r["ratio"] is None else float(r["ratio"])  # JSON has inf as null
        ratio = max(ratio, 1e-9)
        return ratio / limit_f if op == "<=" else max(limit_f / ratio, 1e-3)

    colours = ["tab:green" if r["met"] else "tab:red" for r in rows]
    scores = [score(r) for r in rows]
    finite = [x for x in scores if math.isfinite(x)] or [1.0]
    edge = max(max(finite), 1.0) * 3  # an infinite ratio (e.g. a zero bound) is drawn here
    bars = ax.barh(names, [x if math.isfinite(x) else edge for x in scores], color=colours)
    for bar, x in zip(bars, scores, strict=True):
        if not math.isfinite(x):
            bar.set_hatch("//")
            ax.text(edge, bar.get_y() + bar.get_height() / 2, " inf", va="center")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("figure / target (log; <= 1 is met): green = met, red = missed")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def update_readme(result: dict[str, Any], path: Path) -> None:
    m = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    block = "\n".join(
        [
            BEGIN,
            f"Last run: {result['when']}{' (--quick)' if result['quick'] else ''}, "
            f"{result['elapsed_s']:.0f} s; "
            f"{result['repeats']} repeats per figure, interleaved round-robin, "
            f"~{result['seconds_per_sample']} s per sample.",
            f"Machine: {m['cpus']} CPUs, {m['platform']}, CPython {m['python']}; load average "
            f"{' '.join(f'{x:.2f}' for x in m['load_start'])} at start, "
            f"{' '.join(f'{x:.2f}' for x in m['load_end'])} at end.",
            f"Versions: {versions}.",
            "",
            table(result),
            "",
            "![chart](results/latest.png)",
            END,
        ]
    )
    text = path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    path.write_text(text[:start] + block + text[end:], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under 2 minutes")
    parser.add_argument(
        "--only",
        help="comma-separated figure numbers (e.g. 2,5a); prints the table only, writes nothing",
    )
    args = parser.parse_args()
    only = args.only.split(",") if args.only else None
    result = run(args.quick, only)
    if only is not None:
        print(table(result))
        print(json.dumps(result["details"], indent=1, default=str))
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    chart(result, RESULTS / "latest.png")
    update_readme(result, HERE / "README.md")
    print(table(result))
    slow = sorted(result["rows"], key=lambda r: -r.get("spent_s", 0))[:6]
    spent = ", ".join(f"{r['figure'].split('.')[0]} {r['spent_s']:.0f} s" for r in slow)
    print(f"run took {result['elapsed_s']:.0f} s; slowest rows: {spent}", file=sys.stderr)


if __name__ == "__main__":
    main()
