"""tests/_redis_server.py, the private-server helper: its extra redis-server arguments."""

from __future__ import annotations

import shutil

import pytest

from tests._redis_server import RedisServer

pytestmark = pytest.mark.redis

if shutil.which("redis-server") is None:
    pytest.skip(
        "redis-server binary not installed; .ci/run installs it with apt-get",
        allow_module_level=True,
    )


def test_extra_args_are_given_at_every_start() -> None:
    """Settings only a command line can make (enable-debug-command) and ordinary ones
    (maxmemory) are in force, and again after stop() and start()."""
    with RedisServer(extra_args=("--maxmemory", "1mb", "--enable-debug-command", "yes")) as server:
        for _ in range(2):
            admin = server.client()
            try:
                assert admin.config_get("maxmemory") == {"maxmemory": "1048576"}
                assert admin.execute_command("DEBUG", "SLEEP", "0") == b"OK"  # type: ignore[no-untyped-call]
            finally:
                admin.close()
            server.stop()
            server.start()


def test_an_argument_the_server_refuses_is_reported() -> None:
    server = RedisServer(extra_args=("--no-such-setting", "1"))
    try:
        with pytest.raises(RuntimeError, match="exited"):
            server.start()
    finally:
        server.close()
