"""Settings from the environment, and Gateway / AsyncGateway: the three clients over one
cache, one limiter and one breaker registry."""

from __future__ import annotations

import asyncio

import pytest

from tests.clients.conftest import AGENT, requests_to
from tunegate.clients import (
    AsyncGateway,
    AsyncSpotifyClient,
    Gateway,
    LastFmClient,
    Settings,
    SpotifyClient,
    clients_from_env,
)
from tunegate.emulator import (
    DEFAULT_LASTFM_KEY,
    DEFAULT_SPOTIFY_CLIENT_ID,
    DEFAULT_SPOTIFY_CLIENT_SECRET,
    Emulator,
)
from tunegate.exceptions import ConfigurationError


def env_for(emulator: Emulator, **extra: str) -> dict[str, str]:
    return {
        "SPOTIFY_CLIENT_ID": DEFAULT_SPOTIFY_CLIENT_ID,
        "SPOTIFY_CLIENT_SECRET": DEFAULT_SPOTIFY_CLIENT_SECRET,
        "MUSICBRAINZ_USER_AGENT": AGENT,
        "LASTFM_API_KEY": DEFAULT_LASTFM_KEY,
        "TUNEGATE_SPOTIFY_API_URL": emulator.urls.spotify,
        "TUNEGATE_SPOTIFY_AUTH_URL": emulator.urls.spotify_token,
        "TUNEGATE_MUSICBRAINZ_URL": emulator.urls.musicbrainz,
        "TUNEGATE_LASTFM_URL": emulator.urls.lastfm,
        "TUNEGATE_MUSICBRAINZ_RATE": "50",
        **extra,
    }


def test_settings_read_the_environment_and_hide_secrets() -> None:
    """Every variable is read, blanks count as unset, secrets stay out of repr."""
    settings = Settings.from_env(
        {
            "SPOTIFY_CLIENT_ID": "the-id",
            "SPOTIFY_CLIENT_SECRET": "the-secret",
            "LASTFM_API_KEY": " the-key\n",
            "MUSICBRAINZ_USER_AGENT": "  ",
            "TUNEGATE_REDIS_URL": "redis://:pw@127.0.0.1:1/0",
            "TUNEGATE_MUSICBRAINZ_RATE": "2.5",
        }
    )
    assert (settings.spotify_client_id, settings.lastfm_api_key) == ("the-id", "the-key")
    assert settings.musicbrainz_user_agent is None
    assert settings.musicbrainz_rate == 2.5
    text = repr(settings)
    assert "the-secret" not in text
    assert "the-key" not in text
    assert "pw@" not in text
    with pytest.raises(ConfigurationError, match="TUNEGATE_MUSICBRAINZ_RATE"):
        Settings.from_env({"TUNEGATE_MUSICBRAINZ_RATE": "fast"})


def test_gateway_from_env_shares_its_components(emulator: Emulator) -> None:
    """The three clients work against the emulator and share the cache, limiter and the
    registry's breakers, which carry the design's thresholds; the Spotify accounts
    service's breaker is in the registry too."""
    with Gateway.from_env(env_for(emulator)) as gw:
        assert isinstance(gw.spotify, SpotifyClient)
        track = gw.spotify.search_track("Deadmau5", "Strobe")
        assert track is not None
        assert track["name"] == "Strobe"
        recording = gw.musicbrainz.get_recording(emulator.describe_track(0)["mbid"])
        assert recording is not None
        assert recording["title"] == "Strobe"
        assert gw.lastfm.get_track_tags("Deadmau5", "Strobe")[0] == "progressive house"
        for client in (gw.spotify, gw.musicbrainz, gw.lastfm):
            assert client.cache_manager is gw.cache
            assert client.rate_limiter is gw.limiter
            assert client.circuit_breaker is gw.breakers[client.spec.name]
        thresholds = {
            name: (b.config.failure_threshold, b.config.timeout, b.config.success_threshold)
            for name, b in gw.breakers.breakers.items()
        }
        assert thresholds == {
            "spotify": (5, 60.0, 2),
            "spotify:accounts": (5, 60.0, 2),
            "musicbrainz": (3, 30.0, 2),
            "lastfm": (5, 60.0, 2),
        }
        assert gw.spotify.accounts_breaker is gw.breakers["spotify:accounts"]
        assert gw.limiter.get_stats()["musicbrainz"]["rate"] == 50.0  # a mirror may go fast
        stats = gw.get_stats()
        assert set(stats) == {"spotify", "musicbrainz", "lastfm", "cache"}
        assert stats["cache"]["misses"] == 3


