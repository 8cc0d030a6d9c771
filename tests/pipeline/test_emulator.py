"""The pipeline against the provider emulator: Last.fm requests and hook as the provider
module builds them, errors inside 200 bodies, and a secret API key that stays secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

emulator_mod = pytest.importorskip("tunegate.emulator")
lastfm = pytest.importorskip("tunegate.providers.lastfm")

from tunegate._http import HttpConfig, HttpPool  # noqa: E402
from tunegate._policy.retry import RetryPolicy  # noqa: E402
from tunegate.cache import CacheManager  # noqa: E402
from tunegate.exceptions import AuthenticationError  # noqa: E402
from tunegate.pipeline import Pipeline  # noqa: E402


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    with emulator_mod.Emulator(catalog_size=500, seed=1) as emulator:
        yield emulator


@pytest.fixture
def pipeline(emu: Any) -> Iterator[Pipeline]:
    p = Pipeline(
        "lastfm",
        emu.urls.root,
        cache=CacheManager(),
        classifier=lastfm.hook,
        http=HttpPool("lastfm", HttpConfig(total_timeout=5.0, app="tunegate-tests/1.0")),
        retry=RetryPolicy(max_attempts=2, base=0.01, deadline=5.0),
        registry=CollectorRegistry(),
    )
    yield p
    p.close()


def test_top_tags_through_the_pipeline(pipeline: Pipeline) -> None:
    """A real Last.fm request shape and parser: tags come back, the second call is a hit."""
    key = emulator_mod.DEFAULT_LASTFM_KEY
    request = lastfm.track_top_tags_request("Deadmau5", "Strobe", api_key=key)
    tags = pipeline.call(request, parse=lastfm.parse_top_tags)
    assert tags
    assert all(isinstance(t, str) for t in tags)
    assert pipeline.call(request, parse=lastfm.parse_top_tags) == tags
    stats = pipeline.get_stats()
    assert (stats["api_calls"], stats["cache_hits"]) == (1, 1)


async def test_refused_key_is_authentication_error_without_the_key(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """Error 10 (invalid key) is AuthenticationError, not retried; the key is nowhere."""
    bad_key = "deadbeefcanary0123456789abcdef00"
    request = lastfm.track_top_tags_request("Deadmau5", "Strobe", api_key=bad_key)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(AuthenticationError) as info:
            await pipeline.acall(request, parse=lastfm.parse_top_tags)
    finally:
        await pipeline.aclose()
    assert info.value.attempts == 1
    assert bad_key not in str(info.value)
    assert bad_key not in caplog.text
    assert bad_key not in generate_latest(pipeline._metrics.registry).decode()  # type: ignore[union-attr]
