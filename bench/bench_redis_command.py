"""One asyncio GET through ``RedisLink`` (a ``RedisCall``, as the cache's hit path sends it)
beside ``redis.asyncio.Redis.get`` on the same private redis-server, in the same run.

Usage: ``.venv/bin/python bench/bench_redis_command.py [--repeats 7] [--seconds 0.3]``

Figures, per GET of a 200-byte value: CPU time of this process (``time.process_time``:
what the command path costs, whatever the server and other processes do) and wall time,
the median of ``--repeats`` loops taken in turns (link, redis-py, link, ...), and the ratio
link / redis-py of each. Both sides are sequential awaits in one event loop; redis-py's
client uses its pool and its own socket timeout (0.5 s, as the link's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio
from _infra import private_redis  # bench/ is on sys.path when a script runs

from tunegate._redis import DOWN, RedisCall, RedisLink

KEY, VALUE = "bench:redis-command", b"v" * 200


def _loop(
    runner: asyncio.Runner, fn: Callable[[], Awaitable[object]], n: int
) -> tuple[float, float]:
    """CPU and wall microseconds per call over ``n`` sequential awaits of ``fn``."""

    async def go() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            await fn()
        return time.process_time() - cpu, time.perf_counter() - wall

    cpu, wall = runner.run(go())
    return cpu / n * 1e6, wall / n * 1e6


def _calls(runner: asyncio.Runner, fn: Callable[[], Awaitable[object]], seconds: float) -> int:
    """How many calls make a loop of about ``seconds`` of wall time."""
    n = 16
    while True:
        _, wall = _loop(runner, fn, n)
        if wall * n / 1e6 > seconds / 10 or n >= 1 << 20:
            return max(16, int(n * seconds / (wall * n / 1e6)))
        n *= 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="per loop")
    opts = parser.parse_args()
    server = private_redis()
    try:
        server.client().set(KEY, VALUE)
        link = RedisLink(server.url)
        get = RedisCall(link, "bench", command=("GET", KEY), down=DOWN)
        with asyncio.Runner() as runner:
            plain = redis.asyncio.Redis.from_url(server.url, socket_timeout=0.5)

            async def ours() -> object:
                return await get.arun()

            async def theirs() -> object:
                return await plain.get(KEY)

            sides = {"RedisLink (RedisCall GET)": ours, "redis.asyncio.Redis.get": theirs}
            for fn in sides.values():  # warm: connections, the loop's entry, imports
                assert runner.run(fn()) == VALUE
            counts = {name: _calls(runner, fn, opts.seconds) for name, fn in sides.items()}
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            for _ in range(opts.repeats):  # interleaved: each side sees the same machine
                for name, fn in sides.items():
                    samples[name].append(_loop(runner, fn, counts[name]))
            runner.run(plain.aclose())
            runner.run(link.aclose())
        link.close()
    finally:
        server.close()

    medians = {
        name: (statistics.median(c for c, _ in s), statistics.median(w for _, w in s))
        for name, s in samples.items()
    }
    print(f"asyncio GET, {opts.repeats} interleaved repeats, private redis-server {server.version}")
    print(f"{'':28} {'CPU us/GET':>11} {'wall us/GET':>12}  (median; min-max CPU)")
    for name, (cpu, wall) in medians.items():
        lo, hi = min(c for c, _ in samples[name]), max(c for c, _ in samples[name])
        print(f"{name:28} {cpu:11.1f} {wall:12.1f}  ({lo:.1f}-{hi:.1f})")
    (link_cpu, link_wall), (py_cpu, py_wall) = medians.values()
    print(f"{'ratio link / redis-py':28} {link_cpu / py_cpu:11.2f} {link_wall / py_wall:12.2f}")


if __name__ == "__main__":
    main()
