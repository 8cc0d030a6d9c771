"""The service in-process against the emulator: a gateway built from the emulator's
settings, an app that owns it, and Starlette's TestClient (a real ASGI lifespan and event
loop; no socket, which a test of routing and mapping does not need)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the service needs the 'serve' extra")

from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from tunegate._http import HttpConfig
from tunegate._policy.retry import RetryPolicy
from tunegate.clients import AsyncGateway, Settings
from tunegate.emulator import Emulator, RateLimit
from tunegate.emulator.catalog import Catalog
from tunegate.service import ServiceOptions, create_app

FAST_HTTP = HttpConfig(connect_timeout=1.0, read_timeout=2.0, total_timeout=3.0)
FAST_RETRY = RetryPolicy(max_attempts=2, base=0.01, cap=0.05, deadline=5.0)
ADMIN_TOKEN = "canary-admin-token-7f3a9c1e5b"  # must never show up anywhere but the header


@pytest.fixture(autouse=True)
def _no_url_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TUNEGATE_SPOTIFY_API_URL",
        "TUNEGATE_SPOTIFY_AUTH_URL",
        "TUNEGATE_MUSICBRAINZ_URL",
        "TUNEGATE_LASTFM_URL",
        "TUNEGATE_ADMIN_TOKEN",
        "TUNEGATE_REDIS_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emulator_settings() -> dict[str, Any]:
    return {
        "catalog_size": 2_000,
        "musicbrainz_rate": RateLimit(1000, 1.0),
        "lastfm_rate": RateLimit(1000, 1.0),
    }


def emulator_settings_of(emulator: Emulator, **extra: Any) -> Settings:
    env = dict(emulator.env())
    settings = Settings.from_env(env)
    if extra:
        from dataclasses import replace

        settings = replace(settings, **extra)
    return settings


Factory = Callable[..., contextlib.AbstractContextManager[TestClient]]


@pytest.fixture
def service(emulator: Emulator) -> Factory:
    """``with service(**gateway_options) as client:`` a TestClient over an app whose
    gateway points at the emulator (``options=ServiceOptions(...)`` for the service)."""

    @contextlib.contextmanager
    def make(
        *, options: ServiceOptions | None = None, settings: Settings | None = None, **gw: Any
    ) -> Iterator[TestClient]:
        registry = CollectorRegistry()
        gw.setdefault("http", FAST_HTTP)
        gw.setdefault("retry", FAST_RETRY)
        gateway = AsyncGateway(settings or emulator_settings_of(emulator), registry=registry, **gw)
        opts = options or ServiceOptions(admin_token=ADMIN_TOKEN, registry=registry)
        app = create_app(gateway, options=opts, owns_gateway=True)
        with TestClient(app, raise_server_exceptions=True) as client:
            yield client

    return make


def known_track(cat: Catalog, skip: int = 0) -> dict[str, str]:
    """The ``skip``-th track every provider knows (Spotify, MusicBrainz, Last.fm)."""
    seen = 0
    for i in range(cat.size):
        t = cat.track(i)
        if t.spotify_id and t.mbid and t.on_lastfm:
            if seen == skip:
                return {
                    "artist": cat.artist(t.artists[0]).name,
                    "title": t.title,
                    "id": t.spotify_id,
                    "isrc": t.isrc,
                    "mbid": t.mbid,
                }
            seen += 1
    raise LookupError("no such track in the catalogue")


@pytest.fixture
def track(emulator: Emulator) -> dict[str, str]:
    return known_track(emulator.catalog)
