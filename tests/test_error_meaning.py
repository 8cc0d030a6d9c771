"""The one table of what an error means, pinned row by row, and read alike by everyone."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from tunegate import exceptions as exc
from tunegate._flight import publish_error
from tunegate._policy.classify import outage_like
from tunegate._policy.errors import TRUNCATED, Meaning, meaning
from tunegate._policy.retry import transient_reason
from tunegate.breaker import CircuitBreaker


def sp(cls: type[exc.ProviderError], message: str, **fields: Any) -> exc.ProviderError:
    return cls(message, provider="spotify", endpoint="/v1/search", **fields)


def _caused(error: exc.TunegateError, cause: BaseException) -> exc.TunegateError:
    error.__cause__ = cause  # as `raise ... from cause` sets it
    return error


# (error, reason, counts_for_breaker, may_serve_stale, shareable)
ROWS: list[tuple[BaseException, str | None, bool, bool, bool]] = [
    (exc.TunegateError("x"), None, False, False, False),
    (exc.ConfigurationError("rate must be positive"), None, False, False, False),
    (exc.InvalidInput("isrc", "must be 12 characters"), None, False, False, False),
    (exc.RateLimitTimeout("spotify", 1.5), None, False, True, True),
    (exc.CircuitBreakerOpenError("spotify", 12.0, 1_700_000_012.0), None, False, True, True),
    (sp(exc.NotFound, "no such track", status=404), None, False, False, False),
    (sp(exc.NotFound, "no such track", status=None), None, False, False, False),
    (sp(exc.AuthenticationError, "bad key", status=401), None, False, False, False),
    (sp(exc.AuthenticationError, "bad key", status=503), None, False, False, False),
    (
        sp(exc.RateLimited, "slow down", status=429, retry_after=3.0),
        "rate_limited",
        False,
        True,
        True,
    ),
    (sp(exc.RateLimited, "throttled", status=503), "rate_limited", False, True, True),
    (sp(exc.ProviderUnavailable, "down", status=503), "unavailable", True, True, True),
    (sp(exc.ProviderUnavailable, "no answer"), "unavailable", True, True, True),
    (_caused(sp(exc.ProviderUnavailable, "slow"), TimeoutError()), "timeout", True, True, True),
    (
        _caused(sp(exc.ProviderUnavailable, "reset"), ConnectionResetError()),
        "connection",
        True,
        True,
        True,
    ),
    (sp(exc.MalformedResponse, "cut", status=200, code=TRUNCATED), "truncated", True, True, True),
    (
        _caused(sp(exc.MalformedResponse, "cut", status=200), ConnectionError()),
        "truncated",
        True,
        True,
        True,
    ),
    (sp(exc.MalformedResponse, "proxy page", status=502), "unavailable", True, True, True),
    (sp(exc.MalformedResponse, "bad json", status=200, code="bad_json"), None, True, True, True),
    (sp(exc.ProviderError, "gateway", status=502), "unavailable", True, True, True),
    (sp(exc.ProviderError, "busy", status=429), "rate_limited", False, True, True),
    (sp(exc.ProviderError, "no status", status=None), None, True, False, False),
    (sp(exc.ProviderError, "not implemented", status=501), None, True, False, False),
    (sp(exc.ProviderError, "refused", status=400), None, False, False, False),
    # A provider's own code means nothing here until its hook mapped it to the tree.
    (
        exc.ProviderError("code 29", provider="lastfm", status=200, code=29),
        None,
        False,
        False,
        False,
    ),
    (TimeoutError("read timed out"), "timeout", True, False, False),
    (ConnectionRefusedError("refused"), "connection", True, False, False),
    (OSError("no route"), None, True, False, False),
    (ValueError("a bug in the caller"), None, False, False, False),
    (KeyboardInterrupt(), None, False, False, False),
]


@pytest.mark.parametrize(
    ("error", "reason", "breaker", "stale", "share"), ROWS, ids=lambda v: repr(v)[:48]
)
def test_each_error_has_its_four_meanings(
    error: BaseException, reason: str | None, breaker: bool, stale: bool, share: bool
) -> None:
    """The table: transient (and why), counts for the breaker, stale may answer, shareable."""
    m = meaning(error)
    assert m == Meaning(reason, breaker, stale, share)
    assert m.transient is (reason is not None)


def test_every_error_type_of_the_tree_has_a_row() -> None:
    """No class of exceptions.py is left to a default: each appears in the table above."""
    tree = {
        obj
        for _, obj in inspect.getmembers(exc, inspect.isclass)
        if issubclass(obj, exc.TunegateError)
    }
    assert tree == {type(row[0]) for row in ROWS if isinstance(row[0], exc.TunegateError)}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: repr(r[0])[:48])
def test_the_readers_of_the_table_agree_with_it(
    row: tuple[BaseException, str | None, bool, bool, bool],
) -> None:
    """Retry, breaker, stale-if-error and single-flight read the same row."""
    error, reason, breaker, stale, share = row
    assert transient_reason(error) == reason
    assert outage_like(error) is stale
    if isinstance(error, exc.TunegateError):
        assert CircuitBreaker("spotify").is_failure(error) is breaker
        assert (publish_error(error) != b"") is share
