"""Redis round trips of one Redis-backed miss, counted by the server itself (``MONITOR`` on
the private redis-server): those before the upstream answer arrives, and those after it.

Everything is shared through one Redis, as the clients set it up in Redis mode: the cache,
the rate limiter, the breaker and cross-process single-flight. ``parse`` sends a marker
(``ECHO``) when the answer arrives, and the test another when the call has returned, so the
server's own log splits the call in three: before the answer, after it while the caller
still waits, and the work left for after the answer (the backlog's, held behind a gate
until the call has returned, then flushed). A Lua script counts once (the commands it runs
inside are the server's, not round trips)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis

from tests._redis_server import RedisServer
from tests.pipeline._server import Reply, ScriptServer
from tests.pipeline.conftest import MakePipeline, held, item
from tunegate._redis import RedisLink
from tunegate.cache import CacheManager

pytestmark = pytest.mark.redis

ANSWER, RETURNED, STOP = "tunegate-test:answer", "tunegate-test:returned", "tunegate-test:stop"
#: In sequence before the answer: the cache lookup folded with the single-flight claim (one
#: script), and the rate-limit token (was 3: GET, CLAIM, token). After it, none the caller
#: waits for (was 2: the breaker record, then the write with the publish). Left for after
#: the answer: the breaker's success record (script) and the cache write folded with the
#: published outcome and the release (one script; was 3: record, SET, FINISH).
BEFORE, WAITED_AFTER, LEFT = 2, 0, 2


_SETUP = {"HELLO", "CLIENT", "SELECT", "AUTH"}


class Monitor:
    """The commands the server received, in order, from a MONITOR connection."""

    def __init__(self, server: RedisServer) -> None:
        self.commands: list[str] = []
        self._client = server.client()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)
        self._client.echo("tunegate-test:ready")  # the monitor is live once it sees this
        for _ in range(500):
            if "tunegate-test:ready" in " ".join(self.commands):
                break
            threading.Event().wait(0.01)

    def _read(self) -> None:
        with self._client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._ready.set()
            for entry in monitor.listen():
                if entry.get("client_type") == "lua":
                    continue  # run inside a script: not a round trip
                command = str(entry["command"])
                if command.split(" ", 1)[0].upper() in _SETUP:
                    continue  # a new connection's handshake, once per connection
                self.commands.append(command)
                if STOP in command:
                    return

    def split(self, *markers: str) -> list[list[str]]:
        """The commands between the markers sent (``markers``, by default the answer
        marker, then the stop; markers left out): before and after the answer."""
        markers = markers or (ANSWER,)
        self._client.echo(STOP)
        self._thread.join(5)
        self._client.close()
        start = next(i for i, c in enumerate(self.commands) if "tunegate-test:ready" in c)
        seen = self.commands[start + 1 :]
        parts: list[list[str]] = []
        for marker in (*markers, STOP):
            at = next(i for i, c in enumerate(seen) if marker in c)
            parts.append(seen[:at])
            seen = seen[at + 1 :]
        return parts


def test_a_redis_backed_miss_makes_few_round_trips(
    server: ScriptServer,
    make: MakePipeline,
    redis_server: RedisServer,
    shared: dict[str, Any],
    driver: str,
) -> None:
    """Few round trips before the answer, none after it that the caller waits for: the
    breaker's success record and the cache write are left for after the answer, and the
    pipeline's flush waits for them (they are on the server before the stop marker, which
    is sent once the flush has returned)."""
    pipeline = make(**shared)
    marker = redis_server.client()
    marker.ping()  # connected before the count starts
    server.script("/items/0", Reply(json={"v": 0}))
    server.script("/items/1", Reply(json={"v": 1}))

    def parse(body: Any) -> Any:
        marker.echo(ANSWER)
        return body

    async def both() -> tuple[Any, list[list[str]]]:
        try:
            await pipeline.acall(item(0))  # scripts loaded, bucket and breaker known
            assert await pipeline.aflush()
            monitor = Monitor(redis_server)
            with held() as gate:
                value = await pipeline.acall(item(1), parse=parse)
                marker.echo(RETURNED)
                gate.set()
                assert await pipeline.aflush()
                return value, monitor.split(ANSWER, RETURNED)
        finally:
            await pipeline.aclose()

    if driver == "sync":
        pipeline.call(item(0))
        assert pipeline.flush()
        monitor = Monitor(redis_server)
        with held() as gate:
            value = pipeline.call(item(1), parse=parse)
            marker.echo(RETURNED)
            gate.set()
            assert pipeline.flush()
            parts = monitor.split(ANSWER, RETURNED)
    else:
        value, parts = asyncio.run(both())
    marker.close()
    before, waited, left = parts
    print(f"{driver}: before the answer {len(before)}: {before}")
    print(f"{driver}: after it, waited for {len(waited)}: {waited}")
    print(f"{driver}: left for after the answer {len(left)}: {left}")
    assert value == {"v": 1}
    assert len(before) <= BEFORE
    assert len(waited) <= WAITED_AFTER
    assert len(left) <= LEFT
    key = pipeline.key(item(1))
    assert key is not None
    assert any("tunegate:cb:{test}" in c for c in left)  # the success record still went
    assert any(key in c and '{"v":1}' in c for c in left)  # the write, before flush returned
    assert pipeline.look(key) == {"v": 1}


def test_the_monitor_sees_every_command(redis_server: RedisServer, redis_url: str) -> None:
    """The counting itself: three commands sent, three seen, a script counted once."""
    monitor = Monitor(redis_server)
    client = redis.Redis.from_url(redis_url)
    client.set("a", 1)
    client.echo(ANSWER)
    client.get("a")
    client.eval("redis.call('GET', 'a'); return redis.call('GET', 'a')", 0)
    client.close()
    before, after = monitor.split()
    assert [c.split()[0].strip("'\"").upper() for c in before] == ["SET"]
    assert [c.split()[0].strip("'\"").upper() for c in after] == ["GET", "EVAL"]


def test_the_folded_lookup_claims_only_on_a_miss_and_agrees_with_the_cache(
    server: ScriptServer, make: MakePipeline, redis_server: RedisServer, redis_url: str
) -> None:
    """The script's freshness test (Lua) and the cache's (Python) judge the same stamps with
    the same ``now``: just before ``fresh_until`` a hit that claims nothing, just after a
    miss that holds the lease, which is then this pipeline's own to lead with."""
    from tunegate._flight import lease_keys
    from tunegate.pipeline import Miss
    from tunegate.testing import FakeClock

    clock = FakeClock()
    link = RedisLink(redis_url)
    cache = CacheManager(link, clock=clock, ttls={"test:item": 10.0}, jitter=0.0)
    pipeline = make(cache=cache, redis=link)
    key = pipeline.key(item(1))
    assert key is not None
    lease = lease_keys(key)[0]
    plain = redis_server.client()
    try:
        cache.store(key, {"v": "old"})
        clock.advance(10.0 - 1e-3)
        assert pipeline.look(key) == {"v": "old"}
        assert not plain.exists(lease)
        clock.advance(2e-3)
        missed = pipeline.look(key)
        assert isinstance(missed, Miss)
        assert missed.stale is not None
        assert plain.exists(lease)  # claimed with the lookup
        server.script("/items/1", Reply(json={"v": "new"}))
        assert pipeline.call(item(1), looked=missed) == {"v": "new"}
        assert pipeline.flush()  # the publish and the release come after the answer
        assert not plain.exists(lease)  # released when the outcome was published
        assert server.count("/items/1") == 1
    finally:
        plain.close()
        link.close()


def test_an_abandoned_claim_does_not_block_its_own_pipeline(
    server: ScriptServer, make: MakePipeline, redis_server: RedisServer, redis_url: str
) -> None:
    """A miss whose caller never makes the call (say, no token could be had) leaves its
    lease until the lease TTL; the same pipeline's next caller leads at once anyway."""
    from tunegate.pipeline import Miss

    link = RedisLink(redis_url)
    pipeline = make(cache=CacheManager(link), redis=link)
    key = pipeline.key(item(1))
    assert key is not None
    try:
        assert isinstance(pipeline.look(key), Miss)  # claimed, then abandoned
        server.script("/items/1", Reply(json={"v": 1}))
        assert pipeline.call(item(1)) == {"v": 1}
        assert server.count("/items/1") == 1
        assert pipeline.get_stats()["coalesced"] == 0  # it led, it did not wait
    finally:
        link.close()
