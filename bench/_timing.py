"""The timing loop every bench script uses: calibrate, then time one loop of about
``seconds``; sync and asyncio forms."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def timed(fn: Callable[[], object], seconds: float, *, cpu: bool = False) -> float:
    """Microseconds per call of ``fn``, over a loop of about ``seconds``. ``cpu=True`` counts
    this process's CPU time instead of wall time: for CPU-only figures with an absolute
    target, so that other processes' load on a shared machine does not inflate them."""
    clock = time.process_time if cpu else time.perf_counter
    n = 1
    while True:  # calibrate: grow the loop until it takes a tenth of the budget
        t0 = clock()
        for _ in range(n):
            fn()
        dt = clock() - t0
        if dt > seconds / 10 or n >= 1 << 22:
            break
        n *= 4
    n = max(1, int(n * seconds / max(dt, 1e-9)))
    t0 = clock()
    for _ in range(n):
        fn()
    return (clock() - t0) / n * 1e6


def atimed(
    runner: asyncio.Runner,
    fn: Callable[[], Awaitable[object]],
    seconds: float,
    *,
    cpu: bool = False,
) -> float:
    """:func:`timed` for a coroutine function, looped inside one event loop."""
    clock = time.process_time if cpu else time.perf_counter

    async def loop(n: int) -> float:
        t0 = clock()
        for _ in range(n):
            await fn()
        return clock() - t0

    n = 1
    while True:
        dt = runner.run(loop(n))
        if dt > seconds / 10 or n >= 1 << 22:
            break
        n *= 4
    n = max(1, int(n * seconds / max(dt, 1e-9)))
    return runner.run(loop(n)) / n * 1e6
