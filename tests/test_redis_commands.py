"""RedisLink's asyncio command path: its own idle connections per loop, one sweeper timer
per loop for timeouts, and the resend rule after a Redis restart. Real private servers,
stalled with SIGSTOP and restarted; no mocks."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions

from tests._redis_server import RedisServer
from tests.test_redis_link import BOUND, ECHO, server_clients
from tunegate._redis import (
    _CAN_READ,
    DOWN,
    IDLE_CAP,
    TIMEOUTS_TO_DOWN,
    LuaScript,
    RedisCall,
    RedisLink,
    StaleConnection,
    _LoopConns,
    _resendable,
    _transport,
    lua,
)

pytestmark = pytest.mark.redis

TIMEOUT = 0.2  # the links' socket_timeout here


@contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """The server process stopped (SIGSTOP): the kernel still accepts connections and takes
    bytes, nothing answers; continued when the block ends."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def restart(server: RedisServer) -> None:
    """Stop and start the server without letting the running loop run a callback: the
    link's idle connections have not seen the EOF."""
    server.stop()
    server.start()


def sweeper_scheduled(conns: _LoopConns) -> bool:
    loop = asyncio.get_running_loop()
    pending = [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()]
    return conns._sweeper is not None or any(
        getattr(h, "_callback", None) == conns._sweep for h in pending
    )


async def saw_eof(conn: redis.asyncio.Connection) -> bool:
    """Has this loop read the end of ``conn``'s stream (redis-py 5 raises on it)?"""
    try:
        return bool(await getattr(conn, _CAN_READ)())
    except (redis.exceptions.ConnectionError, OSError):
        return True


# -- the one private attribute of redis-py we use ------------------------------------------


async def test_the_transport_the_sweeper_aborts_is_still_where_redis_py_keeps_it(
    redis_url: str,
) -> None:
    """_transport() finds the live transport of a connected redis-py asyncio connection
    (none before connect and after disconnect), and aborting it fails a pending read at
    once. If redis-py moves its stream writer, this fails first; the link then keeps
    redis-py's own read timeout on such connections (still bounded, but slower)."""
    link = RedisLink(redis_url)
    conns = link._loop_conns()
    conn = conns._class(**conns._kwargs)
    try:
        assert _transport(conn) is None
        await conn.connect()
        transport = _transport(conn)
        assert isinstance(transport, asyncio.WriteTransport)
        assert not transport.is_closing()
        await conn.send_command("BLPOP", "nothing", 5)  # Redis holds the reply for 5 s
        read = asyncio.ensure_future(conn.read_response())
        await asyncio.sleep(0.01)
        assert not read.done()
        transport.abort()
        with pytest.raises(redis.exceptions.ConnectionError):
            await asyncio.wait_for(read, BOUND)
        assert _transport(conn) is None  # redis-py disconnected it on the failed read
    finally:
        await conn.disconnect()
        await link.aclose()
        link.close()


def test_our_command_connections_have_the_clients_settings_but_no_per_read_timeout(
    redis_url: str,
) -> None:
    """Made like the loop client's connections (class and settings), except redis-py's
    per-read timeout, which the sweeper replaces with the link's socket_timeout."""
    link = RedisLink(redis_url + "?client_name=app", socket_timeout=0.3)

    async def settings() -> tuple[_LoopConns, dict[str, Any], type[Any]]:
        conns = link._loop_conns()
        pool = link.aio.connection_pool
        return conns, dict(pool.connection_kwargs), pool.connection_class

    conns, client_kwargs, client_class = asyncio.run(settings())
    assert conns._class is client_class
    assert conns._kwargs["socket_timeout"] is None
    assert client_kwargs["socket_timeout"] == 0.3
    assert {k: v for k, v in conns._kwargs.items() if k != "socket_timeout"} == {
        k: v for k, v in client_kwargs.items() if k != "socket_timeout"
    }
    assert (conns._timeout, conns._connect_timeout) == (0.3, 0.3)
    link.close()


