"""The clients users call: Spotify, MusicBrainz and Last.fm, blocking and asyncio.

Every method validates its input before any network call, then goes through the provider's
request pipeline (cache, single-flight, circuit breaker, rate limiter, pooled HTTP,
retries). Sync and async classes share one implementation (``_base``) and behave the same;
every client takes one frozen :class:`ClientOptions` (or its fields as keywords).
See ``docs/clients.md``.
"""

from __future__ import annotations

from tunegate.clients._base import ClientOptions
from tunegate.clients.lastfm import AsyncLastFmClient, LastFmClient
from tunegate.clients.musicbrainz import (
    AsyncMusicBrainzClient,
    MusicBrainzClient,
    MusicBrainzOptions,
)
from tunegate.clients.settings import AsyncGateway, Gateway, Settings, clients_from_env
from tunegate.clients.spotify import AsyncSpotifyClient, SpotifyClient, SpotifyOptions

__all__ = [
    "AsyncGateway",
    "AsyncLastFmClient",
    "AsyncMusicBrainzClient",
    "AsyncSpotifyClient",
    "ClientOptions",
    "Gateway",
    "LastFmClient",
    "MusicBrainzClient",
    "MusicBrainzOptions",
    "Settings",
    "SpotifyClient",
    "SpotifyOptions",
    "clients_from_env",
]
