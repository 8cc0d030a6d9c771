"""What an error means, sans-IO: the one table the retry policy, the breaker, stale-if-error
and single-flight read.

For one error, :func:`meaning` answers four questions:

- ``transient``: may another attempt succeed? (``reason`` says why: ``rate_limited``,
  ``unavailable``, ``timeout``, ``connection`` or ``truncated``)
- ``counts_for_breaker``: does it say the provider is failing?
- ``may_serve_stale``: may a stale cache entry answer for it (stale-if-error)?
- ``shareable``: may the process that made the call hand it to the callers waiting for the
  same call (single-flight followers, in this process and in others)?

=======================  =========  =======  =====  =====
error                    transient  breaker  stale  share
=======================  =========  =======  =====  =====
NotFound                 no         no       no     no
AuthenticationError      no         no       no     no
RateLimited              yes        no       yes    yes
ProviderUnavailable      yes        yes      yes    yes
MalformedResponse        [1]_       yes      yes    yes
other ProviderError      [2]_       [3]_     [2]_   [2]_
CircuitBreakerOpenError  no         no       yes    yes
RateLimitTimeout         no         no       yes    yes
InvalidInput             no         no       no     no
ConfigurationError       no         no       no     no
other TunegateError      no         no       no     no
TimeoutError             yes        yes      no     no
ConnectionError          yes        yes      no     no
other OSError            no         yes      no     no
anything else            no         no       no     no
=======================  =========  =======  =====  =====

.. [1] only when the body was cut short (``code == "truncated"``, or raised from a builtin
   ConnectionError/TimeoutError) or came with a 500/502/503/504: invalid JSON from a healthy
   server will be just as invalid next time.
.. [2] by status: 429 (rate limited) or 500/502/503/504 (unavailable).
.. [3] when it has no status or a status of 500 or more.

Providers map their own codes to the tree at their boundary (their classify hooks), so
nothing here knows a provider: an error coded "rate limited" by an upstream arrives as a
:class:`RateLimited`. Foreign exceptions of HTTP libraries are the breaker's adapter's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

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

__all__ = ["TRANSIENT_STATUSES", "TRUNCATED", "Meaning", "meaning"]

#: HTTP statuses worth another attempt.
TRANSIENT_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
#: The ``code`` the HTTP boundary puts on a :class:`MalformedResponse` whose body was cut short.
TRUNCATED: Final = "truncated"


@dataclass(frozen=True, slots=True)
class Meaning:
    """The four answers for one error (see the module's table); ``reason`` is why it is
    transient, None when it is not."""

    reason: str | None
    counts_for_breaker: bool
    may_serve_stale: bool
    shareable: bool

    @property
    def transient(self) -> bool:
        return self.reason is not None


_NOTHING: Final = Meaning(None, False, False, False)
# An outage elsewhere (our breaker, our limiter): not retried, but a stale entry may answer.
_REFUSED_HERE: Final = Meaning(None, False, True, True)

# The table by class, first match wins (most specific first). None: read the instance.
_BY_CLASS: Final[tuple[tuple[type[BaseException], Meaning | None], ...]] = (
    (NotFound, _NOTHING),
    (AuthenticationError, _NOTHING),
    (RateLimited, Meaning("rate_limited", False, True, True)),
    (ProviderUnavailable, None),  # the reason follows the cause (timeout, connection)
    (MalformedResponse, None),
    (ProviderError, None),
    (CircuitBreakerOpenError, _REFUSED_HERE),
    (RateLimitTimeout, _REFUSED_HERE),
    (InvalidInput, _NOTHING),
    (ConfigurationError, _NOTHING),
    (TunegateError, _NOTHING),
    (TimeoutError, Meaning("timeout", True, False, False)),
    (ConnectionError, Meaning("connection", True, False, False)),
    (OSError, Meaning(None, True, False, False)),
)


def meaning(error: BaseException) -> Meaning:
    """What ``error`` means for retries, the breaker, stale-if-error and single-flight."""
    for cls, answer in _BY_CLASS:
        if isinstance(error, cls):
            return answer if answer is not None else _of_provider_error(error)
    return _NOTHING


def _of_provider_error(error: BaseException) -> Meaning:
    assert isinstance(error, ProviderError)
    status = error.status
    if isinstance(error, ProviderUnavailable):
        return Meaning(_builtin_reason(error.__cause__) or "unavailable", True, True, True)
    if isinstance(error, MalformedResponse):
        if error.code == TRUNCATED or _builtin_reason(error.__cause__):
            reason: str | None = "truncated"
        else:
            reason = "unavailable" if status in TRANSIENT_STATUSES - {429} else None
        return Meaning(reason, True, True, True)
    if status == 429:
        reason = "rate_limited"
    else:
        reason = "unavailable" if status in TRANSIENT_STATUSES else None
    outage = reason is not None
    return Meaning(reason, status is None or status >= 500, outage, outage)


def _builtin_reason(error: BaseException | None) -> str | None:
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionError):
        return "connection"
    return None
