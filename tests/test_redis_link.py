"""RedisLink: our own bounded connections from the caller's settings (TLS kept in both forms),
fail-open on every way Redis can fail, and asyncio clients that end with their loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import shlex
import shutil
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.asyncio.connection
import redis.connection
import redis.exceptions
import redis.retry
from redis.backoff import NoBackoff

import tunegate
from tests._redis_server import RedisServer, free_port
from tunegate._drive import Effect, Flow, adrive, drive
from tunegate._redis import (
    DOWN,
    REDIS_FAILURES,
    TIMEOUTS_TO_DOWN,
    LinkOwner,
    LuaScript,
    RedisCall,
    RedisLink,
    is_outage,
    lua,
)
from tunegate.exceptions import ConfigurationError

BOUND = 10.0  # seconds a call against a stalled Redis may take before the test calls it a hang
ECHO = LuaScript("return ARGV[1]")
WRITE = LuaScript("return redis.call('HSET', KEYS[1], 'f', ARGV[1])")


@contextmanager
def stalled_redis() -> Iterator[int]:
    """A port whose server accepts connections and never answers: a stalled Redis."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield int(server.getsockname()[1])


def refusing_writes(server: RedisServer, how: str) -> Callable[[], None]:
    """Make ``server`` answer but refuse every write ("full": out of memory, "replica": a
    read-only replica, as after a failover); return the function that cures it."""
    admin = server.client()
    if how == "full":
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
    else:
        admin.replicaof("127.0.0.1", free_port())  # a master nobody runs

    def cure() -> None:
        if how == "full":
            admin.config_set("maxmemory", "0")
        else:
            admin.replicaof("NO", "ONE")
        admin.close()

    return cure


SICKNESSES = ["full", "replica"]


