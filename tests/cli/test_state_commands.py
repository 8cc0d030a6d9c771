"""``tunegate cache`` and ``tunegate breaker`` on a SQLite file and a private Redis."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

from tunegate.breaker import CircuitBreakerRegistry
from tunegate.cache import CacheManager


def tg(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TUNEGATE_REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "tunegate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _fail() -> None:
    raise OSError("down")


def test_cache_commands_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with CacheManager.sqlite(db) as cm:
        cm.set(cm.key("spotify:search", "a"), {"x": 1})
        cm.set(cm.key("spotify:search", "b"), {"x": 2})
    assert "2 entries" in tg("cache", "stats", "--cache", str(db)).stdout
    assert tg("cache", "invalidate", "spotify:search:a*", "--cache", str(db)).stdout.strip() == (
        "1 entries deleted"
    )
    assert tg("cache", "clear", "--cache", str(db)).stdout.strip() == "1 entries deleted"
    assert "0 entries" in tg("cache", "stats", "--cache", str(db)).stdout
    missing = tg("cache", "stats", "--cache", str(tmp_path / "nope.db"))
    assert missing.returncode == 2
    assert "no such cache file" in missing.stderr


def test_cache_and_breaker_commands_on_redis(redis_url: str) -> None:
    with CacheManager(redis_url) as cm:
        cm.set(cm.key("spotify:search", "a"), {"x": 1})
        cm.set(cm.key("lastfm:tags", "b"), {"x": 2})
    stats = tg("cache", "stats", "--redis", redis_url).stdout
    assert "2 entries" in stats
    assert "  lastfm: 1\n" in stats
    assert "  spotify: 1\n" in stats
    assert tg("cache", "invalidate", "lastfm:*", "--redis", redis_url).stdout.strip() == (
        "1 entries deleted"
    )
    # cache_ttl=0: this process reads Redis on every look, so the reset made by the other
    # process is seen however fast the two subprocesses ran (the default trusts 1 s).
    registry = CircuitBreakerRegistry(redis=redis_url, cache_ttl=0)
    try:
        breaker = registry.register("lastfm", failure_threshold=1)
        with contextlib.suppress(OSError):
            breaker.call(_fail)
        assert "lastfm            open" in tg("breaker", "status", "--redis", redis_url).stdout
        reset = tg("breaker", "reset", "lastfm", "--redis", redis_url)
        assert reset.stdout.strip() == "lastfm closed", reset.stderr
        assert breaker.state.value == "closed"
    finally:
        registry.close()
    assert tg("breaker", "reset", "nosuch", "--redis", redis_url).returncode == 2
    assert tg("breaker", "status").returncode == 2


def test_unreachable_redis_is_an_error_not_the_local_fallback() -> None:
    """Without Redis the library falls back to local state; an admin command must say
    Redis is unreachable (exit 2) instead of reporting that state as the shared one."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://:pw-CANARY-71@127.0.0.1:{port}/0"
    for args in (
        ("cache", "stats"),
        ("cache", "invalidate", "lastfm:*"),
        ("cache", "clear"),
        ("breaker", "status"),
        ("breaker", "reset", "lastfm"),
    ):
        out = tg(*args, "--redis", url)
        assert out.returncode == 2, (args, out.stdout)
        assert out.stderr.startswith("error: redis unreachable"), (args, out.stderr)
        assert "Traceback" not in out.stderr
        assert "CANARY" not in out.stderr + out.stdout
        assert "closed" not in out.stdout
        assert "deleted" not in out.stdout