# -- timeouts: one sweeper per loop ---------------------------------------------------------


async def test_a_stalled_redis_times_a_command_out_and_the_sweeper_then_stops(
    restartable_redis: RedisServer,
) -> None:
    """A server that stops answering: a command on an idle connection and one on a fresh
    connection (stuck in its handshake) each fail with redis-py's TimeoutError, their
    connections closed and never reused; the link counts one stall and stays up, serves
    again once the server does, and when nothing is in flight no sweeper timer is left."""
    link = RedisLink(restartable_redis.url, socket_timeout=TIMEOUT, retry_interval=60)
    get = RedisCall(link, "test", command=("GET", "k"), down=DOWN)
    try:
        assert await get.arun() is None
        conns = link._loop_conns()
        (conn,) = conns._idle
        with frozen(restartable_redis):
            with pytest.raises(redis.exceptions.TimeoutError):
                await asyncio.wait_for(conns.send(("GET", "k")), BOUND)
            assert conns._idle == []
            assert not conn.is_connected  # cut and closed
            assert await asyncio.wait_for(get.arun(), BOUND) is DOWN  # a fresh one, cut too
            assert link.available  # one stall, not an outage
            assert conns._idle == []
            assert conns._flights == {}
        assert await get.arun() is None
        assert link.available
        await asyncio.sleep(TIMEOUT * 2)  # past any deadline: the sweeper ran and stopped
        assert not sweeper_scheduled(conns)
        assert len(conns._idle) == 1
        assert conns._idle[0] is not conn
    finally:
        await link.aclose()
        link.close()


async def test_a_stalled_write_is_cut_too(restartable_redis: RedisServer) -> None:
    """A write the stalled server does not read (more than the socket buffers take) is
    ended by the sweeper as well: aborted, not closed, so the unsent bytes do not hold it."""
    link = RedisLink(restartable_redis.url, socket_timeout=TIMEOUT, retry_interval=60)
    try:
        conns = link._loop_conns()
        assert await conns.send(("PING",)) is True
        with frozen(restartable_redis), pytest.raises(redis.exceptions.TimeoutError):
            await asyncio.wait_for(conns.send(("SET", "big", b"x" * (32 << 20))), BOUND)
        assert conns._idle == []
        assert await conns.send(("PING",)) is True
    finally:
        await link.aclose()
        link.close()


async def test_stalls_in_a_row_on_the_asyncio_path_take_the_link_down(
    restartable_redis: RedisServer,
) -> None:
    """The fail-open rule is unchanged: TIMEOUTS_TO_DOWN stalls in a row (no reply between
    them) mark the link down; commands in flight together in one stall count once."""
    link = RedisLink(restartable_redis.url, socket_timeout=TIMEOUT, retry_interval=60)
    ping = RedisCall(link, "test", command=("PING",), down=DOWN)
    try:
        assert await ping.arun() is True
        with frozen(restartable_redis):
            together = asyncio.gather(*(ping.arun() for _ in range(8)))
            assert await asyncio.wait_for(together, BOUND) == [DOWN] * 8
            assert link.available  # eight in flight together: one stall
            for _ in range(TIMEOUTS_TO_DOWN - 1):
                assert link.available
                assert await asyncio.wait_for(ping.arun(), BOUND) is DOWN
            assert not link.available
    finally:
        await link.aclose()
        link.close()


# -- the resend rule after a restart --------------------------------------------------------