def in_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a thread (its value, or its exception raised here); fail the test if it
    has not finished within BOUND seconds."""
    out: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            out.append((True, fn()))
        except BaseException as exc:
            out.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"still blocked after {BOUND} s"
    ok, value = out[0]
    if not ok:
        raise value
    return value


def server_clients(server: RedisServer, expected: int) -> int:
    """Connected clients as the server counts them (itself asking included), once it settles
    at ``expected`` or after about 2 s (closing a socket reaches the server a moment later)."""
    raw = server.client()
    try:
        count = -1
        for _ in range(200):
            count = int(raw.info("clients")["connected_clients"])
            if count == expected:
                break
            time.sleep(0.01)
        return count
    finally:
        raw.close()


# -- settings: ours for timeouts, the caller's for where and how --------------------------


def test_connections_take_the_callers_address_and_credentials_but_our_timeouts() -> None:
    """A client without socket timeout and with retries gives its address, db, password and
    name; our connections get 0.5 s timeouts, no retries and raw bytes. The asyncio command
    connections hand the per-read timeout to their loop's sweeper, which bounds each command
    by the same 0.5 s (tests/test_redis_commands.py stalls a server to show it)."""
    user = redis.Redis(
        host="127.0.0.1", port=6390, db=3, password="pw", client_name="app", decode_responses=True
    )
    link = RedisLink(user)
    kwargs = link.sync.connection_pool.connection_kwargs

    async def loop_settings() -> tuple[dict[str, Any], float]:
        conns = link._loop_conns()
        return conns._kwargs, conns._timeout

    aio_kwargs, command_timeout = asyncio.run(loop_settings())
    assert link.sync is not user
    assert link.sync.connection_pool is not user.connection_pool
    for made in (kwargs, aio_kwargs):
        assert (made["host"], made["port"], made["db"]) == ("127.0.0.1", 6390, 3)
        assert (made["password"], made["client_name"]) == ("pw", "app")
        assert made["socket_connect_timeout"] == 0.5
        assert made["retry"].get_retries() == 0
        assert not made.get("decode_responses", False)
    assert kwargs["socket_timeout"] == 0.5
    assert aio_kwargs["socket_timeout"] is None  # redis-py's per-read timer: the sweeper's
    assert command_timeout == link.socket_timeout == 0.5
    assert user.connection_pool.connection_kwargs["decode_responses"]  # the caller's, untouched
    link.close()
    user.close()


def test_timeouts_are_configurable_and_checked() -> None:
    """socket_timeout and socket_connect_timeout set ours; nonsense is a ConfigurationError."""
    link = RedisLink("redis://127.0.0.1:6390/0", socket_timeout=2.0, socket_connect_timeout=1.0)
    kwargs = link.sync.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 1.0)
    assert link.socket_timeout == 2.0
    link.close()
    for bad in (0, -1.0, float("inf"), float("nan"), "1", True):
        with pytest.raises(ConfigurationError):
            RedisLink("redis://127.0.0.1:6390/0", socket_timeout=bad)  # type: ignore[arg-type]


async def test_a_tls_url_gives_tls_connections_in_both_forms() -> None:
    """rediss:// with TLS settings: the sync and the asyncio pools both use the TLS class
    and carry every ssl_* setting and the password (no connection is made)."""
    link = RedisLink(
        "rediss://:s3cret@127.0.0.1:6380/2?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem"
    )
    sync_pool, aio_pool = link.sync.connection_pool, link.aio.connection_pool
    assert sync_pool.connection_class is redis.connection.SSLConnection
    assert aio_pool.connection_class is redis.asyncio.connection.SSLConnection
    for pool in (sync_pool, aio_pool):
        kwargs = pool.connection_kwargs
        assert kwargs["ssl_cert_reqs"] == "required"
        assert kwargs["ssl_ca_certs"] == "/ca.pem"
        assert (kwargs["password"], kwargs["db"], kwargs["port"]) == ("s3cret", 2, 6380)
    connection = aio_pool.make_connection()  # type: ignore[no-untyped-call]
    assert isinstance(connection, redis.asyncio.connection.SSLConnection)
    await link.aclose()
    link.close()


async def test_the_asyncio_twin_of_a_tls_client_keeps_tls_and_the_reverse() -> None:
    """A sync TLS client gives an asyncio TLS twin with its settings, and an asyncio TLS
    client a sync TLS twin."""
    sync_user = redis.Redis(
        host="127.0.0.1",
        port=6380,
        password="s3cret",
        ssl=True,
        ssl_ca_certs="/ca.pem",
        ssl_certfile="/me.pem",
        ssl_keyfile="/me.key",
        ssl_check_hostname=False,
    )
    aio_user = redis.asyncio.Redis(host="127.0.0.1", port=6380, ssl=True, ssl_ca_certs="/ca.pem")
    from_sync, from_aio = RedisLink(sync_user), RedisLink(aio_user)
    twin = from_sync.aio.connection_pool
    assert twin.connection_class is redis.asyncio.connection.SSLConnection
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "password"):
        assert twin.connection_kwargs[name] == sync_user.connection_pool.connection_kwargs[name]
    reverse = from_aio.sync.connection_pool
    assert reverse.connection_class is redis.connection.SSLConnection
    assert reverse.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
    for link in (from_sync, from_aio):
        await link.aclose()
        link.close()
    sync_user.close()
    await aio_user.aclose()


async def test_a_tls_setting_the_asyncio_form_lacks_is_refused_not_dropped() -> None:
    """OCSP validation exists only for sync TLS connections: the asyncio twin is refused
    with a ConfigurationError that names the setting and never the password."""
    user = redis.Redis(host="127.0.0.1", port=6380, password="s3cret", ssl=True)
    user.connection_pool.connection_kwargs["ssl_validate_ocsp"] = True
    link = RedisLink(user)
    assert link.sync.connection_pool.connection_kwargs["ssl_validate_ocsp"] is True
    with pytest.raises(ConfigurationError, match="ssl_validate_ocsp") as err:
        link.aio  # noqa: B018
    assert "s3cret" not in str(err.value)
    link.close()
    user.close()


async def test_unix_socket_clients_and_urls_keep_the_socket_path() -> None:
    """A unix-socket client or unix:// URL gives unix-socket connections in both forms."""
    for target in (redis.Redis(unix_socket_path="/tmp/r.sock", db=1), "unix:///tmp/r.sock?db=1"):
        link = RedisLink(target)
        for pool, cls in (
            (link.sync.connection_pool, redis.connection.UnixDomainSocketConnection),
            (link.aio.connection_pool, redis.asyncio.connection.UnixDomainSocketConnection),
        ):
            assert pool.connection_class is cls
            assert (pool.connection_kwargs["path"], pool.connection_kwargs["db"]) == (
                "/tmp/r.sock",
                1,
            )
        await link.aclose()
        link.close()


def test_what_cannot_be_copied_is_refused_at_construction() -> None:
    """A connection class we do not know, an object that is no client, a bad URL."""

    class Custom(redis.connection.Connection):
        pass

    custom = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=Custom))
    for target in (custom, object(), "http://not-redis"):
        with pytest.raises(ConfigurationError):
            RedisLink(target)  # type: ignore[arg-type]


