"""``bench/run``: tunegate beside what users would pick instead, in one interleaved run.

Usage: ``bench/run [--quick]`` (or ``.venv/bin/python bench/run_all.py [--quick]``).

Every figure is a function returning one timed sample; the runner calls repeat 1 of every
figure, then repeat 2, ... (round-robin), so each figure samples the whole run's machine
state. Ratios against an anchor measured in the same run are what count: this machine's
absolute figures drift by up to +-50% between runs. Writes ``bench/results/latest.json``,
``bench/results/latest.png`` and the marked table block of ``bench/README.md``.

Only the public API is used (``SpotifyClient``, ``CacheManager``, ``Emulator``).
"""

from __future__ import annotations

import argparse
import json
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

import httpx
import orjson
from _timing import timed  # bench/ is on sys.path when a script runs

from tunegate import CacheManager, SpotifyClient
from tunegate.emulator import Emulator
from tunegate.emulator.config import DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BEGIN, END = "<!-- bench:table:begin -->", "<!-- bench:table:end -->"


@dataclass
class Figure:
    """One row: ``sample`` gives one value of the figure, ``anchor`` one of its anchor."""

    name: str
    unit: str
    sample: Callable[[], float]
    anchor_name: str
    anchor: Callable[[], float] | None
    target: str  # human form, e.g. "<= 0.5x"
    check: Callable[[float], bool] | None  # on the ratio (or the value when no anchor)
    once: bool = False  # heavy (a subprocess filling memory): one sample per run
    values: list[float] = field(default_factory=list)
    anchors: list[float] = field(default_factory=list)
    note: str = ""


