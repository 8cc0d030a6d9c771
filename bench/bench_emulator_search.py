"""The emulator's start-up (search index build) and its slowest searches, beside a plain
track lookup measured in the same run and on the same server.

Usage: ``.venv/bin/python bench/bench_emulator_search.py [--sizes 10000 1000000] [--repeats 5]``

Start-up is the wall time of ``Emulator(...).start()`` and the growth of the process's peak
resident memory during it (run one size per process for a clean memory figure); each search
figure is the median client-side latency over
``--repeats`` requests (HTTP included, one client, keep-alive). Quotas are off.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import httpx

from tunegate.emulator import Emulator
from tunegate.emulator.config import DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET

SEARCHES = {
    "spotify search q=the": ("/v1/search", {"q": "the", "type": "track"}),
    "spotify search q=genre:rock": ("/v1/search", {"q": "genre:rock", "type": "track"}),
    "spotify search q=year:2000": ("/v1/search", {"q": "year:2000", "type": "track"}),
    "musicbrainz date:[1990 TO 1999]": (
        "/ws/2/recording",
        {"query": "date:[1990 TO 1999]", "fmt": "json"},
    ),
    "musicbrainz dur:[1 TO *]": ("/ws/2/recording", {"query": "dur:[1 TO *]", "fmt": "json"}),
}


def median_ms(client: httpx.Client, path: str, params: dict[str, str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1e3)
        r.raise_for_status()
    return statistics.median(times)


def bench(size: int, repeats: int) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    emu = Emulator(catalog_size=size, rate_limits=False).start()
    started = time.perf_counter() - t0
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024  # KiB
    try:
        token = httpx.post(
            emu.urls.spotify_token,
            data={"grant_type": "client_credentials"},
            auth=(DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET),
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "bench/1.0 ( bench )"}
        with httpx.Client(base_url=emu.urls.root, headers=headers, timeout=120) as client:
            track = emu.describe_track(0)
            base = median_ms(client, f"/v1/tracks/{track['spotify_id']}", {}, repeats)
            print(f"\n{size:,} tracks: start-up {started:.2f} s, peak RSS +{grown:.0f} MiB")
            print(f"  {'baseline: GET /v1/tracks/{id}':<40} {base:8.2f} ms")
            for name, (path, params) in SEARCHES.items():
                ms = median_ms(client, path, params, repeats)
                print(f"  {name:<40} {ms:8.2f} ms  ({ms / base:.0f}x the lookup)")
    finally:
        emu.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    for size in args.sizes:
        bench(size, args.repeats)


if __name__ == "__main__":
    main()
