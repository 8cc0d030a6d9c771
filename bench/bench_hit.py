"""A warm cache hit through the public Spotify clients, beside the floor measured in the
same run: "dict lookup + orjson.loads of the same body".

Usage: ``.venv/bin/python bench/bench_hit.py [--repeats 5] [--seconds 0.2]``

Figures, in microseconds per call (median of ``--repeats`` loops, interleaved):

- floor: ``dict[key]`` then ``orjson.loads`` of the cached answer's JSON body;
- ``SpotifyClient.search_track`` / ``await AsyncSpotifyClient.search_track``, memory hit;
- Redis: ``GET`` + ``json.loads`` with redis-py (the baseline), and a
  ``CacheManager(backend="redis").lookup`` hit, against a private ``redis-server`` when
  one is installed (skipped otherwise, said so).

The clients run against the project's emulator: the first call is a real miss (token and
search), then every timed call is a warm hit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
from collections.abc import Callable

import orjson
from _infra import RedisServer, private_redis  # bench/ is on sys.path when a script runs
from _timing import atimed, timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.2)
    args = ap.parse_args()

    from prometheus_client import CollectorRegistry

    from tunegate import AsyncSpotifyClient, CacheManager, SpotifyClient
    from tunegate.emulator.server import Emulator

    emu = Emulator(catalog_size=2000).start()
    urls = emu.urls
    artist, title = "Deadmau5", "Strobe"
    common = {
        "client_id": "tunegate-test-id",
        "client_secret": "tunegate-test-secret",
        "base_url": urls.spotify,
        "auth_url": urls.spotify_token.removesuffix("/api/token"),
    }
    sync = SpotifyClient(cache_manager=CacheManager(), registry=CollectorRegistry(), **common)
    asy = AsyncSpotifyClient(cache_manager=CacheManager(), registry=CollectorRegistry(), **common)
    runner = asyncio.Runner()
    track = sync.search_track(artist, title)
    runner.run(asy.search_track(artist, title))
    calls_before = sync.get_stats()["api_calls"]

    body = orjson.dumps(track)
    table = {"spotify:search:deadmau5:strobe": body}

    def floor() -> object:
        return orjson.loads(table["spotify:search:deadmau5:strobe"])

    figures: dict[str, Callable[[], float]] = {
        "floor: dict lookup + orjson.loads": lambda: timed(floor, args.seconds),
        "SpotifyClient.search_track, memory hit": lambda: timed(
            lambda: sync.search_track(artist, title), args.seconds
        ),
        "AsyncSpotifyClient.search_track, memory hit": lambda: atimed(
            runner, lambda: asy.search_track(artist, title), args.seconds
        ),
    }

    server: RedisServer | None = None
    exe = shutil.which("redis-server")
    if exe is not None:
        import redis

        server = private_redis()  # the tests' helper: free port, nothing on disk
        url = server.url
        plain = redis.Redis.from_url(url)
        plain.set("bench:plain", json.dumps(track))
        rcache = CacheManager(url)
        rkey = rcache.key("spotify:search", "deadmau5", "strobe")
        rcache.store(rkey, track)
        assert rcache.lookup(rkey) is not None
        figures["redis baseline: GET + json.loads"] = lambda: timed(
            lambda: json.loads(plain.get("bench:plain") or b"null"), args.seconds
        )
        figures["CacheManager(redis).lookup, hit"] = lambda: timed(
            lambda: rcache.lookup(rkey), args.seconds
        )
        before = plain.info("commandstats")
        rcache.lookup(rkey)
        after = plain.info("commandstats")
        calls = sum(v["calls"] for v in after.values()) - sum(v["calls"] for v in before.values())
        print(f"redis commands per cache hit: {calls - 1} (INFO commandstats, minus the INFO)")

    results: dict[str, list[float]] = {name: [] for name in figures}
    try:
        for _ in range(args.repeats):
            for name, measure in figures.items():
                results[name].append(measure())
    finally:
        assert sync.get_stats()["api_calls"] == calls_before, "a timed call missed the cache"
        sync.close()
        runner.run(asy.aclose())
        runner.close()
        emu.stop()
        if server is not None:
            server.close()

    floor_us = statistics.median(results["floor: dict lookup + orjson.loads"])
    width = max(map(len, results))
    print(f"{'':{width}}  median us   min-max        x floor")
    for name, values in results.items():
        med = statistics.median(values)
        print(
            f"{name:{width}}  {med:8.2f}   {min(values):6.2f}-{max(values):<6.2f}"
            f"   {med / floor_us:5.2f}x"
        )
    if exe is None:
        print("redis-server not found: Redis figures skipped")


if __name__ == "__main__":
    main()
