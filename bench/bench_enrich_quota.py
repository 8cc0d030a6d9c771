"""``tunegate enrich`` at the providers' quotas: wall time of N rows against the emulator
with the real quotas (MusicBrainz 1 request/s, Spotify 300 in 30 s, Last.fm 5/s on the
client's side), MusicBrainz ISRC lookups batched, beside the same job with batching off
(one ``/ws/2/isrc`` request a row: the baseline), measured in the same run, cold caches.

Usage: ``.venv/bin/python bench/bench_enrich_quota.py [--rows 60]`` (about 1.5 minutes for
60 rows: the baseline needs about one second a row; ``--rows 300`` is the issue's figure
and takes about 6 minutes).

Printed per run: wall time; the quota bound, max over providers of
(upstream calls - burst) / rate, where the burst is the client bucket's capacity (1
Spotify, 1 MusicBrainz, 1 Last.fm token: the specs' defaults); elapsed / bound;
MusicBrainz requests per row joined by ISRC; the quota refusals the emulator gave (its
``throttled`` counts: Spotify 429s, MusicBrainz 503s, Last.fm error 29). Then the
speed-up, baseline / batched. A figure, not a test.

``--redis-stop`` prints the issue's fleet line instead: two ``tunegate enrich --redis``
processes (``--redis-rows`` rows each, default 60) share one private redis-server, which
is stopped ``--stop-at`` seconds (default 5) into the run (or later, once both processes
are members of every provider's bucket: a process counts only the members of buckets it
used before the outage); per provider, the emulator's quota window, the most requests any
client made in one such window, the rate-limit answers, the rows whose part for that
provider failed, and the requests it received after Redis stopped; then the rows written
and failed in all. Two runs (``--windows`` picks one): the ``real`` windows (Spotify 300
in 30 s, MusicBrainz 1 in 1 s; Last.fm 5 s at 5/s plus the bucket's burst, 30, its real
1500 in 300 s being too loose to show a doubled rate), then ``5 s`` windows for all three
at rate * 5 + burst. With Redis gone each process falls back to its share of the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from _infra import child_env, private_redis  # bench/ is on sys.path when run as a script

from tunegate.cache import CacheManager
from tunegate.clients import AsyncGateway, Settings
from tunegate.emulator import Emulator
from tunegate.emulator.config import RateLimit
from tunegate.enrich import Providers, enrich
from tunegate.providers.spec import SPECS

# The client-side rate and burst per provider: the specs the clients default to.
RATES = {p: (SPECS[p].rate, SPECS[p].capacity) for p in ("spotify", "musicbrainz", "lastfm")}
TIME_LIMIT = 600.0  # seconds a run may take before the bench gives up


def write_input(emu: Emulator, path: Path, rows: int, first: int = 0) -> None:
    """``rows`` catalogue tracks from ``first``, (artist, title) only: Spotify finds the ISRC."""
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["artist", "title"])
        for i in range(first, first + rows):
            t = emu.describe_track(i)
            out.writerow([t["artists"][0], t["title"]])


def limited(stats: dict[str, Any]) -> int:
    """Rate-limit refusals the emulator gave: Spotify's quota 429s, MusicBrainz's 503s and
    Last.fm's error 29, each counted once in ``throttled[provider]["rejected"]``."""
    return sum(int(acts.get("rejected", 0)) for acts in stats.get("throttled", {}).values())


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


REDIS_STOP_AT = 5.0  # seconds into the run
FLEET_WINDOWS = {  # the emulator's quota windows per run
    "real": {
        "spotify": RateLimit(300, 30.0),
        "musicbrainz": RateLimit(1, 1.0),
        "lastfm": RateLimit(5 * 5 + 5, 5.0),
    },
    # 5 s windows at each rate, plus the client bucket's burst (what a token bucket may
    # let through in any window; tests/test_fleet_enrich.py's rule, without its jitter 2)
    "5 s": {p: RateLimit(int(rate * 5) + burst, 5.0) for p, (rate, burst) in RATES.items()},
}


def _failed_rows(path: Path) -> tuple[int, int]:
    recs = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return len(recs), sum(1 for r in recs if r["status"] not in ("ok", "not_found"))


def _provider_failures(path: Path) -> dict[str, int]:
    """Rows whose provider part ended ``error`` or ``pending``, by provider."""
    failed: dict[str, int] = dict.fromkeys(RATES, 0)
    for line in path.read_bytes().splitlines():
        if line.strip():
            for provider, part in orjson.loads(line)["providers"].items():
                if part.get("status") in ("error", "pending"):
                    failed[provider] = failed.get(provider, 0) + 1
    return failed


