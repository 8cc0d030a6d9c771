"""Figures 3 and 4: the miss path against the emulator (limits lifted) beside bare aiohttp
and httpx on the same URLs; Redis round trips of a Redis-backed miss; 200 distinct misses
at 16-way concurrency; 64 identical concurrent misses.

Every call is a real miss: the queries cycle over 2,500 distinct tracks while the memory
cache holds 64 entries. The bare clients also ``orjson.loads`` the body (what a user of them
must do); tunegate also ranks the hits (what ``search_track`` returns)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import orjson
from _ctx import Ctx
from _timing import atimed, timed

from tunegate import CacheManager, HttpConfig

SMALL = 64  # entries: far fewer than the queries cycled through, so every lookup misses
#: Time this process's CPU instead of wall time (``profile_figure.py --cpu``: the client's
#: own cost per miss, which the emulator's and the other processes' load do not inflate).
CPU = False


def bare_session(pool_size: int | None = None) -> aiohttp.ClientSession:
    """The bare-aiohttp anchor's session, with the connection limits tunegate's pool uses
    for the same ``pool_size`` (``_http.HttpPool``: per host ``pool_size``, in all 4x), so
    a throughput ratio compares the request paths, not the pool sizes."""
    size = HttpConfig().pool_size if pool_size is None else pool_size
    connector = aiohttp.TCPConnector(limit=size * 4, limit_per_host=size, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector)


def _queries(ctx: Ctx, offset: int) -> Iterator[tuple[str, str]]:
    return ctx.cycle(offset)


def tunegate_amiss(ctx: Ctx) -> float:
    it = _queries(ctx, 0)

    with asyncio.Runner() as runner:
        client: Any = runner.run(ctx.aspotify(CacheManager.memory(max_entries=SMALL)))

        async def one() -> object:
            artist, title = next(it)
            return await client.search_track(artist, title)

        runner.run(one())  # the token, the connection
        us = atimed(runner, one, ctx.seconds, cpu=CPU)
        runner.run(client.aclose())
    return us


def tunegate_miss(ctx: Ctx) -> float:
    it = _queries(ctx, 100)
    with ctx.spotify(CacheManager.memory(max_entries=SMALL)) as client:

        def one() -> object:
            artist, title = next(it)
            return client.search_track(artist, title)

        one()
        return timed(one, ctx.seconds, cpu=CPU)


def aiohttp_miss(ctx: Ctx) -> float:
    it = _queries(ctx, 200)
    url, headers = ctx.search_url, ctx.headers

    async def setup() -> aiohttp.ClientSession:
        return bare_session()

    with asyncio.Runner() as runner:
        session = runner.run(setup())

        async def one() -> object:
            artist, title = next(it)
            async with session.get(url, params=ctx.params(artist, title), headers=headers) as r:
                r.raise_for_status()
                return orjson.loads(await r.read())

        runner.run(one())
        us = atimed(runner, one, ctx.seconds, cpu=CPU)
        runner.run(session.close())
    return us


def httpx_miss(ctx: Ctx) -> float:
    it = _queries(ctx, 300)
    with httpx.Client() as session:

        def one() -> object:
            artist, title = next(it)
            r = session.get(ctx.search_url, params=ctx.params(artist, title), headers=ctx.headers)
            r.raise_for_status()
            return orjson.loads(r.content)

        one()
        return timed(one, ctx.seconds, cpu=CPU)


def redis_miss_round_trips(ctx: Ctx, n: int = 10) -> dict[str, Any]:
    """Per Redis-backed miss (``cache_manager=CacheManager(url)``: the client then shares its
    limiter, breaker and single-flight through the cache's Redis too): round trips before
    the call returned, and in all (0.3 s later). ``heads`` names each round trip's command."""
    proxy = ctx.redis_proxy()
    url = f"redis://127.0.0.1:{proxy.port}/0"
    before = after = 0
    heads: list[str] = []
    try:
        it = _queries(ctx, 400)
        with ctx.spotify(CacheManager(url)) as client:
            for _ in range(2):  # connect, handshake, token
                client.search_track(*next(it))
            time.sleep(0.3)
            for _ in range(n):
                proxy.reset()
                client.search_track(*next(it))
                before += proxy.round_trips
                time.sleep(0.3)  # writes left to the background, if any
                after += proxy.round_trips
            heads = [_command(h) for h in proxy.heads]
    finally:
        proxy.close()
    return {"before_answer": before / n, "in_all": after / n, "last_miss": heads}


def _command(head: bytes) -> str:
    """``EVALSHA tunegate:rl:{spotify}``-like words from the start of a RESP request."""
    words = [w for w in head.split(b"\r\n") if w and w[:1] not in (b"*", b"$")]
    if words[:1] == [b"EVALSHA"] and len(words) >= 4:
        words = [words[0], words[3]]  # the script's first key, not its sha
    return " ".join(w.decode(errors="replace") for w in words[:2])[:60]


# -- figure 4 -------------------------------------------------------------------------------

DISTINCT, WIDTH, SAME = 200, 16, 64


def _batch(ctx: Ctx, sample: int) -> list[tuple[str, str]]:
    """200 queries no earlier sample used (so each is a miss for a fresh client)."""
    start = 500 + (sample * DISTINCT) % (len(ctx.queries) - 500 - DISTINCT)
    return ctx.queries[start : start + DISTINCT]


async def _fan(calls: list[Any], width: int) -> list[Any]:
    gate = asyncio.Semaphore(width)

    async def one(call: Any) -> Any:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


async def _warm_emulator(ctx: Ctx, batch: list[tuple[str, str]]) -> None:
    """One untimed pass over the batch before either side (once per batch): the emulator
    memoises the tracks it builds, so whichever side went first would pay its cold work."""
    if ctx.memo.get("fig4_warm") == batch[0]:
        return
    ctx.memo["fig4_warm"] = batch[0]
    async with bare_session() as session:

        async def get(artist: str, title: str) -> None:
            params = ctx.params(artist, title)
            async with session.get(ctx.search_url, params=params, headers=ctx.headers) as r:
                await r.read()

        await _fan([lambda a=a, t=t: get(a, t) for a, t in batch], WIDTH)


def tunegate_throughput(
    ctx: Ctx, pool_size: int | None = None, batch: list[tuple[str, str]] | None = None
) -> float:
    """Requests/s of 200 distinct misses (``batch``, else the next unused one), 16 at a
    time; the default pool unless ``pool_size`` (``HttpConfig(pool_size=...)``, public)."""
    if batch is None:
        batch = _batch(ctx, ctx.memo.setdefault("fig4_batch", 0) + 1)
        ctx.memo["fig4_batch"] += 1
    options = {} if pool_size is None else {"http": HttpConfig(pool_size=pool_size)}

    async def go() -> float:
        await _warm_emulator(ctx, batch)
        async with await ctx.aspotify(CacheManager.memory(), **options) as client:
            await client.search_track(*ctx.queries[0])  # token and first connection
            t0 = time.perf_counter()
            await _fan([lambda a=a, t=t: client.search_track(a, t) for a, t in batch], WIDTH)
            return DISTINCT / (time.perf_counter() - t0)

    return asyncio.run(go())


def aiohttp_throughput(
    ctx: Ctx, pool_size: int | None = None, batch: list[tuple[str, str]] | None = None
) -> float:
    """Bare aiohttp on ``batch`` (else the last one used), with the connection limits
    tunegate's pool has for ``pool_size``."""
    if batch is None:
        batch = _batch(ctx, ctx.memo.get("fig4_batch", 1))
    url, headers = ctx.search_url, ctx.headers

    async def go() -> float:
        await _warm_emulator(ctx, batch)
        async with bare_session(pool_size) as session:

            async def get(artist: str, title: str) -> Any:
                params = ctx.params(artist, title)
                async with session.get(url, params=params, headers=headers) as r:
                    r.raise_for_status()
                    return orjson.loads(await r.read())

            await get(*ctx.queries[0])
            t0 = time.perf_counter()
            await _fan([lambda a=a, t=t: get(a, t) for a, t in batch], WIDTH)
            return DISTINCT / (time.perf_counter() - t0)

    return asyncio.run(go())


ROUNDS = 3  # batches per sample, alternating which side goes first


def throughput_pair(ctx: Ctx, pool_size: int | None = None) -> tuple[float, float]:
    """(tunegate, bare aiohttp) requests/s for one sample: the median over ``ROUNDS`` fresh
    batches, each sent by both sides one after the other, tunegate first in even rounds and
    aiohttp first in odd ones, so that neither side always meets the machine's next change."""
    ours: list[float] = []
    theirs: list[float] = []
    for round_ in range(ROUNDS):
        n = ctx.memo["fig4_batch"] = ctx.memo.get("fig4_batch", 0) + 1
        batch = _batch(ctx, n)
        if round_ % 2:
            theirs.append(aiohttp_throughput(ctx, pool_size, batch))
        ours.append(tunegate_throughput(ctx, pool_size, batch))
        if not round_ % 2:
            theirs.append(aiohttp_throughput(ctx, pool_size, batch))
    return statistics.median(ours), statistics.median(theirs)


def _search_calls(ctx: Ctx) -> int:
    spotify = ctx.emu.stats()["requests"].get("spotify", {})
    return sum(v["total"] for k, v in spotify.get("endpoints", {}).items() if "search" in k)


def identical(ctx: Ctx, use_cache: bool) -> dict[str, float]:
    """64 concurrent identical misses: upstream calls seen by the emulator, and each
    follower's cost ((elapsed of 64 - elapsed of 1 alone) / 63)."""
    artist, title = ctx.queries[-1 if use_cache else -2]

    async def go() -> dict[str, float]:
        async with await ctx.aspotify(CacheManager.memory()) as client:
            await client.search_track(*ctx.queries[0])
            t0 = time.perf_counter()
            await client.search_track(*ctx.queries[1], use_cache=use_cache)
            alone = time.perf_counter() - t0
            before = _search_calls(ctx)
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(client.search_track(artist, title, use_cache=use_cache) for _ in range(SAME))
            )
            elapsed = time.perf_counter() - t0
            assert all(r is not None for r in results)
            calls = _search_calls(ctx) - before
            return {"upstream": calls, "follower_us": (elapsed - alone) / (SAME - 1) * 1e6}

    return asyncio.run(go())