# -- failing open ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (redis.exceptions.ConnectionError("refused"), True),
        (redis.exceptions.TimeoutError("timeout"), True),
        (ConnectionResetError(), True),
        (redis.exceptions.BusyLoadingError("LOADING"), True),
        (redis.exceptions.OutOfMemoryError("command not allowed"), True),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), True),
        (redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB"), True),
        (redis.exceptions.ResponseError("BUSY Redis is busy running a script"), True),
        (redis.exceptions.ResponseError("ERR user_script:1: Script attempted ..."), False),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key"), False),
        (redis.exceptions.DataError("Invalid input of type"), False),
    ],
)
def test_every_redis_error_is_a_failure_and_outages_are_told_apart(
    exc: BaseException, outage: bool
) -> None:
    """REDIS_FAILURES catches them all; is_outage separates "cannot serve" from our bugs."""
    assert isinstance(exc, REDIS_FAILURES)
    assert is_outage(exc) is outage


def test_a_stalled_redis_costs_bounded_waits_then_none(caplog: pytest.LogCaptureFixture) -> None:
    """Behind a caller's client with no socket timeout, a script call on a Redis that never
    answers gives up (None) within the link's timeout; after TIMEOUTS_TO_DOWN such stalls
    in a row the link is down and the next call does not wait at all. (One timeout used to
    mark the link down; one slow command no longer does, see the DEBUG SLEEP tests.)"""
    with stalled_redis() as port:
        user = redis.Redis(host="127.0.0.1", port=port)
        link = RedisLink(user, retry_interval=30, socket_timeout=0.2)
        with caplog.at_level(logging.WARNING, logger="tunegate.redis"):
            for _ in range(TIMEOUTS_TO_DOWN):
                assert link.available
                assert in_thread(lambda: link.run_script(ECHO, [], ["x"], "test")) is None
        assert not link.available
        assert link.run_script(ECHO, [], ["x"], "test") is None  # no further wait
        assert len(caplog.records) == 1
        link.close()
        user.close()


async def test_a_stalled_redis_is_bounded_for_asyncio_too() -> None:
    """The asyncio client gives up within the link's timeout as well, and the stalls in a
    row mark the link down the same way."""
    with stalled_redis() as port:
        user = redis.asyncio.Redis(host="127.0.0.1", port=port)
        link = RedisLink(user, retry_interval=30, socket_timeout=0.2)
        for _ in range(TIMEOUTS_TO_DOWN):
            reply = await asyncio.wait_for(link.arun_script(ECHO, [], ["x"], "test"), BOUND)
            assert reply is None
        assert not link.available
        await link.aclose()
        await user.aclose()


