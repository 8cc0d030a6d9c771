"""Where a figure's time goes: run tunegate's side of one figure under cProfile and print the
functions with the most own time and the most cumulative time.

Usage: ``python bench/profile_figure.py FIGURE [--seconds S] [--top N]`` with FIGURE one of
``1 2 2a 3 3a 4 5 5a``. It starts the same private Redis and emulator process as
``bench/run``. (Python-level time only: the other process's share of a round trip shows
up as time in ``select``/``recv``/``run_until_complete``.)

``--bare`` runs the figure without cProfile, for a sampling profiler, whose samples are not
inflated by per-call tracing as cProfile's are:
``py-spy record -r 500 -f raw -o out.txt -- python bench/profile_figure.py 3 --bare``.

``--cpu`` (figures 3 and 3a) times this process's CPU per miss instead, tunegate's and bare
aiohttp's (GET + ``orjson.loads``, same URLs) in turns for ``--rounds`` rounds: the client's
own cost, which the emulator's work and the machine's other load do not inflate as they do
wall time (the sync client's figure includes its loop thread's CPU).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
from collections.abc import Callable

import _fig_miss
import _fig_policy
import _fig_redis
from _ctx import Ctx
from _timing import timed

from tunegate import CacheManager


def _memory_hit(ctx: Ctx) -> float:
    artist, title = ctx.queries[3]
    with ctx.spotify(CacheManager.memory()) as client:
        client.search_track(artist, title)
        return timed(lambda: client.search_track(artist, title), ctx.seconds)


SAMPLES: dict[str, Callable[[Ctx], object]] = {
    "1": _memory_hit,
    "2": _fig_redis.tunegate_hit,
    "2a": _fig_redis.tunegate_ahit,
    "2g": _fig_redis.tunegate_hit_first_read,
    "3": _fig_miss.tunegate_amiss,
    "3a": _fig_miss.tunegate_miss,
    "4": _fig_miss.tunegate_throughput,
    "5": _fig_policy.tunegate_stack,
    "5a": _fig_policy.tunegate_astack,
}


def _cpu(ctx: Ctx, figure: str, rounds: int) -> None:
    """CPU microseconds per miss, tunegate's beside bare aiohttp's, in turns."""
    _fig_miss.CPU = True
    ours_fn = SAMPLES[figure]
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        ours.append(ours_fn(ctx))
        theirs.append(_fig_miss.aiohttp_miss(ctx))
        print(
            f"  tunegate {ours[-1]:7.0f} us  aiohttp {theirs[-1]:7.0f} us  "
            f"{ours[-1] / theirs[-1]:.2f}x",
            flush=True,
        )
    mine, bare = statistics.median(ours), statistics.median(theirs)
    print(
        f"figure {figure} CPU per miss: tunegate {mine:.0f} us, bare aiohttp {bare:.0f} us, "
        f"{mine / bare:.2f}x (median of {rounds})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", choices=sorted(SAMPLES))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--bare",
        action="store_true",
        help="no cProfile: just run the figure, for a sampler outside (py-spy record -- ...)",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="figures 3, 3a: CPU per miss beside bare aiohttp's, in turns (no profiler)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="--cpu: rounds of both sides")
    args = parser.parse_args()
    if args.cpu and args.figure not in ("3", "3a"):
        parser.error("--cpu is for figures 3 and 3a")
    ctx = Ctx.start(quick=True)
    ctx.seconds = args.seconds
    try:
        if args.cpu:
            SAMPLES[args.figure](ctx)  # warm
            _cpu(ctx, args.figure, args.rounds)
            return
        SAMPLES[args.figure](ctx)  # warm: imports, connections, token
        if args.bare:
            SAMPLES[args.figure](ctx)
            return
        profiler = cProfile.Profile()
        profiler.enable()
        SAMPLES[args.figure](ctx)
        profiler.disable()
    finally:
        ctx.close()
    stats = pstats.Stats(profiler)
    stats.strip_dirs().sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
