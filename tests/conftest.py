"""Fixtures shared by the whole suite: private Redis servers and a fake clock."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests._redis_server import RedisServer

# One reproducible example set per run, and no "too slow" errors on this shared 2-core
# machine: property tests should fail on properties, not on the machine's load.
settings.register_profile(
    "tunegate",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("tunegate")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the whole session; flushed before every test that uses it."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed; .ci/run installs it with apt-get")
    server = RedisServer()
    server.start()
    yield server
    server.close()  # and its directory


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def restartable_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop() and start() again."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed; .ci/run installs it with apt-get")
    server = RedisServer()
    server.start()
    yield server
    server.close()  # and its directory


@pytest.fixture
def shared_fixtures() -> Path:
    """``../shared/fixtures/real``: recorded real responses, absent from a user's clone."""
    path = SHARED / "fixtures" / "real"
    if not path.is_dir():
        pytest.skip("../shared/fixtures/real is absent (only the project's workplace has it)")
    return path
