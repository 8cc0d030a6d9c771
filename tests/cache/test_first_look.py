"""The request path's first look at a key this process has not read fresh: the lookup +
claim script while recent such lookups mostly miss (a miss keeps its one round trip before
the token), a plain GET while they mostly hit (a hit is a GET, not the script), and back.
Counted by the server (MONITOR): a script is one command, its inner calls are not."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests._redis_server import RedisServer
from tests.pipeline._server import ScriptServer, serve
from tests.pipeline.conftest import FAST_HTTP, FAST_RETRY, item
from tunegate._http import HttpPool
from tunegate._redis import RedisLink
from tunegate.cache import CacheManager
from tunegate.cache.redisbackend import FirstLook, RedisBackend
from tunegate.pipeline import Miss, Pipeline

pytestmark = pytest.mark.redis

STOP = "tunegate-test:first-look-stop"


def test_first_look_starts_with_the_script_and_turns_with_the_hit_ratio() -> None:
    look = FirstLook()
    assert not look.get_first()  # a new process: misses keep their round trips
    for _ in range(20):
        look.saw(True)
    assert not look.get_first()  # a few hits are not a regime yet
    for _ in range(10):
        look.saw(True)
    assert look.get_first()
    for _ in range(30):  # 1 miss in 8: still mostly hits
        for hit in (False, *[True] * 7):
            look.saw(hit)
    assert look.get_first()
    for _ in range(5):
        look.saw(False)
    assert not look.get_first()  # misses are not rare any more


class Commands:
    """The commands clients sent the server (not those a script ran), from MONITOR."""

    def __init__(self, server: RedisServer) -> None:
        self.seen: list[str] = []
        self._client = server.client()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)
        for _ in range(500):  # live once it sees our own command
            self._client.echo("tunegate-test:first-look-ready")
            if any("first-look-ready" in c for c in self.seen):
                break
            threading.Event().wait(0.01)
        self.seen.clear()

    def _read(self) -> None:
        with self._client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._ready.set()
            for entry in monitor.listen():
                if entry.get("client_type") == "lua":
                    continue
                command = str(entry["command"])
                self.seen.append(command)
                if STOP in command:
                    return

    def take(self) -> list[str]:
        """The command names seen since the last take (markers left out)."""
        self._client.echo(STOP)
        self._thread.join(5)
        names = [c.split(" ", 1)[0].upper() for c in self.seen if "tunegate-test:" not in c]
        return [n for n in names if n not in {"HELLO", "CLIENT", "SELECT", "AUTH", "PING"}]

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def upstream() -> Iterator[ScriptServer]:
    yield from serve()


@pytest.fixture
def setup(redis_url: str, upstream: ScriptServer) -> Iterator[tuple[Pipeline, CacheManager]]:
    link = RedisLink(redis_url)
    cache = CacheManager(backend=RedisBackend(link, decoded_entries=0))
    pipeline = Pipeline(
        "test",
        upstream.url,
        cache=cache,
        redis=link,
        http=HttpPool("test", FAST_HTTP),
        retry=FAST_RETRY,
    )
    writer = CacheManager(redis_url)  # another process: stores what this one never read
    try:
        yield pipeline, writer
    finally:
        pipeline.close()
        writer.close()
        link.close()


def _look(pipeline: Pipeline, i: int) -> Any:
    key = pipeline.key(item(i))
    assert key is not None
    return pipeline.look(key)


def _counted(redis_server: RedisServer, pipeline: Pipeline, indexes: range) -> list[str]:
    commands = Commands(redis_server)
    try:
        for i in indexes:
            _look(pipeline, i)
        return commands.take()
    finally:
        commands.close()


def test_mostly_hits_make_the_first_look_a_get_and_misses_turn_it_back(
    redis_server: RedisServer, setup: tuple[Pipeline, CacheManager]
) -> None:
    pipeline, writer = setup
    for i in range(200):
        key = pipeline.key(item(i))
        assert key is not None
        writer.store(key, {"v": i})
    _look(pipeline, 0)  # connect, load the script

    cold = _counted(redis_server, pipeline, range(1, 11))
    assert cold == ["EVALSHA"] * 10  # hits, one script each: not a regime yet

    _counted(redis_server, pipeline, range(11, 41))
    warm = _counted(redis_server, pipeline, range(41, 61))
    assert warm == ["GET"] * 20  # mostly hits: a plain GET each, no script

    key = pipeline.key(item(1000))
    assert key is not None
    commands = Commands(redis_server)
    try:
        missed = pipeline.look(key)
        rare_miss = commands.take()
    finally:
        commands.close()
    assert isinstance(missed, Miss)
    assert missed.claimed is not None  # the lease is claimed as on any miss
    assert rare_miss == ["GET", "EVALSHA"]  # the one extra round trip, on a rare miss

    misses = _counted(redis_server, pipeline, range(1001, 1011))
    assert misses[-2:] == ["EVALSHA", "EVALSHA"]  # misses are not rare: the script again
    assert misses.count("GET") < 10
    assert pipeline.cache is not None
    assert pipeline.cache.get_stats()["hits"] == 61


def test_a_cold_process_keeps_a_miss_at_one_lookup_round_trip(
    redis_server: RedisServer, setup: tuple[Pipeline, CacheManager]
) -> None:
    pipeline, _ = setup
    _look(pipeline, 5000)
    misses = _counted(redis_server, pipeline, range(5001, 5031))
    assert misses == ["EVALSHA"] * 30


def test_the_asyncio_driver_takes_the_same_first_look(
    redis_server: RedisServer, setup: tuple[Pipeline, CacheManager]
) -> None:
    pipeline, writer = setup
    keys = []
    for i in range(60):
        key = pipeline.key(item(i))
        assert key is not None
        writer.store(key, {"v": i})
        keys.append(key)

    async def looks() -> list[str]:
        try:
            for key in keys[:50]:
                await pipeline.alook(key)
            commands = Commands(redis_server)
            try:
                values = [await pipeline.alook(key) for key in keys[50:]]
                seen = commands.take()
            finally:
                commands.close()
            assert values == [{"v": i} for i in range(50, 60)]
            return seen
        finally:
            await pipeline.aclose()

    assert asyncio.run(looks()) == ["GET"] * 10