def test_what_is_sent_twice_is_decided_per_command_and_per_script() -> None:
    """Reads, loads and deletes go again; SET only without NX/GET/compare options; nothing
    else. Of tunegate's scripts, only the lease-keyed ones declare themselves resendable."""
    yes: list[tuple[Any, ...]] = [
        ("GET", "k"),
        ("PING",),
        ("MGET", "a", "b"),
        ("SCAN", 0, "MATCH", "x*"),
        ("SCRIPT LOAD", b"return 1"),
        ("UNLINK", "a", "b"),
        ("SET", "k", "v"),
        ("SET", "k", "NX", "PX", 1000),  # the value may read "NX": only options count
        ("set", "k", "v", "px", "1000", "KEEPTTL"),
        (b"GET", "k"),
    ]
    no: list[tuple[Any, ...]] = [
        ("EVALSHA", "0" * 40, 0),
        ("INCR", "k"),
        ("SET", "k", "v", "NX"),
        ("SET", "k", "v", "PX", 10, "GET"),
        ("SET", "k", "v", "IFEQ", "old"),
        ("HSET", "h", "f", "v"),
    ]
    assert [args for args in yes if not _resendable(args)] == []
    assert [args for args in no if _resendable(args)] == []
    resendable = {
        "lease_release.lua",
        "singleflight_renew.lua",
        "singleflight_finish.lua",
        "singleflight_finish_store.lua",
        "singleflight_lookup_claim.lua",
    }
    never = {"token_bucket.lua", "breaker.lua", "singleflight_claim.lua"}
    for name in resendable | never:
        assert lua(name).resend is (name in resendable), name
    assert LuaScript("return 1").resend is False
    assert LuaScript("return 1", resend=True).resend is True


async def test_after_a_restart_a_get_is_sent_again_and_succeeds(
    restartable_redis: RedisServer,
) -> None:
    """Idle connections from before a restart the loop has not seen: a GET fails on one,
    goes once more on a fresh connection and answers; the other idle ones are dropped, and
    the link never counts an outage."""
    link = RedisLink(restartable_redis.url, retry_interval=60)
    get = RedisCall(link, "test", command=("GET", "k"), down=DOWN)
    admin: redis.Redis | None = None
    try:
        conns = link._loop_conns()
        await asyncio.gather(*(conns.send(("PING",)) for _ in range(3)))
        old = list(conns._idle)
        assert len(old) == 3
        restart(restartable_redis)
        admin = restartable_redis.client()
        admin.set("k", "after")
        assert await get.arun() == b"after"
        assert link.available
        assert len(conns._idle) == 1
        assert conns._idle[0] not in old
        assert not any(conn.is_connected for conn in old)
    finally:
        if admin is not None:
            admin.close()
        await link.aclose()
        link.close()


SCRIPT_CALLS: dict[str, tuple[tuple[str, ...], tuple[Any, ...]]] = {
    "token_bucket.lua": (("tunegate:rl:{t}",), ("acquire", 10, 10, 60000, "", "")),
    "breaker.lua": (
        ("tunegate:cb:{t}", "tunegate:cb:{t}:probes"),
        ("failure", 0, "", 5, 2, 30, 1, 10, 60000, ""),
    ),
    "singleflight_claim.lua": (("tunegate:sf:{t}", "tunegate:sf:{t}:out"), ("tok", 1000)),
    "singleflight_renew.lua": (("tunegate:sf:{t}",), ("tok", 1000)),
}


@pytest.mark.parametrize("name", sorted(SCRIPT_CALLS))
async def test_after_a_restart_only_a_resendable_script_goes_twice(
    restartable_redis: RedisServer, name: str
) -> None:
    """The token bucket, the breaker and the single-flight claim raise StaleConnection once
    (the call falls back, the link stays up, the next call runs on a fresh connection);
    the lease renewal, which a second run leaves as the first did, is sent again."""
    link = RedisLink(restartable_redis.url, retry_interval=60)
    script = lua(name)
    keys, args = SCRIPT_CALLS[name]
    try:
        conns = link._loop_conns()
        await asyncio.gather(*(conns.send(("PING",)) for _ in range(2)))
        restart(restartable_redis)
        if script.resend:
            assert await script.arun(conns, keys, args) == 0  # not our lease: renews nothing
        else:
            with pytest.raises(StaleConnection):
                await script.arun(conns, keys, args)
            assert conns._idle == []  # the other idle one dropped as well
            await conns.send(("PING",))
            restart(restartable_redis)
            assert await link.arun_script(script, keys, args, "test") is None  # falls back
            assert link.available
        assert await link.arun_script(script, keys, args, "test") is not None
        assert link.available
    finally:
        await link.aclose()
        link.close()


