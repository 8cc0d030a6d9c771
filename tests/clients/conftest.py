"""Fixtures for the client tests: the emulator's settings, and a ``driver`` that runs the same
test through the blocking clients and through the asyncio ones."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry

from tunegate._http import HttpConfig
from tunegate._policy.retry import RetryPolicy
from tunegate.cache import CacheManager
from tunegate.clients import (
    AsyncLastFmClient,
    AsyncMusicBrainzClient,
    AsyncSpotifyClient,
    LastFmClient,
    MusicBrainzClient,
    SpotifyClient,
)
from tunegate.clients._base import ClientBase
from tunegate.emulator import (
    DEFAULT_LASTFM_KEY,
    DEFAULT_SPOTIFY_CLIENT_ID,
    DEFAULT_SPOTIFY_CLIENT_SECRET,
    Emulator,
    RateLimit,
)

FAST_HTTP = HttpConfig(connect_timeout=1.0, read_timeout=2.0, total_timeout=3.0)
FAST_RETRY = RetryPolicy(max_attempts=3, base=0.01, cap=0.05, deadline=5.0)
AGENT = "TunegateTests/1.0 ( tests@example.com )"

# The design's placeholder credentials are accepted too, so its examples run unchanged.
DESIGN_CLIENTS = {
    DEFAULT_SPOTIFY_CLIENT_ID: DEFAULT_SPOTIFY_CLIENT_SECRET,
    "your_spotify_client_id": "your_spotify_client_secret",
    "test_id": "test_secret",
}


@pytest.fixture(autouse=True)
def _no_url_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients read TUNEGATE_*_URL; a developer's own settings must not leak in."""
    for name in (
        "TUNEGATE_SPOTIFY_API_URL",
        "TUNEGATE_SPOTIFY_AUTH_URL",
        "TUNEGATE_MUSICBRAINZ_URL",
        "TUNEGATE_LASTFM_URL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emulator_settings() -> dict[str, Any]:
    """Settings of the ``emulator`` fixture: the design's credentials, generous quotas (tests
    that need a quota set their own)."""
    return {
        "catalog_size": 2_000,
        "spotify_clients": DESIGN_CLIENTS,
        "lastfm_api_keys": [DEFAULT_LASTFM_KEY, "your_lastfm_api_key"],
        "musicbrainz_rate": RateLimit(1000, 1.0),
        "lastfm_rate": RateLimit(1000, 1.0),
    }


class Driver:
    """Builds clients of one kind (``sync`` or ``async``) against an emulator and calls their
    methods; async calls run on one loop that lives for the whole test."""

    CLASSES: ClassVar[dict[str, tuple[type[Any], type[Any], type[Any]]]] = {
        "sync": (SpotifyClient, MusicBrainzClient, LastFmClient),
        "async": (AsyncSpotifyClient, AsyncMusicBrainzClient, AsyncLastFmClient),
    }

    def __init__(self, kind: str, emulator: Emulator) -> None:
        self.kind = kind
        self.emulator = emulator
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self.clients: list[ClientBase] = []
        self.closers: list[CacheManager] = []

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.setdefault("base_url", self.emulator.urls.root)
        kwargs.setdefault("http", FAST_HTTP)
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("registry", CollectorRegistry())
        return kwargs

    def _keep(self, client: Any) -> Any:
        self.clients.append(client)
        return client

    def spotify(self, *credentials: str, **kwargs: Any) -> Any:
        creds = credentials or (DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET)
        return self._keep(self.CLASSES[self.kind][0](*creds, **self._options(kwargs)))

    def musicbrainz(self, user_agent: str = AGENT, **kwargs: Any) -> Any:
        kwargs.setdefault("rate", 100.0)  # the emulator is a mirror: it may go fast
        return self._keep(self.CLASSES[self.kind][1](user_agent, **self._options(kwargs)))

    def lastfm(self, api_key: str = DEFAULT_LASTFM_KEY, **kwargs: Any) -> Any:
        kwargs.setdefault("rate", 100.0)
        return self._keep(self.CLASSES[self.kind][2](api_key, **self._options(kwargs)))

    def call(self, client: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.method(*args, **kwargs)``, awaited when the client is async."""
        result = getattr(client, method)(*args, **kwargs)
        if self.loop is None:
            return result
        return self.loop.run_until_complete(result)

    def catch(self, client: Any, method: str, *args: Any, **kwargs: Any) -> BaseException:
        """The exception the call raises (fails the test when it returns)."""
        try:
            value = self.call(client, method, *args, **kwargs)
        except Exception as exc:
            return exc
        pytest.fail(f"expected an error, got {value!r}")

    def many(self, client: Any, method: str, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The calls at once: threads for sync clients, tasks for async ones."""
        return self.together([(client, method, args) for args in calls])

    def together(
        self, calls: Sequence[tuple[Any, str, tuple[Any, ...]]], errors: bool = False
    ) -> list[Any]:
        """``(client, method, args)`` calls at once, on any mix of clients; with ``errors``,
        exceptions are returned in place of results instead of raised."""
        if self.loop is None:
            with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
                futures = [pool.submit(getattr(c, m), *args) for c, m, args in calls]
                concurrent.futures.wait(futures, timeout=30)
                if errors:
                    return [f.exception() or f.result() for f in futures]
                return [f.result(timeout=0) for f in futures]

        async def gather() -> list[Any]:
            coros = (getattr(c, m)(*a) for c, m, a in calls)
            return list(await asyncio.gather(*coros, return_exceptions=errors))

        return self.loop.run_until_complete(gather())

    def cache(self, redis_url: str | None = None, **kwargs: Any) -> CacheManager:
        """A cache closed with the clients (its Redis connections on the test's loop)."""
        cache = CacheManager(redis_url, **kwargs)
        self.closers.append(cache)
        return cache

    def run(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` and await what it returns when async (for one-off coroutines)."""
        result = fn()
        return result if self.loop is None else self.loop.run_until_complete(result)

    def close(self) -> None:
        if self.loop is None:
            for client in self.clients:
                client.close()  # type: ignore[attr-defined]
            for cache in self.closers:
                cache.close()
            return
        for client in self.clients:
            self.loop.run_until_complete(client.aclose())  # type: ignore[attr-defined]
        for cache in self.closers:
            self.loop.run_until_complete(cache.aclose())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest, emulator: Emulator) -> Iterator[Driver]:
    """Run the test once with the blocking clients and once with the asyncio clients."""
    d = Driver(str(request.param), emulator)
    yield d
    d.close()


def requests_to(emulator: Emulator, provider: str, endpoint: str | None = None) -> int:
    """How many requests the emulator answered for ``provider`` (and ``endpoint``)."""
    entry = emulator.stats()["requests"].get(provider)
    if entry is None:
        return 0
    if endpoint is None:
        return int(entry["total"])
    return int(entry["endpoints"].get(endpoint, {}).get("total", 0))


def statuses(emulator: Emulator, provider: str, endpoint: str) -> dict[str, int]:
    entry = emulator.stats()["requests"].get(provider, {})
    return dict(entry.get("endpoints", {}).get(endpoint, {}).get("by_status", {}))
