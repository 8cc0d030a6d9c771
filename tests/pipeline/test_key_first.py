"""The key-first hit: ``Pipeline.look``/``alook`` answer a cache key from any backend, and a
miss carries what the call needs, so the cache is read once per call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline._server import Reply, ScriptServer
from tests.pipeline.conftest import MakePipeline, item
from tunegate.cache import CacheManager
from tunegate.pipeline import Miss
from tunegate.testing import FakeClock

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def cache(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> CacheManager:
    ttls = {"test:item": 10.0}
    if request.param == "memory":
        return CacheManager(clock=clock, ttls=ttls, jitter=0.0)
    if request.param == "sqlite":
        return CacheManager.sqlite(tmp_path / "c.db", clock=clock, ttls=ttls, jitter=0.0)
    redis_url: str = request.getfixturevalue("redis_url")
    return CacheManager(redis_url, clock=clock, ttls=ttls, jitter=0.0)


def look(pipeline: Any, key: str, driver: str) -> Any:
    if driver == "sync":
        return pipeline.look(key, "/items/{id}", "none")
    return asyncio.run(pipeline.alook(key, "/items/{id}", "none"))


def test_look_answers_a_fresh_key_from_any_backend(
    server: ScriptServer, make: MakePipeline, cache: CacheManager, driver: str
) -> None:
    pipeline = make(cache=cache)
    key = pipeline.key(item(1))
    assert key is not None
    missed = look(pipeline, key, driver)
    assert isinstance(missed, Miss)
    assert missed.stale is None
    cache.store(key, {"v": 1})
    assert look(pipeline, key, driver) == {"v": 1}
    cache.store(pipeline.key(item(2)) or "", None, negative=True)
    assert look(pipeline, pipeline.key(item(2)) or "", driver) == "none"
    stats = pipeline.get_stats()
    assert (stats["cache_hits"], stats["negative_hits"], stats["cache_misses"]) == (1, 1, 1)
    assert server.count("/items/1") == 0


def test_a_miss_passed_on_reads_the_cache_once_and_keeps_its_stale_entry(
    server: ScriptServer, make: MakePipeline, cache: CacheManager, clock: FakeClock, driver: str
) -> None:
    """The miss from ``look`` goes to the call: one lookup in all (the cache's own counters
    say so), one upstream request, and its stale entry still answers an outage."""
    pipeline = make(cache=cache)
    key = pipeline.key(item(1))
    assert key is not None
    cache.store(key, {"v": "old"})
    clock.advance(20.0)  # stale now
    server.script("/items/1", Reply(503), Reply(503), Reply(503))
    cache.reset_stats()

    async def both() -> Any:
        try:
            missed = await pipeline.alook(key)
            return missed, await pipeline.acall(item(1), looked=missed)
        finally:
            await pipeline.aclose()

    if driver == "sync":
        missed = pipeline.look(key)
        value = pipeline.call(item(1), looked=missed)
    else:
        missed, value = asyncio.run(both())
    assert isinstance(missed, Miss)
    assert missed.stale is not None
    assert value == {"v": "old"}  # stale-if-error, from the entry the look found
    assert cache.get_stats()["misses"] == 1  # one lookup: the call did not look again
    assert pipeline.get_stats()["stale_served"] == 1
    assert server.count("/items/1") == 3


def test_the_flow_form_runs_in_the_callers_driver(
    server: ScriptServer, make: MakePipeline, driver: str
) -> None:
    """``yield from pipeline.flow(...)`` inside a caller's own flow: the value, then a hit."""
    from tunegate._drive import Flow, adrive, drive

    pipeline = make(cache=CacheManager())
    server.script("/items/1", Reply(json={"v": 1}))

    def caller() -> Flow[Any]:
        first = yield from pipeline.flow(item(1))
        second = yield from pipeline.flow(item(1))
        return first, second

    if driver == "sync":
        first, second = drive(caller())
    else:

        async def go() -> Any:
            try:
                return await adrive(caller())
            finally:
                await pipeline.aclose()

        first, second = asyncio.run(go())
    assert first == second == {"v": 1}
    assert server.count("/items/1") == 1
    assert pipeline.get_stats()["cache_hits"] == 1