async def test_an_idle_connection_the_loop_saw_close_is_not_used(
    restartable_redis: RedisServer,
) -> None:
    """When the loop has already seen the restart's EOF on an idle connection, it is
    dropped before use: even the token bucket then runs at once, on a fresh connection."""
    link = RedisLink(restartable_redis.url, retry_interval=60)
    script = lua("token_bucket.lua")
    keys, args = SCRIPT_CALLS["token_bucket.lua"]
    try:
        conns = link._loop_conns()
        await conns.send(("PING",))
        (old,) = conns._idle
        restart(restartable_redis)
        for _ in range(200):  # bounded: until this loop has read the EOF
            if await saw_eof(old):
                break
            await asyncio.sleep(0.01)
        reply = await script.arun(conns, keys, args)
        assert reply[0] == 1  # granted
        assert not old.is_connected
        assert conns._idle != [old]
    finally:
        await link.aclose()
        link.close()


# -- connections: in step, bounded, closed with their loop -----------------------------------


async def test_replies_are_parsed_as_redis_py_parses_them(redis_url: str) -> None:
    """The same commands through the link's connections and through redis-py's own
    execute_command give the same replies; an error reply is raised and leaves the
    connection in step (kept, and the next command's reply is its own)."""
    link = RedisLink(redis_url)
    plain = redis.asyncio.Redis.from_url(redis_url)
    commands: list[tuple[Any, ...]] = [
        ("SET", "a", b"\x00\xffbytes", "PX", 60000),
        ("GET", "a"),
        ("GET", "missing"),
        ("MGET", "a", "missing"),
        ("EXISTS", "a", "missing"),
        ("SCAN", 0, "MATCH", "a*", "COUNT", 100),
        ("PING",),
        ("ECHO", "x"),
        ("TTL", "missing"),
        ("UNLINK", "a"),
    ]
    try:
        conns = link._loop_conns()
        ours = [await conns.send(c) for c in commands]
        theirs = [await plain.execute_command(*c) for c in commands]  # type: ignore[no-untyped-call]
        assert ours == theirs
        assert ours[1] == b"\x00\xffbytes"
        assert await ECHO.arun(conns, [], ["raw"]) == b"raw"  # EVALSHA: raw, as redis-py
        await plain.rpush("list", "x")
        (conn,) = conns._idle
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            await conns.send(("GET", "list"))
        assert conns._idle == [conn]
        assert await conns.send(("ECHO", "next")) == b"next"
    finally:
        await plain.aclose()
        await link.aclose()
        link.close()


async def test_a_burst_of_64_keeps_at_most_the_idle_cap(restartable_redis: RedisServer) -> None:
    """64 commands at once open 64 connections (in flight: the callers' concurrency); when
    they are done, IDLE_CAP stay idle and the rest are closed."""
    link = RedisLink(restartable_redis.url)
    admin = restartable_redis.client()
    try:
        conns = link._loop_conns()
        before = int(admin.info("stats")["total_connections_received"])
        replies = await asyncio.gather(*(conns.send(("PING",)) for _ in range(64)))
        assert replies == [True] * 64
        assert int(admin.info("stats")["total_connections_received"]) - before == 64
        assert len(conns._idle) == IDLE_CAP
        assert server_clients(restartable_redis, IDLE_CAP + 2) == IDLE_CAP + 2  # + 2 admins
        await asyncio.gather(*(conns.send(("PING",)) for _ in range(64)))
        assert len(conns._idle) == IDLE_CAP  # a second burst: no growth
    finally:
        admin.close()
        await link.aclose()
        link.close()
    assert server_clients(restartable_redis, 1) == 1


