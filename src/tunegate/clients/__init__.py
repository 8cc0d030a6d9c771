"""The clients users call: Spotify, MusicBrainz and Last.fm, blocking and asyncio.

Every method validates its input before any network call, then goes through the provider's
request pipeline (cache, single-flight, circuit breaker, rate limiter, pooled HTTP,
retries). Sync and async classes share one implementation (``_base``) and behave the same.
See ``docs/clients.md``.
"""

from __future__ import annotations

from tunegate.clients.lastfm import AsyncLastFmClient, LastFmClient
from tunegate.clients.musicbrainz import AsyncMusicBrainzClient, MusicBrainzClient
from tunegate.clients.settings import AsyncGateway, Gateway, Settings, clients_from_env
from tunegate.clients.spotify import AsyncSpotifyClient, SpotifyClient

__all__ = [
    "AsyncGateway",
    "AsyncLastFmClient",
    "AsyncMusicBrainzClient",
    "AsyncSpotifyClient",
    "Gateway",
    "LastFmClient",
    "MusicBrainzClient",
    "Settings",
    "SpotifyClient",
    "clients_from_env",
]