def test_missing_provider_is_named_when_used(emulator: Emulator) -> None:
    """A provider without its variables is not built; using it says what to set."""
    env = env_for(emulator)
    del env["SPOTIFY_CLIENT_SECRET"], env["LASTFM_API_KEY"]
    gw = clients_from_env(env)
    try:
        with pytest.raises(ConfigurationError, match="SPOTIFY_CLIENT_SECRET"):
            _ = gw.spotify
        with pytest.raises(ConfigurationError, match="LASTFM_API_KEY"):
            _ = gw.lastfm
        assert gw.musicbrainz.user_agent == AGENT
        assert repr(gw) == "<Gateway musicbrainz>"
    finally:
        gw.close()


def test_bad_settings_fail_at_construction() -> None:
    """A malformed User-Agent or a fast rate against the official host fails at once."""
    with pytest.raises(ConfigurationError, match="AppName"):
        Gateway(Settings(musicbrainz_user_agent="python-requests/2.0"))
    with pytest.raises(ConfigurationError, match="allow_fast"):
        Gateway(Settings(musicbrainz_user_agent=AGENT, musicbrainz_rate=5.0))


def test_async_gateway(emulator: Emulator) -> None:
    """AsyncGateway gives the asyncio clients, closed with ``async with``."""

    async def main() -> list[str]:
        async with AsyncGateway.from_env(env_for(emulator)) as gw:
            assert isinstance(gw.spotify, AsyncSpotifyClient)
            track, tags = await asyncio.gather(
                gw.spotify.search_track("Deadmau5", "Strobe"),
                gw.lastfm.get_track_tags("Deadmau5", "Strobe"),
            )
            return [track["name"], tags[0]]

    assert asyncio.run(main()) == ["Strobe", "progressive house"]


@pytest.mark.redis
def test_gateways_share_through_redis(emulator: Emulator, redis_url: str) -> None:
    """With TUNEGATE_REDIS_URL two gateways (two workers) share the cache and the token."""
    env = env_for(emulator, TUNEGATE_REDIS_URL=redis_url)
    with Gateway.from_env(env) as one, Gateway.from_env(env) as two:
        assert repr(one).endswith("shared via Redis>")
        assert one.spotify.search_track("Deadmau5", "Strobe") is not None
        assert two.spotify.search_track("Deadmau5", "Strobe") is not None
        assert requests_to(emulator, "spotify", "search") == 1
        assert two.get_stats()["spotify"]["cache_hits"] == 1
        assert two.lastfm.get_track_tags("Deadmau5", "Strobe")
        assert requests_to(emulator, "spotify", "token") == 1


def test_client_reads_base_url_from_environment(
    monkeypatch: pytest.MonkeyPatch, emulator: Emulator
) -> None:
    """Without ``base_url`` a client uses the TUNEGATE_*_URL variable, else the official host."""
    assert LastFmClient("your_lastfm_api_key").base_url == "https://ws.audioscrobbler.com"
    monkeypatch.setenv("TUNEGATE_LASTFM_URL", emulator.urls.lastfm)
    with LastFmClient(DEFAULT_LASTFM_KEY) as client:
        assert client.base_url == emulator.urls.root
        assert client.get_artist_tags("Audioslave")[0] == "rock"
