"""Work a call leaves for after its answer (the breaker's success record, the cache write
with single-flight's publish and release), and the Redis link it runs on.

The reproduction first: an asyncio connection that sat idle in the pool while Redis was
restarted. A second connection exists as soon as two things talk to Redis at once (a call
and the work it left behind); the first command on it after the restart must not mark the
link down (and so drop a cache write)."""

from __future__ import annotations

import asyncio

import pytest

from tests._redis_server import RedisServer
from tunegate._redis import DOWN, RedisCall, RedisLink

pytestmark = pytest.mark.redis


def test_an_idle_asyncio_connection_from_before_a_restart_is_not_an_outage(
    restartable_redis: RedisServer,
) -> None:
    link = RedisLink(restartable_redis.url, retry_interval=60.0)
    ping = RedisCall(link, "test", command=("PING",), down=DOWN)

    async def run() -> list[object]:
        pool = link.aio.connection_pool
        held = [await pool.get_connection() for _ in range(2)]  # type: ignore[no-untyped-call]
        for conn in held:  # both connected, then idle in the pool
            await conn.send_command("PING")
            assert await conn.read_response() == b"PONG"
        for conn in held:
            await pool.release(conn)
        # Restarted while this loop runs no callback: its streams have not seen the EOF.
        restartable_redis.stop()
        restartable_redis.start()
        return [await link.aexecute(ping) for _ in range(3)]

    try:
        assert asyncio.run(run()) == [True, True, True]
        assert link.available
    finally:
        link.close()
