"""``tunegate enrich`` at the providers' quotas: wall time of N rows against the emulator
with the real quotas (MusicBrainz 1 request/s, Spotify 300 in 30 s, Last.fm 5/s on the
client's side), MusicBrainz ISRC lookups batched, beside the same job with batching off
(one ``/ws/2/isrc`` request a row: the baseline), measured in the same run, cold caches.

Usage: ``.venv/bin/python bench/bench_enrich_quota.py [--rows 60]`` (about 1.5 minutes for
60 rows: the baseline needs about one second a row; ``--rows 300`` is the issue's figure
and takes about 6 minutes).

Printed per run: wall time; the quota bound, max over providers of
(upstream calls - burst) / rate, where the burst is the client bucket's capacity (10
Spotify, 1 MusicBrainz, 5 Last.fm tokens are there at the start); elapsed / bound;
MusicBrainz requests per row joined by ISRC; the rate-limit answers (429, 503, Last.fm
error 29) the emulator gave. Then the speed-up, baseline / batched. A figure, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tunegate.cache import CacheManager
from tunegate.clients import AsyncGateway, Settings
from tunegate.emulator import Emulator
from tunegate.enrich import Providers, enrich

# The client-side rate and burst per provider (PROVIDER_DEFAULTS; MusicBrainz from the
# emulator's env at its 1/s quota).
RATES = {"spotify": (10.0, 10), "musicbrainz": (1.0, 1), "lastfm": (5.0, 5)}
TIME_LIMIT = 600.0  # seconds a run may take before the bench gives up


def write_input(emu: Emulator, path: Path, rows: int) -> None:
    """The catalogue's first ``rows`` tracks, (artist, title) only: Spotify finds the ISRC."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["artist", "title"])
        for i in range(rows):
            t = emu.describe_track(i)
            out.writerow([t["artists"][0], t["title"]])


def limited(stats: dict[str, Any]) -> int:
    """Rate-limit answers the emulator gave: 429 and 503 statuses and Last.fm error 29
    (counted by the emulator as throttling refusals)."""
    total = 0
    for provider in stats["requests"].values():
        total += sum(n for s, n in provider["by_status"].items() if s in ("429", "503"))
    for provider, acts in stats.get("throttled", {}).items():
        if provider == "lastfm":
            total += int(acts.get("rejected", 0))
    return total


async def one_run(inp: Path, out: Path, settings: Settings, batching: bool) -> Any:
    async with AsyncGateway(settings, cache_manager=CacheManager()) as gateway:
        return await asyncio.wait_for(
            enrich(Providers.of(gateway), inp, out, batching=batching), TIME_LIMIT
        )


def figures(emu: Emulator, out: Path, summary: Any, elapsed: float) -> dict[str, Any]:
    stats = emu.stats()
    calls = {
        p: sum(n["total"] for ep, n in v["endpoints"].items() if ep != "token")
        for p, v in stats["requests"].items()
    }
    bound = max(
        (max(0, calls.get(p, 0) - burst) / rate for p, (rate, burst) in RATES.items()),
        default=0.0,
    )
    recs = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
    by_isrc = sum(1 for r in recs if (r["match"].get("musicbrainz") or {}).get("method") == "isrc")
    titles = sum(
        1
        for r in recs
        if (r["match"].get("musicbrainz") or {}).get("method") in ("search", "fallback")
        or (r["providers"].get("musicbrainz") or {}).get("status") == "not_found"
    )
    mb = stats["requests"].get("musicbrainz", {"endpoints": {}})["endpoints"]
    searches = mb.get("recording.search", {}).get("total", 0)
    singles = mb.get("isrc", {}).get("total", 0)
    isrc_calls = singles + max(0, searches - titles)  # title searches are not ISRC lookups
    return {
        "elapsed": elapsed,
        "bound": bound,
        "calls": calls,
        "rows": summary.total,
        "complete": summary.complete,
        "status": dict(summary.status),
        "mb_per_isrc_row": isrc_calls / by_isrc if by_isrc else float("nan"),
        "limited": limited(stats),
    }


def run(rows: int) -> None:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, batching in (("batched", True), ("per-row", False)):
            with Emulator(catalog_size=10_000, seed=0) as emu:  # real quotas, fresh stats
                inp = Path(tmp) / "in.csv"
                write_input(emu, inp, rows)
                out = Path(tmp) / f"{name}.jsonl"
                settings = Settings.from_env(emu.env())
                started = time.perf_counter()
                summary = asyncio.run(one_run(inp, out, settings, batching))
                elapsed = time.perf_counter() - started
                results[name] = figures(emu, out, summary, elapsed)
    print(f"tunegate enrich, {rows} rows, emulator at the real quotas, cold cache")
    print(
        f"{'run':<9} {'wall s':>7} {'bound s':>8} {'wall/bound':>10} {'MB/ISRC row':>11} "
        f"{'limited':>7}  calls (spotify, musicbrainz, lastfm)  statuses"
    )
    for name, r in results.items():
        calls = ", ".join(str(r["calls"].get(p, 0)) for p in RATES)
        ratio = r["elapsed"] / r["bound"] if r["bound"] else float("nan")
        print(
            f"{name:<9} {r['elapsed']:7.1f} {r['bound']:8.1f} {ratio:10.2f} "
            f"{r['mb_per_isrc_row']:11.3f} {r['limited']:7d}  {calls:<36}  "
            f"{ {k: v for k, v in r['status'].items() if v} }"
            + ("" if r["complete"] else "  INCOMPLETE")
        )
    speedup = results["per-row"]["elapsed"] / results["batched"]["elapsed"]
    print(f"speed-up (per-row wall / batched wall): {speedup:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60)
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    run(args.rows)


if __name__ == "__main__":
    main()