def _summary(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.seconds = 0.15 if quick else 0.4
        self.emu = Emulator(rate_limits=False)
        self.emu.__enter__()
        self.token = self.emu.issue_spotify_token()
        track = self.emu.describe_track(3)
        self.artist, self.title = track["artists"][0], track["title"]
        self.search_url = f"{self.emu.urls.root}/v1/search"
        self.params = {"q": f"artist:{self.artist} track:{self.title}", "type": "track"}
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.http = httpx.Client()
        self.body = self.http.get(self.search_url, params=self.params, headers=self.headers)
        self.body.raise_for_status()
        self.payload = self.body.content

    def close(self) -> None:
        self.http.close()
        self.emu.__exit__(None, None, None)

    # -- 1. warm memory hit ----------------------------------------------------------------
    def memory_hit(self) -> float:
        with SpotifyClient(
            DEFAULT_SPOTIFY_CLIENT_ID,
            DEFAULT_SPOTIFY_CLIENT_SECRET,
            base_url=self.emu.urls.root,
            cache_manager=CacheManager.memory(),
        ) as client:
            assert client.search_track(self.artist, self.title) is not None
            return timed(lambda: client.search_track(self.artist, self.title), self.seconds)

    def dict_orjson(self) -> float:
        d = {f"k{i}": self.payload for i in range(1000)}
        d["key"] = self.payload
        loads = orjson.loads
        return timed(lambda: loads(d["key"]), self.seconds)

    def requests_cache_hit(self) -> float:
        import requests_cache

        with requests_cache.CachedSession(backend="memory") as session:
            session.get(self.search_url, params=self.params, headers=self.headers)
            return timed(
                lambda: session.get(self.search_url, params=self.params, headers=self.headers),
                self.seconds,
            )

    # -- 9. emulator throughput ------------------------------------------------------------
    def emulator_rps(self) -> float:
        url, params, headers, get = self.search_url, self.params, self.headers, self.http.get
        us = timed(lambda: get(url, params=params, headers=headers), self.seconds)
        return 1e6 / us

    def bare_httpx_us(self) -> float:
        return 1e6 / self.emulator_rps()

    # -- 7. memory (one subprocess per sample, so RSS is this figure's alone) --------------
    def memory_ratio(self) -> float:
        return self._memory_probe("ratio")

    def memory_bound(self) -> float:
        return self._memory_probe("bound")

    def _memory_probe(self, figure: str) -> float:
        n = 10_000 if self.quick else 200_000
        out = subprocess.run(
            [sys.executable, str(HERE / "_memory_probe.py"), figure, str(n)],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        return float(json.loads(out.stdout)["ratio"])


def figures(b: Bench) -> list[Figure]:
    n = "10,000 (--quick)" if b.quick else "200,000"
    return [
        Figure(
            "1. memory hit, SpotifyClient.search_track",
            "us",
            b.memory_hit,
            "dict lookup + orjson.loads of the same body",
            b.dict_orjson,
            "<= 0.5x",
            lambda r: r <= 0.5,
        ),
        Figure(
            "1b. requests-cache memory hit (same response)",
            "us",
            b.requests_cache_hit,
            "tunegate memory hit (target: tunegate >= 30x faster)",
            b.memory_hit,
            ">= 30x",
            lambda r: r >= 30,
        ),
        Figure(
            f"7a. resident bytes, {n} search responses",
            "x",
            b.memory_ratio,
            "dict of the same body bytes (ratio measured in the probe)",
            None,
            "<= 1.5x",
            lambda v: v <= 1.5,
            once=True,
        ),
        Figure(
            "7b. RSS growth / max_bytes (64 MiB cap, overfilled)",
            "x",
            b.memory_bound,
            "max_bytes",
            None,
            "<= 1.5x",
            lambda v: v <= 1.5,
            once=True,
        ),
        Figure(
            "9. emulator throughput, httpx.Client search",
            "req/s",
            b.emulator_rps,
            "",
            None,
            "info",
            None,
            note="client and emulator share one process and the GIL: a floor",
        ),
    ]


NOT_MEASURED = [
    ("2. warm Redis hit", "not built in this run (time); see plan in bench/README.md"),
    ("3. miss path vs bare aiohttp/httpx", "not built in this run (time)"),
    ("4. concurrency 200 misses / 64 identical", "not built in this run (time)"),
    ("5. granted-path overhead", "not built in this run (time)"),
    ("6. shared limiter, 4 processes", "not built in this run (time)"),
    ("8. enrich vs spotipy+musicbrainzngs+pylast", "not built in this run (time)"),
]


def run(quick: bool) -> dict[str, Any]:
    repeats = 3 if quick else 5
    load_start = os.getloadavg()
    b = Bench(quick)
    figs = figures(b)
    try:
        for rep in range(repeats):
            for f in figs:
                if f.once and rep:
                    continue
                f.values.append(f.sample())
                if f.anchor is not None:
                    f.anchors.append(f.anchor())
    finally:
        b.close()
    rows = []
    for f in figs:
        v = _summary(f.values)
        a = _summary(f.anchors)
        assert v is not None
        ratio = v["median"] / a["median"] if a is not None else v["median"]
        met = None if f.check is None else bool(f.check(ratio))
        rows.append(
            {
                "figure": f.name,
                "unit": f.unit,
                "value": v,
                "anchor_name": f.anchor_name,
                "anchor": a,
                "ratio": ratio,
                "target": f.target,
                "met": met,
                "note": f.note,
            }
        )
    for name, why in NOT_MEASURED:
        rows.append({"figure": name, "met": None, "target": "see issue 12", "note": why})
    versions = {}
    for pkg in ("tunegate", "orjson", "httpx", "requests-cache", "requests", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "absent"
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
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
        met = {True: "met", False: "MISSED", None: "-"}[r["met"]]
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
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.5))
    names = [r["figure"] for r in rows]
    ratios = [r["ratio"] for r in rows]
    colours = ["tab:green" if r["met"] else "tab:red" for r in rows]
    ax.barh(names, ratios, color=colours)
    ax.set_xscale("log")
    ax.set_xlabel("ratio to anchor (log); green = target met, red = missed")
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
            f"Last run: {result['when']}{' (--quick)' if result['quick'] else ''}; "
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
    args = parser.parse_args()
    result = run(args.quick)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    chart(result, RESULTS / "latest.png")
    update_readme(result, HERE / "README.md")
    print(table(result))


if __name__ == "__main__":
    main()