@pytest.mark.parametrize("sickness", SICKNESSES)
def test_a_redis_refusing_writes_marks_the_link_down(
    restartable_redis: RedisServer, sickness: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of memory or read-only is an outage: None, one warning, no calls for a while."""
    link = RedisLink(restartable_redis.url, retry_interval=30)
    cure = refusing_writes(restartable_redis, sickness)
    with caplog.at_level(logging.WARNING, logger="tunegate.redis"):
        assert link.run_script(WRITE, ["k"], ["1"], "test") is None
    assert not link.available
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    cure()
    link.close()


def test_a_script_error_falls_back_and_is_logged_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A key of the wrong type is a bug, not an outage: None each time, one error logged,
    and the link stays up for everything else."""
    link = RedisLink(redis_url)
    admin = redis.Redis.from_url(redis_url)
    admin.set("k", "a string, not a hash")
    with caplog.at_level(logging.WARNING, logger="tunegate.redis"):
        for _ in range(3):
            assert link.run_script(WRITE, ["k"], ["1"], "test") is None
    assert link.available
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert link.run_script(ECHO, [], ["x"], "test") == b"x"
    admin.close()
    link.close()


# -- asyncio clients live and die with their loop ----------------------------------------


def test_asyncio_run_cycles_do_not_pile_up_connections(restartable_redis: RedisServer) -> None:
    """20 asyncio.run() cycles through one link leave no connection behind: each loop's
    client is closed as its loop shuts down, and closed loops are forgotten."""
    link = RedisLink(restartable_redis.url)

    async def use() -> Any:
        return await link.arun_script(ECHO, [], ["x"], "test")

    for _ in range(20):
        assert asyncio.run(use()) == b"x"
    assert len(link._aio) <= 1
    assert server_clients(restartable_redis, 1) == 1  # only the one asking
    link.close()


def test_a_script_keeps_no_client_alive(redis_url: str) -> None:
    """LuaScript holds no reference to the clients it ran on (they can be collected)."""
    client = redis.Redis.from_url(redis_url)
    assert ECHO.run(client, [], ["x"]) == b"x"
    ref = weakref.ref(client)
    client.close()
    del client
    gc.collect()
    assert ref() is None


async def test_aclose_closes_the_running_loops_client_and_use_reopens_it(
    restartable_redis: RedisServer,
) -> None:
    """aclose() drops this loop's connection at once; the next call opens a new one."""
    link = RedisLink(restartable_redis.url)
    assert await link.aio.ping()
    assert server_clients(restartable_redis, 2) == 2
    await link.aclose()
    assert server_clients(restartable_redis, 1) == 1
    assert await link.aio.ping()
    await link.aclose()


# -- the two drivers ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Say(Effect):
    words: str

    def run(self) -> str:
        if self.words == "fail":
            raise KeyError("failed")
        return self.words.upper()

    async def arun(self) -> str:
        await asyncio.sleep(0)
        return self.run()


def _conversation() -> Flow[list[str]]:
    heard = [(yield _Say("hello"))]
    try:
        yield _Say("fail")
    except KeyError:  # an effect's exception is thrown into the flow, which may handle it
        heard.append((yield _Say("recovered")))
    return heard


async def test_both_drivers_run_a_flow_alike() -> None:
    """drive and adrive send results in, throw exceptions in, and return the flow's value."""
    assert drive(_conversation()) == ["HELLO", "RECOVERED"]
    assert await adrive(_conversation()) == ["HELLO", "RECOVERED"]


def test_a_flapping_redis_warns_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    """Outages that end and start again every second (reads work, writes fail) give one
    warning, not two a second; the recovery note is INFO."""
    import logging

    import redis.exceptions

    link = RedisLink("redis://127.0.0.1:1/0", retry_interval=0.0)
    caplog.set_level(logging.DEBUG, logger="tunegate.redis")
    for _ in range(20):
        link.mark_down(redis.exceptions.OutOfMemoryError("OOM"), "cache")
        link.mark_up()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert sum("reachable again" in r.getMessage() for r in caplog.records) == 20


# -- one Redis effect, Lua files called by SHA, one ownership rule ----------------------------

LUA_DIR = Path(tunegate.__file__).parent / "_lua"


def test_every_lua_script_is_a_file_made_once_and_called_by_its_sha() -> None:
    """Each file of tunegate/_lua is one LuaScript per process, named by the SHA1 of its text;
    no Python module of the package carries inline Lua."""
    files = sorted(LUA_DIR.glob("*.lua"))
    assert {f.name for f in files} >= {
        "breaker.lua",
        "token_bucket.lua",
        "singleflight_claim.lua",
        "singleflight_renew.lua",
        "singleflight_finish.lua",
        "singleflight_lookup_claim.lua",
        "lease_release.lua",
    }
    for f in files:
        script = lua(f.name)
        assert lua(f.name) is script
        assert script.sha == hashlib.sha1(f.read_bytes()).hexdigest()
    inline = [
        str(py.relative_to(LUA_DIR.parent))
        for py in LUA_DIR.parent.rglob("*.py")
        if "redis.call(" in py.read_text(encoding="utf-8")
    ]
    assert inline == []


def _calls(server: RedisServer, command: str) -> int:
    client = server.client()
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.mark.redis
async def test_a_script_runs_by_sha_and_is_loaded_again_after_a_flush(
    redis_server: RedisServer, redis_url: str
) -> None:
    """EVALSHA first; after SCRIPT FLUSH (a restart, a failover) NOSCRIPT loads it again and
    the call still answers, in both forms. The script's text is never sent with EVAL."""
    link = RedisLink(redis_url)
    release = lua("lease_release.lua")
    admin = redis_server.client()
    try:
        admin.config_resetstat()  # a private server: count this test's commands only
        admin.set("lease", "me")
        call = RedisCall(link, "test", script=release, keys=("lease",), args=("me",))
        admin.script_flush()
        assert call.run() == 1
        admin.set("lease", "me")
        admin.script_flush()
        assert await call.arun() == 1
        assert admin.get("lease") is None
        assert _calls(redis_server, "evalsha") >= 2
        assert _calls(redis_server, "eval") == 0
        assert admin.script_exists(release.sha) == [True]
    finally:
        admin.close()
        await link.aclose()
        link.close()


@pytest.mark.redis
async def test_a_command_and_a_script_share_one_fail_open_rule(redis_url: str) -> None:
    """One effect for commands and scripts: the reply, or its ``down`` value once Redis
    cannot serve; down, the link is not even asked until its retry interval passed."""
    link = RedisLink(redis_url)
    get = RedisCall(link, "test", command=("GET", "missing"), down=DOWN)
    try:
        assert get.run() is None  # a nil reply is a reply, not "down"
        assert await get.arun() is None
    finally:
        await link.aclose()
        link.close()
    with stalled_redis() as port:
        dead = RedisLink(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, retry_interval=60)
        try:
            calls = (
                RedisCall(dead, "test", command=("GET", "k"), down=DOWN),
                RedisCall(dead, "test", script=lua("lease_release.lua"), keys=("k",), args=("x",)),
            )
            for _ in range(TIMEOUTS_TO_DOWN):
                assert in_thread(calls[0].run) is DOWN
            assert not dead.available
            assert await asyncio.wait_for(calls[0].arun(), BOUND) is DOWN
            assert in_thread(calls[1].run) is None  # a script's default down value
        finally:
            dead.close()


def test_who_closes_a_link_is_decided_once(redis_url: str) -> None:
    """A link made from a client or a URL is the adopter's; a RedisLink handed in is not."""
    made, owned = RedisLink.adopt(redis_url)
    assert isinstance(made, RedisLink)
    assert owned
    given, owned = RedisLink.adopt(made)
    assert given is made
    assert not owned
    assert RedisLink.adopt(None) == (None, False)

    class Component(LinkOwner):
        def __init__(self, target: Any) -> None:
            self._adopt(target)

    made.sync.ping()
    Component(made).close()  # not its link: still open
    assert made._sync is not None
    mine = Component(redis_url)
    assert mine._link is not None
    mine._link.sync.ping()
    mine.close()
    assert mine._link._sync is None
    made.close()


@pytest.mark.redis
def test_an_error_reply_keeps_the_connection_and_a_timeout_drops_it(
    redis_server: RedisServer, redis_url: str
) -> None:
    """Sync commands bypass ``execute_command``, so the connection rules are ours: after an
    error reply (WRONGTYPE) the same pooled connection answers the next command in step;
    after a read that timed out mid-command it is disconnected, never handed back holding
    the late reply for the next caller."""
    link = RedisLink(redis_url, socket_timeout=0.2, retry_interval=0.05)
    admin = redis_server.client()
    try:
        admin.rpush("a list", "x")
        admin.set("plain", "v")
        get_list = RedisCall(link, "test", command=("GET", "a list"), down=DOWN)
        get_plain = RedisCall(link, "test", command=("GET", "plain"), down=DOWN)
        assert get_list.run() is DOWN  # WRONGTYPE: a bug in what we sent, falls back
        assert link.available  # not an outage
        idle = link._conns()._idle  # the link's own sync connections
        (conn,) = idle
        assert get_plain.run() == b"v"
        assert idle == [conn]
        slow = RedisCall(link, "test", command=("BLPOP", "nothing", 1), down=DOWN)
        assert slow.run() is DOWN  # the 0.2 s read timed out while Redis still waits
        assert conn._sock is None  # dropped, not pooled in step
        # Bounded poll of the server: no client blocked any more means BLPOP's nil reply was
        # sent (at 1 s, were the connection kept) or its connection closed (dropped at once).
        deadline = time.monotonic() + 5.0
        while admin.info("clients")["blocked_clients"] and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(link.retry_interval)  # the link tries Redis again after its interval
        assert get_plain.run() == b"v"  # a fresh connection, in step
    finally:
        admin.close()
        link.close()


# -- when the link goes down: stalls in a row, or no server at once ------------------------


class DebugRedisServer(RedisServer):
    """A private redis-server that takes ``DEBUG SLEEP`` (a pause of the whole server, as a
    slow command makes one). ``enable-debug-command`` is fixed at startup and
    tests/_redis_server.py starts servers without it, so the binary is a wrapper adding it."""

    def __init__(self) -> None:
        super().__init__()
        wrapper = self.dir / "redis-server-debug"
        wrapper.write_text(
            f'#!/bin/sh\nexec {shlex.quote(self.binary)} "$@" --enable-debug-command yes\n'
        )
        wrapper.chmod(0o755)
        self.binary = str(wrapper)


@pytest.fixture
def debug_redis() -> Iterator[DebugRedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed; .ci/run installs it with apt-get")
    server = DebugRedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


PAUSE = 1.0  # seconds DEBUG SLEEP holds the server: five times the links' socket timeout


@contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """The server busy with one slow command (DEBUG SLEEP) when the block starts (a probe
    of our own, not the link under test, has seen it stop answering); it answers again once
    the block ends."""
    admin = server.client()
    probe = server.client(socket_timeout=0.05, retry=redis.retry.Retry(NoBackoff(), 0))
    sleeper = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", PAUSE))
    sleeper.start()
    try:
        for _ in range(200):  # bounded: until the pause has begun
            try:
                probe.ping()
            except redis.exceptions.TimeoutError:
                break
            time.sleep(0.002)
        else:
            raise AssertionError("the server never paused")
        yield
    finally:
        sleeper.join(BOUND)
        admin.close()
        probe.close()
    assert not sleeper.is_alive()


def is_up(link: RedisLink) -> bool:
    return link.available


@pytest.mark.redis
def test_one_slow_command_does_not_take_the_link_down(debug_redis: DebugRedisServer) -> None:
    """Redis busy for 0.6 s (one slow command): the call in flight times out (0.2 s) and
    falls back, the link stays up, and the next call after the pause is served."""
    link = RedisLink(debug_redis.url, socket_timeout=0.2, retry_interval=60)
    ping = RedisCall(link, "test", command=("PING",), down=DOWN)
    try:
        assert ping.run() is True
        with paused(debug_redis):
            assert in_thread(ping.run) is DOWN
            assert link.available
        assert ping.run() is True
        assert link.available
    finally:
        link.close()


@pytest.mark.redis
async def test_commands_in_flight_during_one_stall_count_once(
    debug_redis: DebugRedisServer,
) -> None:
    """Under load, one pause times out every command in flight with it: they all fall back,
    and count as one stall, so the link stays up and serves them again after the pause."""
    link = RedisLink(debug_redis.url, socket_timeout=0.2, retry_interval=60)
    ping = RedisCall(link, "test", command=("PING",), down=DOWN)
    try:
        assert await ping.arun() is True
        with paused(debug_redis):
            replies = await asyncio.wait_for(
                asyncio.gather(*(ping.arun() for _ in range(8))), BOUND
            )
            assert replies == [DOWN] * 8
            assert link.available
        assert await asyncio.gather(*(ping.arun() for _ in range(8))) == [True] * 8
    finally:
        await link.aclose()
        link.close()


@pytest.mark.redis
def test_stalls_in_a_row_take_the_link_down_and_a_reply_between_them_does_not(
    debug_redis: DebugRedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """TIMEOUTS_TO_DOWN pauses with no reply in between mark the link down (one warning);
    the same number with a reply in between do not."""
    link = RedisLink(debug_redis.url, socket_timeout=0.2, retry_interval=60)
    ping = RedisCall(link, "test", command=("PING",), down=DOWN)
    try:
        for _ in range(TIMEOUTS_TO_DOWN - 1):
            with paused(debug_redis):
                assert in_thread(ping.run) is DOWN
        assert is_up(link)
        assert ping.run() is True  # a reply: the count starts again
        with caplog.at_level(logging.WARNING, logger="tunegate.redis"):
            for _ in range(TIMEOUTS_TO_DOWN):
                assert is_up(link)
                with paused(debug_redis):
                    assert in_thread(ping.run) is DOWN
        assert not is_up(link)
        assert ping.run() is DOWN  # not even asked while down
        assert [r.levelname for r in caplog.records] == ["WARNING"]
    finally:
        link.close()


@contextmanager
def resetting_server() -> Iterator[int]:
    """A port whose server accepts each connection and resets it at once."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    server.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # linger 0: RST

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(BOUND)
        server.close()


@pytest.mark.parametrize("where", ["refused", "reset"])
async def test_no_server_takes_the_link_down_at_once(where: str) -> None:
    """A refused connection (nothing listens) or a reset one is an outage from the first
    call, sync and asyncio: no stalls are counted."""
    with contextlib.ExitStack() as stack:
        port = free_port() if where == "refused" else stack.enter_context(resetting_server())
        for form in ("sync", "async"):
            link = RedisLink(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, retry_interval=60)
            ping = RedisCall(link, "test", command=("PING",), down=DOWN)
            try:
                if form == "sync":
                    assert in_thread(ping.run) is DOWN
                else:
                    assert await asyncio.wait_for(ping.arun(), BOUND) is DOWN
                assert not link.available, (where, form)
            finally:
                await link.aclose()
                link.close()