def redis_stop(rows: int, name: str, stop_at: float) -> None:
    """Two processes on one Redis, Redis stopped ``stop_at`` s in: the emulator's windows
    and rows."""
    windows = FLEET_WINDOWS[name]
    redis = private_redis()
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            Emulator(
                catalog_size=10_000,
                seed=0,
                spotify_rate=windows["spotify"],
                musicbrainz_rate=windows["musicbrainz"],
                lastfm_rate=windows["lastfm"],
            ) as emu,
        ):
            env = {
                k: v
                for k, v in child_env().items()
                if not k.startswith(("SPOTIFY_", "LASTFM_", "TUNEGATE_"))
            }
            env.update(emu.env())
            env["XDG_CACHE_HOME"] = tmp
            procs = []
            started = time.perf_counter()
            for n in range(2):
                inp, out = Path(tmp) / f"in{n}.csv", Path(tmp) / f"out{n}.jsonl"
                write_input(emu, inp, rows, first=n * rows)
                argv = [sys.executable, "-m", "tunegate", "enrich", str(inp), "-o", str(out)]
                argv += ["--redis", redis.url, "--cache", "memory", "--quiet"]
                procs.append(subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.DEVNULL))
            try:
                probe = redis.client()
                members = 0
                while time.perf_counter() - started < 60:
                    # every provider's bucket must know both (a process counts only the
                    # members of a bucket it has used before the outage)
                    members = min(int(probe.zcard(f"tunegate:rl:{{{p}}}:members")) for p in RATES)
                    if members >= 2 and time.perf_counter() - started >= stop_at:
                        break
                    time.sleep(0.05)
                probe.close()
                stopped_at = time.perf_counter() - started
                redis.close()
                at_stop = {p: v["total"] for p, v in emu.stats()["requests"].items()}
                alive = sum(p.poll() is None for p in procs)
                codes = [p.wait(timeout=TIME_LIMIT) for p in procs]
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait(10)
            elapsed = time.perf_counter() - started
            stats = emu.stats()
            written = [_failed_rows(Path(tmp) / f"out{n}.jsonl") for n in range(2)]
            by_provider = [_provider_failures(Path(tmp) / f"out{n}.jsonl") for n in range(2)]
    finally:
        redis.close()
    print(
        f"{name} windows: tunegate enrich, 2 processes x {rows} rows on one Redis "
        f"(members seen: {members}), "
        f"Redis stopped {stopped_at:.1f} s into the run with {alive} of 2 still running; "
        f"both done in {elapsed:.1f} s, exit codes {codes}"
    )
    print(
        f"{'provider':<12} {'quota window':>14} {'most in a window':>16} {'limited':>7}"
        f" {'failed rows':>11} {'after stop':>10}"
    )
    for provider, window in windows.items():
        seen = stats["clients"].get(provider, {})
        most = max((c["max_in_window"] for c in seen.values()), default=0)
        refused = int(stats.get("throttled", {}).get(provider, {}).get("rejected", 0))
        quota = f"{window.requests} in {window.window:g} s"
        failed_here = sum(f.get(provider, 0) for f in by_provider)
        after = stats["requests"].get(provider, {}).get("total", 0) - at_stop.get(provider, 0)
        over = "  OVER" if most > window.requests else ""
        print(
            f"{provider:<12} {quota:>14} {most:>16} {refused:>7} {failed_here:>11}"
            f" {after:>10}{over}"
        )
    total = sum(n for n, _ in written)
    failed = sum(f for _, f in written)
    print(f"rows written {total} of {2 * rows}, failed rows {failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument(
        "--redis-stop", action="store_true", help="the 2-process run, Redis stopped --stop-at s in"
    )
    parser.add_argument("--redis-rows", type=int, default=60, help="rows per process")
    parser.add_argument(
        "--stop-at",
        type=float,
        default=REDIS_STOP_AT,
        metavar="S",
        help=f"seconds into the run when Redis stops (default {REDIS_STOP_AT:g})",
    )
    parser.add_argument(
        "--windows",
        choices=[*FLEET_WINDOWS, "all"],
        default="all",
        help="which quota windows to run with --redis-stop (default: all)",
    )
    args = parser.parse_args()
    if args.rows < 1 or args.redis_rows < 1:
        parser.error("--rows and --redis-rows must be at least 1")
    if not args.stop_at >= 0:
        parser.error("--stop-at must be 0 or more seconds")
    if args.redis_stop:
        names = list(FLEET_WINDOWS) if args.windows == "all" else [args.windows]
        for name in names:
            redis_stop(args.redis_rows, name, args.stop_at)
    else:
        run(args.rows)


if __name__ == "__main__":
    main()
