"""One asyncio GET through ``RedisLink`` (a ``RedisCall``, as the cache's hit path sends it)
beside ``redis.asyncio.Redis.get`` on the same private redis-server, in the same run.

Usage: ``.venv/bin/python bench/bench_redis_command.py [--repeats 7] [--seconds 0.3]
[--concurrency 1,16]``

Figures, per GET of a 200-byte value: CPU time of this process (``time.process_time``:
what the command path costs, whatever the server and other processes do) and wall time,
the median of ``--repeats`` loops taken in turns (link, redis-py, link, ...), and the ratio
link / redis-py of each. At concurrency 1 the GETs are sequential awaits in one event loop;
at N, each step is a gather of N GETs (as the service's concurrent requests are). redis-py's
client uses its pool and its own socket timeout (0.5 s, as the link's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio
from _infra import private_redis  # bench/ is on sys.path when a script runs

from tunegate._redis import DOWN, RedisCall, RedisLink

KEY, VALUE = "bench:redis-command", b"v" * 200
Step = Callable[[], Coroutine[Any, Any, object]]


def _loop(runner: asyncio.Runner, fn: Step, n: int) -> tuple[float, float]:
    """CPU and wall microseconds per call over ``n`` sequential awaits of ``fn``."""

    async def go() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(n):
            await fn()
        return time.process_time() - cpu, time.perf_counter() - wall

    cpu, wall = runner.run(go())
    return cpu / n * 1e6, wall / n * 1e6


def _calls(runner: asyncio.Runner, fn: Step, seconds: float) -> int:
    """How many calls make a loop of about ``seconds`` of wall time."""
    n = 16
    while True:
        _, wall = _loop(runner, fn, n)
        if wall * n / 1e6 > seconds / 10 or n >= 1 << 20:
            return max(16, int(n * seconds / (wall * n / 1e6)))
        n *= 4


def _gathered(fn: Step, n: int) -> Step:
    async def step() -> object:
        return await asyncio.gather(*(fn() for _ in range(n)))

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="per loop")
    parser.add_argument("--concurrency", default="1,16", help="GETs in flight at once")
    opts = parser.parse_args()
    levels = [int(n) for n in opts.concurrency.split(",")]
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
            steps = {
                (level, name): (_gathered(fn, level) if level > 1 else fn)
                for level in levels
                for name, fn in sides.items()
            }
            for step in steps.values():  # warm: connections, the loop's entry, imports
                runner.run(step())
            counts = {key: _calls(runner, step, opts.seconds) for key, step in steps.items()}
            samples: dict[tuple[int, str], list[tuple[float, float]]] = {k: [] for k in steps}
            for _ in range(opts.repeats):  # interleaved: each side sees the same machine
                for key, step in steps.items():
                    cpu, wall = _loop(runner, step, counts[key])
                    samples[key].append((cpu / key[0], wall / key[0]))  # per GET
            runner.run(plain.aclose())
            runner.run(link.aclose())
        link.close()
    finally:
        server.close()

    print(f"asyncio GET, {opts.repeats} interleaved repeats, private redis-server {server.version}")
    for level in levels:
        head = f"{'CPU us/GET':>11} {'wall us/GET':>12}  (median; min-max CPU)"
        print(f"\nconcurrency {level:<16} {head}")
        medians = []
        for name in sides:
            got = samples[level, name]
            cpu, wall = statistics.median(c for c, _ in got), statistics.median(w for _, w in got)
            lo, hi = min(c for c, _ in got), max(c for c, _ in got)
            print(f"{name:28} {cpu:11.1f} {wall:12.1f}  ({lo:.1f}-{hi:.1f})")
            medians.append((cpu, wall))
        (link_cpu, link_wall), (py_cpu, py_wall) = medians
        ratio = f"{link_cpu / py_cpu:11.2f} {link_wall / py_wall:12.2f}"
        print(f"{'ratio link / redis-py':28} {ratio}")


if __name__ == "__main__":
    main()
