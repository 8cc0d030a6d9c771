"""Figures 5 and 6: the granted path of breaker + limiter + retry around a no-op (sync and
async) beside pybreaker + pyrate-limiter + tenacity and pybreaker + limits + stamina, and
tunegate's split into its three pieces; a shared Redis limiter across 4 processes beside
pyrate-limiter's RedisBucket."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _ctx import LIFTED, Ctx
from _infra import child_env, here
from _timing import atimed, timed

from tunegate import CircuitBreaker, RateLimiter, Retrying, RetryPolicy


def _noop() -> None:
    return None


async def _anoop() -> None:
    return None


# Figure 5 has an absolute target (3 us), so its loops count CPU time (timed(cpu=True)):
# wall time on this shared 2-core machine includes other people's processes.


def floor(ctx: Ctx) -> float:
    return timed(_noop, ctx.seconds, cpu=True)


def afloor(ctx: Ctx) -> float:
    with asyncio.Runner() as runner:
        return atimed(runner, _anoop, ctx.seconds, cpu=True)


def _tunegate_parts() -> tuple[CircuitBreaker, RateLimiter, Retrying]:
    breaker = CircuitBreaker("bench5")
    limiter = RateLimiter()
    limiter.configure_provider("bench5", LIFTED, 10**9)
    return breaker, limiter, Retrying(RetryPolicy(max_attempts=3))


# Every stack does the same work per call, as its library's users would write it: a retry
# wrapper (3 attempts), around a breaker's guard, around a function that takes one token
# from an in-memory limiter and then calls the no-op. tunegate's split (5f-5k) times each
# of its three pieces alone around the no-op; their sum is about the stack.


def _sync_pieces() -> dict[str, Callable[[], object]]:
    breaker, limiter, retrying = _tunegate_parts()
    acquire = limiter.acquire

    def guarded() -> None:
        acquire("bench5")
        return _noop()

    return {
        "stack": lambda: retrying.call(breaker.call, guarded),
        "breaker": lambda: breaker.call(_noop),
        "limiter": guarded,
        "retry": lambda: retrying.call(_noop),
    }


def _async_pieces() -> dict[str, Callable[[], Awaitable[object]]]:
    breaker, limiter, retrying = _tunegate_parts()
    acquire = limiter.aacquire

    async def guarded() -> None:
        await acquire("bench5")
        return await _anoop()

    return {
        "stack": lambda: retrying.acall(breaker.acall, guarded),
        "breaker": lambda: breaker.acall(_anoop),
        "limiter": guarded,
        "retry": lambda: retrying.acall(_anoop),
    }


def tunegate_stack(ctx: Ctx, piece: str = "stack") -> float:
    """``Retrying.call(breaker.call, fn)`` where fn takes a limiter token, then the no-op;
    or one ``piece`` of it alone: "breaker", "limiter" (fn), "retry"."""
    return timed(_sync_pieces()[piece], ctx.seconds, cpu=True)


def tunegate_astack(ctx: Ctx, piece: str = "stack") -> float:
    """The asyncio form of :func:`tunegate_stack`."""
    with asyncio.Runner() as runner:
        return atimed(runner, _async_pieces()[piece], ctx.seconds, cpu=True)


def _pybreaker_pyrate() -> tuple[Any, Any]:
    import pybreaker
    from pyrate_limiter import Duration, Limiter, Rate

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    return breaker, Limiter(Rate(10**9, Duration.SECOND))


def pyrate_tenacity_stack(ctx: Ctx) -> float:
    import tenacity

    breaker, limiter = _pybreaker_pyrate()
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential(), reraise=True
    )

    def guarded() -> None:
        limiter.try_acquire("bench5", blocking=False)
        return _noop()

    return timed(lambda: retrying(breaker.call, guarded), ctx.seconds, cpu=True)


def pyrate_tenacity_astack(ctx: Ctx) -> float:
    """tenacity's AsyncRetrying, pybreaker's ``calling()`` block (its asyncio form without
    tornado) and pyrate-limiter's ``try_acquire_async``."""
    import tenacity

    breaker, limiter = _pybreaker_pyrate()
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential(), reraise=True
    )

    async def guarded() -> None:
        with breaker.calling():
            await limiter.try_acquire_async("bench5", blocking=False)
            return await _anoop()

    with asyncio.Runner() as runner:
        return atimed(runner, lambda: retrying(guarded), ctx.seconds, cpu=True)


def limits_stamina_stack(ctx: Ctx) -> float:
    import limits
    import pybreaker
    import stamina

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    strategy = limits.strategies.FixedWindowRateLimiter(limits.storage.MemoryStorage())
    rate = limits.parse("1000000000/second")

    def guarded() -> None:
        strategy.hit(rate, "bench5")
        return _noop()

    @stamina.retry(on=Exception, attempts=3)
    def call() -> None:
        return breaker.call(guarded)

    return timed(call, ctx.seconds, cpu=True)


def limits_stamina_astack(ctx: Ctx) -> float:
    """stamina on an ``async def``, pybreaker's ``calling()`` block, limits' asyncio
    fixed window in memory."""
    import limits
    import limits.aio
    import pybreaker
    import stamina

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    strategy = limits.aio.strategies.FixedWindowRateLimiter(limits.aio.storage.MemoryStorage())
    rate = limits.parse("1000000000/second")

    @stamina.retry(on=Exception, attempts=3)
    async def call() -> None:
        with breaker.calling():
            await strategy.hit(rate, "bench5")
            return await _anoop()

    with asyncio.Runner() as runner:
        return atimed(runner, call, ctx.seconds, cpu=True)


# -- figure 6 ---------------------------------------------------------------------------------

RATE, CAPACITY, PROCESSES = 10.0, 10, 4
# Grants are timed when acquire() returned, not when the bucket granted them: a window may
# look up to one Redis round trip (under load, ~10 ms) shorter than it was.
JITTER = 0.01


def shared_limiter(ctx: Ctx, kind: str) -> dict[str, Any]:
    """4 processes acquiring from one Redis bucket for ``seconds``; returns the worst
    window's grants over rate x t + capacity, the share of the rate used, and the
    most-served over the least-served process."""
    seconds = 2.0 if ctx.quick else 10.0
    key_space = ctx.redis.client()
    key_space.flushdb()
    key_space.close()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(here() / "_limiter_worker.py"),
                kind,
                ctx.redis.url,
                repr(RATE),
                str(CAPACITY),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    for p in procs:  # every worker imported and connected
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
    start = time.time() + 0.2
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"{start!r} {start + seconds!r}\n")
        p.stdin.flush()
    per: list[list[float]] = []
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 60)
        per.append(json.loads(out))
    grants = sorted(t for ts in per for t in ts)
    capacity = CAPACITY if kind == "tunegate" else round(RATE)  # pyrate: a 1 s sliding log
    worst = 0.0
    for i in range(len(grants)):  # every window [grants[i], grants[j]]
        for j in range(i, len(grants)):
            bound = RATE * (grants[j] - grants[i] + JITTER) + capacity
            worst = max(worst, (j - i + 1) / bound)
    counts = [len(ts) for ts in per]
    return {
        "worst": worst,
        "usage": (len(grants) - capacity) / (RATE * seconds),
        "fairness": max(counts) / max(1, min(counts)),
        "counts": counts,
        "seconds": seconds,
    }
