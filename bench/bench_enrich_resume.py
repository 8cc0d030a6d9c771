"""What resuming a large ``tunegate enrich`` output costs: memory and time of indexing the
output and of the end-of-run rewrite, beside the naive way (parse every record into a dict
keyed by row, rewrite from it), measured in the same run.

Usage: ``.venv/bin/python bench/bench_enrich_resume.py [--rows 200000]``

Peak memory is tracemalloc's peak of Python allocations during the step (not RSS); the
seconds are measured under tracemalloc too, so compare them with each other only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import orjson

from tunegate.enrich import _compact, scan_output


def make_output(path: Path, rows: int) -> None:
    """Records shaped like the real ones, written in a shuffled order (as workers finish)."""
    with path.open("wb") as f:
        for i in (*range(1, rows, 2), *range(0, rows, 2)):
            record = {
                "row": i,
                "input": {"artist": f"Artist {i}", "title": f"Some Title Number {i}"},
                "spotify": {
                    "id": f"{i:022d}",
                    "name": f"Some Title Number {i}",
                    "artists": [f"Artist {i}"],
                    "album": "An Album",
                    "duration_ms": 212000,
                    "isrc": f"USAAA{i % 10**7:07d}",
                },
                "musicbrainz": {"id": "0efd6267-56b5-453f-8eed-a80af22353b2", "title": "x"},
                "lastfm_tags": ["rock", "alternative", "indie"],
                "errors": {},
                "status": "ok",
            }
            f.write(orjson.dumps(record) + b"\n")


def naive_scan(path: Path) -> dict[int, dict[str, object]]:
    latest = {}
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        latest[record["row"]] = record
    return latest


def naive_compact(path: Path) -> None:
    latest = naive_scan(path)
    tmp = path.with_name(path.name + ".naive")
    with tmp.open("wb") as f:
        for i in sorted(latest):
            f.write(orjson.dumps(latest[i]) + b"\n")
    tmp.replace(path)


def measure(step: Callable[[], object]) -> tuple[float, float]:
    """(seconds, peak MB of Python allocations) of one call."""
    tracemalloc.start()
    t0 = time.perf_counter()
    kept = step()  # held until measured, as a resuming run holds its index
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    del kept
    return seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.jsonl", Path(tmp) / "b.jsonl"
        make_output(a, args.rows)
        make_output(b, args.rows)
        size = a.stat().st_size / 1e6
        print(f"{args.rows} records, {size:.0f} MB of JSON Lines")
        print(f"{'step':<44} {'seconds':>8} {'peak MB':>8}")
        for name, step in (
            ("baseline: parse every record into a dict", lambda: naive_scan(b)),
            ("tunegate scan_output (resume index)", lambda: scan_output(a)),
            ("baseline: rewrite in row order from the dict", lambda: naive_compact(b)),
            ("tunegate _compact (streaming rewrite)", lambda: _compact(a)),
        ):
            seconds, peak = measure(step)
            print(f"{name:<44} {seconds:>8.2f} {peak:>8.1f}")
        assert a.read_bytes() == b.read_bytes(), "both rewrites must give the same file"


if __name__ == "__main__":
    main()
