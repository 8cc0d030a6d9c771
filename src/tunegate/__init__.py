"""tunegate: a resilient gateway to the Spotify, MusicBrainz and Last.fm APIs."""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CircuitBreakerOpenError",
    "ConfigurationError",
    "InvalidInput",
    "MalformedResponse",
    "NotFound",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimitTimeout",
    "RateLimited",
    "TunegateError",
]
