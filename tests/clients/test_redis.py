"""The clients with a real Redis: the Spotify token shared by every worker (one fetch, one
refresh), nothing secret in any key, and carrying on when Redis is down."""

from __future__ import annotations

import time

import pytest
import redis

from tests._redis_server import RedisServer
from tests.clients.conftest import Driver, requests_to
from tunegate.clients import SpotifyClient
from tunegate.clients._token import KEY_PREFIX
from tunegate.emulator import DEFAULT_LASTFM_KEY, DEFAULT_SPOTIFY_CLIENT_SECRET, Emulator

pytestmark = pytest.mark.redis


def track_id(emulator: Emulator, i: int) -> str:
    return str(emulator.describe_track(i)["spotify_id"])


def test_workers_share_one_token_and_one_refresh(
    driver: Driver, emulator: Emulator, redis_url: str
) -> None:
    """Two workers (clients with their own connections) fetch one token between them; after
    it expires, the first to hear 401 refreshes and the other takes the new one from Redis."""
    a = driver.spotify(cache_manager=driver.cache(redis_url))
    b = driver.spotify(cache_manager=driver.cache(redis_url))
    driver.call(a, "get_track", track_id(emulator, 0))
    driver.call(b, "get_track", track_id(emulator, 1))
    assert requests_to(emulator, "spotify", "token") == 1
    assert b.get_stats()["token"]["from_shared"] == 1
    emulator.expire_tokens()
    assert driver.call(a, "get_track", track_id(emulator, 2)) is not None
    assert driver.call(b, "get_track", track_id(emulator, 3)) is not None
    assert requests_to(emulator, "spotify", "token") == 2
    token = b.get_stats()["token"]
    assert (token["fetched"], token["from_shared"], token["rejected"]) == (0, 2, 1)


def test_workers_starting_together_fetch_one_token(
    driver: Driver, emulator: Emulator, redis_url: str
) -> None:
    """Four workers starting at once: one takes the lease and fetches, the others wait for
    its token in Redis."""
    workers = [driver.spotify(cache_manager=driver.cache(redis_url)) for _ in range(4)]
    calls = [(w, "get_track", (track_id(emulator, i),)) for i, w in enumerate(workers)]
    assert all(t is not None for t in driver.together(calls))
    assert requests_to(emulator, "spotify", "token") == 1


def test_no_secret_in_any_redis_key(driver: Driver, emulator: Emulator, redis_url: str) -> None:
    """Keys name neither the client id nor the secret, the token or the API key."""
    cache = driver.cache(redis_url)
    spotify = driver.spotify(cache_manager=cache)
    lastfm = driver.lastfm(cache_manager=cache)
    driver.call(spotify, "search_track", "Deadmau5", "Strobe")
    driver.call(lastfm, "get_track_tags", "Deadmau5", "Strobe")
    token = spotify._tokens._token.access_token
    admin = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in admin.scan_iter(count=1000)]
    admin.close()
    assert any(k.startswith(KEY_PREFIX) for k in keys)
    assert any("lastfm:track_tags" in k for k in keys)
    for key in keys:
        for secret in (
            "tunegate-test-id",
            DEFAULT_SPOTIFY_CLIENT_SECRET,
            DEFAULT_LASTFM_KEY,
            token,
        ):
            assert secret not in key


def test_redis_down_means_a_token_of_our_own(emulator: Emulator) -> None:
    """With Redis unreachable the client fetches and keeps its own token; calls succeed."""
    server = RedisServer()  # never started: connections are refused
    with SpotifyClient(
        "tunegate-test-id",
        DEFAULT_SPOTIFY_CLIENT_SECRET,
        base_url=emulator.urls.root,
        redis=server.url,
    ) as client:
        assert client.get_track(track_id(emulator, 0)) is not None
        assert client.get_track(track_id(emulator, 1)) is not None
        assert client.get_stats()["token"]["fetched"] == 1


def test_use_cache_false_asks_the_provider_with_a_redis_cache(
    emulator: Emulator, redis_url: str
) -> None:
    """``use_cache=False`` reaches the provider even right after the same call."""
    from tunegate.cache import CacheManager

    with (
        CacheManager(redis_url) as cache,
        SpotifyClient(
            "tunegate-test-id",
            DEFAULT_SPOTIFY_CLIENT_SECRET,
            cache_manager=cache,
            base_url=emulator.urls.root,
        ) as client,
    ):
        client.search_track("Deadmau5", "Strobe")
        start = time.monotonic()
        client.search_track("Deadmau5", "Strobe", use_cache=False)
        assert time.monotonic() - start < 2.0  # inside the publish window, for the record
        assert requests_to(emulator, "spotify", "search") == 2


def test_async_client_closes_every_redis_connection_it_opened(
    emulator: Emulator, redis_url: str
) -> None:
    """An async client given a Redis URL owns its link: after a miss (whose after-answer work
    runs on the backlog's worker through the link's sync client) ``aclose`` leaves no
    connection of ours on the server."""
    import asyncio

    from tunegate.clients import AsyncLastFmClient

    admin = redis.Redis.from_url(redis_url)
    try:
        before = len(admin.client_list())

        async def run() -> None:
            client = AsyncLastFmClient(
                DEFAULT_LASTFM_KEY, base_url=emulator.urls.root, redis=redis_url, rate=100.0
            )
            assert await client.get_track_tags("Deadmau5", "Strobe") is not None
            await client.aclose()

        asyncio.run(run())
        assert len(admin.client_list()) == before
    finally:
        admin.close()
