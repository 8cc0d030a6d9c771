"""What the resilience core costs on the hot path, side by side with its baselines, one run.

Usage: ``.venv/bin/python bench/bench_core.py [--redis redis://127.0.0.1:6379/15] [--repeats 5]``

Each figure is the median of ``--repeats`` timed loops (about 0.2 s each) in microseconds per
operation, with the min-max; repeats are interleaved round-robin over all figures so every
figure samples the whole run's machine state. Baselines are measured in the same run:
a plain dict hit + ``orjson.loads`` (what a naive in-process JSON cache costs), a raw Redis
``GET`` and ``PING`` (the floor of any Redis-backed operation), and a direct call of a no-op.
The Redis figures need a Redis server; the default is db 15 of the machine's one on 6379,
which this script flushes of its own ``bench:`` keys only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import orjson
import redis
from _timing import timed  # bench/ is on sys.path when a script runs

from tunegate import CacheManager, CircuitBreakerRegistry, RateLimiter

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared/fixtures/real/spotify/get_track.json"


def _track() -> dict[str, object]:
    if FIXTURE.is_file():
        return json.loads(FIXTURE.read_text())  # type: ignore[no-any-return]
    artists = [{"name": "deadmau5", "id": "2CIMQHirSU0MQqyYHq0eOx"}]
    return {"name": "Strobe", "id": "x" * 22, "artists": artists, "pad": "y" * 3000}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.2)
    args = ap.parse_args()

    track = _track()
    raw = orjson.dumps(track)
    figures: dict[str, Callable[[], object]] = {}

    # -- cache hits --------------------------------------------------------------------
    plain: dict[str, bytes] = {"k": raw}
    figures["baseline: dict hit + orjson.loads"] = lambda: orjson.loads(plain["k"])
    mem = CacheManager()
    mkey = mem.key("spotify:track", "4uLU6hMCjMI75M1A2tKUQC")
    mem.store(mkey, track, kind="spotify:track")
    figures["tunegate memory lookup hit"] = lambda: mem.lookup(mkey)
    figures["tunegate key() + memory lookup hit"] = lambda: mem.lookup(
        mem.key("spotify:track", "4uLU6hMCjMI75M1A2tKUQC")
    )
    tmp = tempfile.mkdtemp(prefix="tunegate-bench-")
    sq = CacheManager.sqlite(str(Path(tmp) / "cache.db"))
    sq.store(mkey, track, kind="spotify:track")
    figures["tunegate SQLite lookup hit"] = lambda: sq.lookup(mkey)

    try:
        r = redis.Redis.from_url(args.redis)
        r.ping()
    except redis.exceptions.ConnectionError:
        r = None
        print(f"(no Redis at {args.redis}: Redis figures skipped)")
    if r is not None:
        r.set("bench:raw", raw)
        figures["baseline: redis PING"] = r.ping
        figures["baseline: redis GET 3.4 KB + orjson.loads"] = lambda: orjson.loads(
            r.get("bench:raw")  # type: ignore[arg-type]
        )
        rc = CacheManager(args.redis, namespace="bench")
        rkey = rc.key("spotify:track", "4uLU6hMCjMI75M1A2tKUQC")
        rc.store(rkey, track, kind="spotify:track")
        figures["tunegate Redis lookup hit"] = lambda: rc.lookup(rkey)

    # -- breaker and limiter -----------------------------------------------------------
    def noop() -> None:
        return None

    figures["baseline: direct call of a no-op"] = noop
    breaker = CircuitBreakerRegistry().register("spotify")
    figures["tunegate breaker.call(no-op), closed"] = lambda: breaker.call(noop)
    limiter = RateLimiter()
    limiter.configure_provider("bench", rate=1e9, capacity=1_000_000)
    figures["tunegate local limiter acquire (never binds)"] = lambda: limiter.acquire("bench")
    if r is not None:
        shared = RateLimiter(redis=args.redis, key_prefix="bench:rl:")
        shared.configure_provider("bench", rate=1e9, capacity=1_000_000)
        figures["tunegate shared limiter acquire (one EVALSHA)"] = lambda: shared.acquire("bench")
        sb = CircuitBreakerRegistry(redis=args.redis, key_prefix="bench:cb:").register("x")
        figures["tunegate shared breaker.call, closed (allow from cache, outcome to Redis)"] = (
            lambda: sb.call(noop)
        )

    results: dict[str, list[float]] = {name: [] for name in figures}
    for _ in range(args.repeats):
        for name, fn in figures.items():
            for _ in range(200):  # warm up
                fn()
            results[name].append(timed(fn, args.seconds))

    width = max(len(n) for n in results)
    print(f"{'figure':<{width}}  {'median us':>10}  {'min-max us':>17}")
    for name, vals in results.items():
        lo, hi = min(vals), max(vals)
        print(f"{name:<{width}}  {statistics.median(vals):>10.3f}  {lo:>8.3f}-{hi:<8.3f}")
    if r is not None:
        for k in r.scan_iter("bench:*"):
            r.unlink(k)


if __name__ == "__main__":
    main()
