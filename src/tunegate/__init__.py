"""tunegate: a resilient gateway to the Spotify, MusicBrainz and Last.fm APIs."""

from __future__ import annotations

from tunegate._http import HttpConfig
from tunegate.breaker import CircuitBreaker, CircuitBreakerRegistry, CircuitState
from tunegate.cache import CacheEntry, CacheManager
from tunegate.clients import (
    AsyncGateway,
    AsyncLastFmClient,
    AsyncMusicBrainzClient,
    AsyncSpotifyClient,
    ClientOptions,
    Gateway,
    LastFmClient,
    MusicBrainzClient,
    Settings,
    SpotifyClient,
    clients_from_env,
)
from tunegate.deadlines import deadline
from tunegate.exceptions import (
    AuthenticationError,
    CircuitBreakerOpenError,
    ConfigurationError,
    InvalidInput,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RateLimitTimeout,
    TunegateError,
)
from tunegate.observability import JsonFormatter, correlation_id, track_sources
from tunegate.pipeline import Pipeline
from tunegate.providers.spec import ProviderSpec
from tunegate.ratelimit import RateLimiter, TokenBucket, caller
from tunegate.retry import RetryBudget, Retrying, RetryPolicy, retry

__version__ = "0.1.0"

__all__ = [
    "AsyncGateway",
    "AsyncLastFmClient",
    "AsyncMusicBrainzClient",
    "AsyncSpotifyClient",
    "AuthenticationError",
    "CacheEntry",
    "CacheManager",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "CircuitBreakerRegistry",
    "CircuitState",
    "ClientOptions",
    "ConfigurationError",
    "Gateway",
    "HttpConfig",
    "InvalidInput",
    "JsonFormatter",
    "LastFmClient",
    "MalformedResponse",
    "MusicBrainzClient",
    "NotFound",
    "Pipeline",
    "ProviderError",
    "ProviderSpec",
    "ProviderUnavailable",
    "RateLimitTimeout",
    "RateLimited",
    "RateLimiter",
    "RetryBudget",
    "RetryPolicy",
    "Retrying",
    "Settings",
    "SpotifyClient",
    "TokenBucket",
    "TunegateError",
    "caller",
    "clients_from_env",
    "correlation_id",
    "deadline",
    "retry",
    "track_sources",
]
