"""Fixtures for the batching and staged-enrich tests: the emulator with its quotas lifted
(tests that need a quota set their own) and the sync/async client ``driver``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.clients.conftest import Driver
from tunegate.emulator import DEFAULT_LASTFM_KEY, Emulator, RateLimit


@pytest.fixture
def emulator_settings() -> dict[str, Any]:
    return {
        "catalog_size": 2_000,
        "lastfm_api_keys": [DEFAULT_LASTFM_KEY],
        "musicbrainz_rate": RateLimit(1000, 1.0),
        "lastfm_rate": RateLimit(1000, 1.0),
        "spotify_rate": RateLimit(10_000, 30.0),
    }


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest, emulator: Emulator) -> Iterator[Driver]:
    """Run the test once with the blocking clients and once with the asyncio clients."""
    d = Driver(str(request.param), emulator)
    yield d
    d.close()


@pytest.fixture(autouse=True)
def _no_url_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TUNEGATE_SPOTIFY_API_URL",
        "TUNEGATE_SPOTIFY_AUTH_URL",
        "TUNEGATE_MUSICBRAINZ_URL",
        "TUNEGATE_LASTFM_URL",
        "TUNEGATE_MUSICBRAINZ_RATE",
    ):
        monkeypatch.delenv(name, raising=False)
