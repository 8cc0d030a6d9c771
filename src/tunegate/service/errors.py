"""The error tree as HTTP: one ``application/problem+json`` (RFC 9457) type per error.

The table is the one place that says which status an error gets; the OpenAPI document
lists the same types (``PROBLEMS``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

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

__all__ = [
    "PROBLEM",
    "PROBLEMS",
    "UNAUTHORIZED",
    "DeadlineExceeded",
    "Problem",
    "from_exception",
    "problem",
]

PROBLEM = "https://tunegate.dev/problems/"


class DeadlineExceeded(Exception):
    """The service's own deadline for a request ran out (the caller's ``X-Request-Timeout``
    or the service default) before the library answered."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within the request deadline of {seconds:g}s")
        self.seconds = seconds


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    status: int
    title: str
    retry_after: bool = False  # the answer carries Retry-After when the error knows when


# First match wins: subclasses before their parents.
_TABLE: tuple[tuple[type[BaseException], Problem], ...] = (
    (InvalidInput, Problem("invalid-input", 422, "Invalid input")),
    (NotFound, Problem("not-found", 404, "Not found")),
    (RateLimitTimeout, Problem("rate-limited", 429, "Rate limited by the gateway", True)),
    (RateLimited, Problem("upstream-rate-limited", 429, "Rate limited by the provider", True)),
    (CircuitBreakerOpenError, Problem("breaker-open", 503, "Circuit breaker open", True)),
    (DeadlineExceeded, Problem("deadline-exceeded", 504, "Deadline exceeded")),
    (MalformedResponse, Problem("upstream-malformed", 502, "Malformed upstream answer")),
    (AuthenticationError, Problem("upstream-auth", 502, "Provider refused the credentials")),
    (ProviderUnavailable, Problem("upstream-unavailable", 503, "Provider unavailable", True)),
    (ConfigurationError, Problem("not-configured", 503, "Provider not configured")),
    (ProviderError, Problem("upstream-error", 502, "Upstream error")),
    (TunegateError, Problem("gateway-error", 500, "Gateway error")),
)
# An upstream that timed out is a deadline too: the gateway's own timeout on the provider.
_UPSTREAM_TIMEOUT = Problem("upstream-timeout", 504, "Provider timed out")
#: The admin endpoints' refusal (no exception of the tree: the service's own).
UNAUTHORIZED = Problem("unauthorized", 401, "Unauthorized")

#: Every problem type the service can answer with (for the OpenAPI document).
PROBLEMS: tuple[Problem, ...] = (*(p for _, p in _TABLE), _UPSTREAM_TIMEOUT, UNAUTHORIZED)


def problem(status: int, kind: str, detail: str, title: str = "", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM + kind,
        "title": title or kind.replace("-", " "),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, ProviderUnavailable) and isinstance(exc.__cause__, TimeoutError)


def classify(exc: BaseException) -> Problem | None:
    """The problem type of ``exc``; None for an exception that is not ours (a bug: 500)."""
    if _timed_out(exc):
        return _UPSTREAM_TIMEOUT
    for cls, found in _TABLE:
        if isinstance(exc, cls):
            return found
    return None


def from_exception(exc: BaseException) -> JSONResponse:
    """The problem answer for ``exc``; re-raises an exception that is not ours."""
    found = classify(exc)
    if found is None:
        raise exc
    extra: dict[str, Any] = {}
    if isinstance(exc, InvalidInput):
        extra["field"] = exc.field
    provider = getattr(exc, "provider", None)
    if isinstance(provider, str):
        extra["provider"] = provider
    response = problem(found.status, found.kind, str(exc), found.title, **extra)
    retry_after = getattr(exc, "retry_after", None)
    if found.retry_after and isinstance(retry_after, int | float) and math.isfinite(retry_after):
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response
