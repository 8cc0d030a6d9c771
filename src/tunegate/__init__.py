"""tunegate: a resilient gateway to the Spotify, MusicBrainz and Last.fm APIs."""

from __future__ import annotations

from tunegate.breaker import CircuitBreaker, CircuitBreakerRegistry, CircuitState
from tunegate.cache import CacheEntry, CacheManager
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
from tunegate.ratelimit import RateLimiter, TokenBucket
from tunegate.retry import RetryBudget, Retrying, RetryPolicy, retry

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CacheEntry",
    "CacheManager",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "CircuitBreakerRegistry",
    "CircuitState",
    "ConfigurationError",
    "InvalidInput",
    "MalformedResponse",
    "NotFound",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimitTimeout",
    "RateLimited",
    "RateLimiter",
    "RetryBudget",
    "RetryPolicy",
    "Retrying",
    "TokenBucket",
    "TunegateError",
    "retry",
]
