"""The error tree: picklable, typed, and never carrying more than it is given."""

from __future__ import annotations

import pickle

import pytest

from tunegate import exceptions as exc

CASES = [
    exc.ConfigurationError("rate must be positive"),
    exc.InvalidInput("isrc", "must be 12 characters"),
    exc.RateLimitTimeout("spotify", 1.5),
    exc.CircuitBreakerOpenError("spotify", 12.0, 1_700_000_012.0),
    exc.ProviderError("boom", provider="lastfm", endpoint="/2.0/", status=500, code=8),
    exc.NotFound("no such track", provider="spotify", endpoint="/v1/tracks/{id}", status=404),
    exc.RateLimited("slow down", provider="spotify", status=429, retry_after=30.0, attempts=3),
    exc.AuthenticationError("bad key", provider="lastfm", code=10),
    exc.ProviderUnavailable("timeout", provider="musicbrainz"),
    exc.MalformedResponse("truncated body", provider="spotify", status=200),
]


@pytest.mark.parametrize("err", CASES, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_attributes(err: exc.TunegateError) -> None:
    """Every error survives pickling (for multiprocessing workers) with all its context."""
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.__dict__ == err.__dict__


def test_value_errors_are_value_errors() -> None:
    """Bad settings and bad input are also ValueError, so generic handlers catch them."""
    assert isinstance(exc.InvalidInput("isrc", "x"), ValueError)
    assert isinstance(exc.ConfigurationError("x"), ValueError)


def test_provider_error_str_names_provider_endpoint_status() -> None:
    """The message says where it failed, from templated parts only."""
    err = exc.NotFound("no such track", provider="spotify", endpoint="/v1/tracks/{id}", status=404)
    assert str(err) == "spotify /v1/tracks/{id} [404]: no such track"


def test_no_error_shadows_a_builtin() -> None:
    """No name in the tree hides a builtin (TimeoutError, ConnectionError ...)."""
    import builtins

    assert not set(exc.__all__) & set(dir(builtins))
