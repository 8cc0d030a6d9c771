"""Every error tunegate raises, in one tree.

::

    TunegateError
    ├── ConfigurationError (ValueError)  bad settings, caught at construction
    ├── InvalidInput (ValueError)        bad user data, caught before any network call; .field
    ├── RateLimitTimeout                 our bucket would make the caller wait too long
    ├── CircuitBreakerOpenError          the breaker refused the call; .provider .retry_at
    └── ProviderError                    the provider (or the way to it) failed; .provider ...
        ├── NotFound                     404 or the provider's own "no such thing"
        ├── AuthenticationError          bad or expired credentials (401/403, Last.fm 10, 26)
        ├── RateLimited                  429 or the provider's quota signal; .retry_after
        ├── ProviderUnavailable          5xx, timeouts, connection failures, outages
        └── MalformedResponse            unreadable: bad JSON, truncated, wrong type, too big

What each error means for retries, the breaker, stale-if-error and single-flight is one
table: :func:`tunegate._policy.errors.meaning`.

Rules: foreign exceptions (httpx, aiohttp, redis) are mapped once, at the boundary, and
raised ``from`` the original; no name shadows a builtin; every error pickles; no message
ever contains a secret (tokens, client secrets, API keys): messages are built from
templated endpoints and statuses only.
"""

from __future__ import annotations

from typing import Any

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


class TunegateError(Exception):
    """Root of every error tunegate raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes do not survive the default Exception pickling.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[TunegateError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class ConfigurationError(TunegateError, ValueError):
    """Settings that cannot work (a negative rate, an unknown provider, a missing credential)."""


class InvalidInput(TunegateError, ValueError):
    """User data rejected before any network call; ``field`` names the offending argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RateLimitTimeout(TunegateError):
    """The local or shared token bucket could not grant a token within the caller's timeout."""

    def __init__(self, provider: str, retry_after: float) -> None:
        super().__init__(
            f"{provider}: no rate-limit token within the timeout; next token in {retry_after:.3f}s"
        )
        self.provider = provider
        self.retry_after = retry_after


class CircuitBreakerOpenError(TunegateError):
    """The provider's circuit breaker is open (or its half-open probe slots are taken).

    ``retry_at`` is a wall-clock UNIX time at which a probe will be let through;
    ``retry_after`` is the same as seconds from the moment the error was raised.
    """

    def __init__(self, provider: str, retry_after: float, retry_at: float) -> None:
        super().__init__(f"{provider}: circuit breaker is open; next probe in {retry_after:.1f}s")
        self.provider = provider
        self.retry_after = retry_after
        self.retry_at = retry_at


class ProviderError(TunegateError):
    """The provider, or the network on the way to it, did not give a usable answer.

    Attributes:
        provider: ``"spotify"``, ``"musicbrainz"`` or ``"lastfm"``.
        endpoint: the templated endpoint (``"/v1/tracks/{id}"``), never a raw URL.
        status: the HTTP status, or None when there was no response.
        code: the provider's own error code where it has one (Last.fm's ``6``, ``29``...).
        retry_after: seconds the provider asked us to wait, when it did.
        attempts: how many attempts were made before giving up.
        request_id: the provider's request id header, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        endpoint: str = "",
        status: int | None = None,
        code: int | str | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.attempts = attempts
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"{self.provider} {self.endpoint}".strip()
        status = f" [{self.status}]" if self.status is not None else ""
        return f"{where}{status}: {self.args[0] if self.args else ''}"


class NotFound(ProviderError):
    """The provider says the thing does not exist."""


class AuthenticationError(ProviderError):
    """Credentials were refused (Spotify 400 invalid_client / 401, Last.fm errors 10 and 26)."""


class RateLimited(ProviderError):
    """The provider refused the call for quota reasons; ``retry_after`` says for how long."""


class ProviderUnavailable(ProviderError):
    """5xx answers, timeouts, refused or reset connections: the provider is not serving."""


class MalformedResponse(ProviderError):
    """The answer could not be read: invalid JSON or XML, truncated, wrong content type, too big."""
