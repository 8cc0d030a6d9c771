"""The design's spellings beside ours, for the clients: ``includes=`` for MusicBrainz's
``inc``, and client stats in the design's vocabulary (:func:`design_stats`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, TypeVar

from tunegate.exceptions import InvalidInput

__all__ = ["DesignStats", "design_stats", "pick_inc"]

Inc = TypeVar("Inc", bound=str | Iterable[str])


def pick_inc(inc: Inc, includes: Inc | None, default: object) -> Inc:
    """``includes`` (the design's name) when given, else ``inc``; both given, unless
    ``inc`` is still the method's ``default``, is an :class:`InvalidInput` (one list, two
    names: which one would win is a guess)."""
    if includes is None:
        return inc
    if inc is not default:
        raise InvalidInput("includes", "is another name for inc: pass one of them, not both")
    return includes


class DesignStats(TypedDict):
    """A client's figures under the design's names (``get_stats()`` has them beside ours):

    - ``requests_total``: requests sent to the provider (every attempt, retries included;
      cache hits send none);
    - ``requests_successful``: those answered with success or "not found";
    - ``requests_failed``: the others (errors, refusals, timeouts, 429s);
    - ``rate_limited``: acquisitions this process's limiter made wait for this provider
      (``rate_limiter.waits.count``; a provider's 429 pauses the bucket, so the calls it
      holds back count here);
    - ``circuit_breaker_opens``: transitions of the breaker into OPEN seen here, not the
      calls it refused (those are ``breaker_rejections``).
    """

    requests_total: int
    requests_successful: int
    requests_failed: int
    rate_limited: int
    circuit_breaker_opens: int


def design_stats(stats: Mapping[str, Any], breaker_openings: int) -> DesignStats:
    """The design's figures computed from a client's ``get_stats()`` (ours) and its
    breaker's :attr:`~tunegate.breaker.CircuitBreaker.openings`."""
    total = int(stats.get("api_calls", 0))
    failed = int(stats.get("api_errors", 0))
    limiter = stats.get("rate_limiter")
    waits = limiter.get("waits") if isinstance(limiter, Mapping) else None
    waited = int(waits.get("count", 0)) if isinstance(waits, Mapping) else 0
    return DesignStats(
        requests_total=total,
        requests_successful=max(0, total - failed),
        requests_failed=failed,
        rate_limited=waited,
        circuit_breaker_opens=int(breaker_openings),
    )