def test_a_loop_that_ends_closes_its_connections(restartable_redis: RedisServer) -> None:
    """asyncio.run cycles with bursts, and one ending while a command is stuck in flight:
    every connection closed (no ResourceWarning), the server left with none of ours."""
    link = RedisLink(restartable_redis.url, socket_timeout=5.0)

    async def burst() -> int:
        conns = link._loop_conns()
        await asyncio.gather(*(conns.send(("PING",)) for _ in range(40)))
        return len(conns._idle)

    async def stuck() -> None:
        conns = link._loop_conns()
        await conns.send(("PING",))
        assert restartable_redis.proc is not None
        os.kill(restartable_redis.proc.pid, signal.SIGSTOP)  # continued after the loop ended
        task = asyncio.ensure_future(conns.send(("GET", "k")))
        await asyncio.sleep(0.05)  # sent; asyncio.run then cancels it, in flight
        assert not task.done()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert asyncio.run(burst()) == IDLE_CAP
        try:
            asyncio.run(stuck())
        finally:
            assert restartable_redis.proc is not None
            os.kill(restartable_redis.proc.pid, signal.SIGCONT)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert server_clients(restartable_redis, 1) == 1
    link.close()


def test_two_loops_in_two_threads_keep_their_own_connections(
    restartable_redis: RedisServer,
) -> None:
    """Two threads, each with its own loop, drive one link concurrently: each loop has its
    own connections and every reply is its own command's; both close when their loop ends."""
    link = RedisLink(restartable_redis.url)
    seen: list[_LoopConns] = []
    errors: list[BaseException] = []

    async def work(n: int) -> None:
        seen.append(link._loop_conns())
        for i in range(40):
            key, value = f"t{n}:{i}", f"{n}-{i}".encode()
            put = RedisCall(link, "test", command=("SET", key, value), down=DOWN)
            assert await put.arun() is True
            get = RedisCall(link, "test", command=("GET", key), down=DOWN)
            assert await asyncio.gather(*(get.arun() for _ in range(8))) == [value] * 8

    def run(n: int) -> None:
        try:
            asyncio.run(work(n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND * 3)
        assert not t.is_alive()
    assert errors == []
    assert len(seen) == 2
    assert seen[0] is not seen[1]
    assert link.available
    assert server_clients(restartable_redis, 1) == 1
    link.close()


async def test_a_command_started_after_a_slow_connect_is_cut_at_its_own_deadline(
    restartable_redis: RedisServer,
) -> None:
    """The sweeper was armed for a new connection's later deadline (connect + command
    timeout); a command then started on an idle connection still ends at its own timeout,
    not at the other's (the timer moves to an earlier deadline)."""
    link = RedisLink(
        restartable_redis.url, socket_timeout=TIMEOUT, socket_connect_timeout=5.0, retry_interval=60
    )
    conns = link._loop_conns()
    slow = asyncio.create_task(conns.send(("BLPOP", "tunegate-test:nokey-a", 3)))
    try:
        assert await conns.send(("PING",)) is True  # a second new connection, left idle
        await asyncio.sleep(TIMEOUT * 1.2)  # the first sweep ran: re-armed for the slow one
        assert len(conns._idle) == 1
        with pytest.raises(redis.exceptions.TimeoutError):  # not wait_for's own, at 2.5 s
            await asyncio.wait_for(conns.send(("BLPOP", "tunegate-test:nokey-b", 10)), 2.5)
    finally:
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
        await link.aclose()
        link.close()


async def test_a_connection_refused_in_its_handshake_is_not_kept(redis_url: str) -> None:
    """An error reply during a new connection's handshake (SELECT of a db the server does
    not have): redis-py has disconnected it, so it is not put back among the idle ones."""
    link = RedisLink(redis_url.rsplit("/", 1)[0] + "/99", retry_interval=60)
    try:
        assert await RedisCall(link, "test", command=("PING",), down=DOWN).arun() is DOWN
        assert link._loop_conns()._idle == []
    finally:
        await link.aclose()
        link.close()


def test_a_forked_child_on_the_parents_loop_does_not_use_the_parents_connections(
    restartable_redis: RedisServer,
) -> None:
    """A child that keeps running the parent's loop object makes its own connections: the
    parent's sockets are shared with it, and their replies would cross."""
    restartable_redis.client().set("tunegate-test:fork", b"v")
    link = RedisLink(restartable_redis.url, retry_interval=60)
    loop = asyncio.new_event_loop()
    try:
        conns = loop.run_until_complete(_warm(link))
        (parents,) = conns._idle
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, never return into pytest
            ok = False
            try:
                reply = loop.run_until_complete(conns.send(("GET", "tunegate-test:fork")))
                ok = reply == b"v" and parents not in conns._idle
            finally:
                os.write(write, b"1" if ok else b"0")
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        assert os.read(read, 1) == b"1"
        os.close(read)
        assert status == 0
        assert conns._idle == [parents]  # the parent's own, untouched by the child
        assert loop.run_until_complete(conns.send(("GET", "tunegate-test:fork"))) == b"v"
    finally:
        loop.run_until_complete(link.aclose())
        loop.close()
        link.close()


async def _warm(link: RedisLink) -> _LoopConns:
    conns = link._loop_conns()
    assert await conns.send(("PING",)) is True
    return conns


# -- the sync side: the link's own connections too -----------------------------------------


def test_sync_commands_reuse_one_idle_connection_and_survive_a_restart(
    restartable_redis: RedisServer,
) -> None:
    """Sync commands take the newest idle connection and give it back; one idle since a
    restart is polled before reuse (it has seen the EOF), reconnected, and the command goes
    once, on a live socket: a token-bucket script is not refused as stale."""
    link = RedisLink(restartable_redis.url, retry_interval=60)
    get = RedisCall(link, "test", command=("GET", "tunegate-test:sync"), down=DOWN)
    try:
        assert get.run() is None
        conns = link._conns()
        (conn,) = conns._idle
        assert get.run() is None
        assert conns._idle == [conn]
        restart(restartable_redis)
        restartable_redis.client().set("tunegate-test:sync", b"after")
        assert get.run() == b"after"
        assert link.available
        bucket = lua("token_bucket.lua")
        keys, args = ["tunegate-test:bucket"], ["peek", 1, 1, 1000, ""]
        assert link.run_script(bucket, keys, args, "test") is not None
        assert conns._idle == [conn]  # the same object, reconnected
        link.close()
        assert conns._idle == []
        assert conns.closed
    finally:
        link.close()


def test_sync_connections_are_forgotten_in_a_forked_child(redis_url: str) -> None:
    link = RedisLink(redis_url, retry_interval=60)
    try:
        assert RedisCall(link, "test", command=("PING",), down=DOWN).run() is True
        conns = link._conns()
        (parents,) = conns._idle
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            ok = False
            try:
                ok = RedisCall(link, "test", command=("PING",), down=DOWN).run() is True
                ok = ok and parents not in conns._idle
            finally:
                os.write(write, b"1" if ok else b"0")
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        assert os.read(read, 1) == b"1"
        os.close(read)
        assert conns._idle == [parents]
        assert RedisCall(link, "test", command=("PING",), down=DOWN).run() is True
    finally:
        link.close()


def test_a_sync_connection_refused_in_its_handshake_is_not_kept(redis_url: str) -> None:
    link = RedisLink(redis_url.rsplit("/", 1)[0] + "/99", retry_interval=60)
    try:
        assert RedisCall(link, "test", command=("PING",), down=DOWN).run() is DOWN
        assert link._conns()._idle == []
    finally:
        link.close()
