"""``CacheManager.cached``: a function's answers cached by its arguments (def and async def),
forgotten by ``invalidate`` with the same arguments, on memory and on real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tunegate.cache import CacheManager, FrozenDict
from tunegate.exceptions import InvalidInput
from tunegate.testing import FakeClock


def test_sync_function_is_called_once_per_arguments() -> None:
    cache = CacheManager()
    calls: list[tuple[str, str]] = []

    @cache.cached("myapp:page", ttl=60)
    def page(artist: str, *, lang: str = "en") -> dict[str, Any]:
        calls.append((artist, lang))
        return {"artist": artist, "lang": lang}

    assert page("Daft Punk", lang="fr") == {"artist": "Daft Punk", "lang": "fr"}
    assert page("Daft Punk", lang="fr") == {"artist": "Daft Punk", "lang": "fr"}
    assert page("Daft Punk") == {"artist": "Daft Punk", "lang": "en"}
    assert calls == [("Daft Punk", "fr"), ("Daft Punk", "en")]
    assert isinstance(page("Daft Punk"), FrozenDict)  # frozen on a hit and on a miss alike
    assert page.__name__ == "page"

    assert cache.invalidate("myapp:page", "Daft Punk", lang="fr") == 1
    page("Daft Punk", lang="fr")
    assert calls[-1] == ("Daft Punk", "fr")
    assert len(calls) == 3
    stats = cache.get_stats()["per_provider"]["myapp"]
    assert (stats["hits"], stats["misses"]) == (2, 3)


def test_none_is_an_answer_and_ttl_expires() -> None:
    clock = FakeClock()
    cache = CacheManager(clock=clock, jitter=0.0)
    calls = 0

    @cache.cached("myapp:lookup", ttl=10)
    def lookup(n: int, flag: bool = False, ratio: float | None = None) -> None:
        nonlocal calls
        calls += 1

    lookup(1, True, 0.5)
    lookup(1, True, 0.5)
    assert calls == 1
    lookup(1, False, 0.5)  # a different argument is a different key
    assert calls == 2
    clock.advance(11)
    lookup(1, True, 0.5)
    assert calls == 3


def test_async_function(redis_url: str) -> None:
    async def main() -> None:
        cache = CacheManager(redis_url, namespace="decorator_test")
        calls = 0

        @cache.cached("myapp:tags")
        async def tags(artist: str, track: str) -> list[str]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            return ["house", artist.lower()]

        try:
            await cache.ainvalidate("myapp:tags", "Daft Punk", "One More Time")
            assert await tags("Daft Punk", "One More Time") == ["house", "daft punk"]
            assert await tags("Daft Punk", "One More Time") == ["house", "daft punk"]
            assert calls == 1
            assert await cache.ainvalidate("myapp:tags", "Daft Punk", "One More Time") == 1
            await tags("Daft Punk", "One More Time")
            assert calls == 2
        finally:
            await cache.ainvalidate("myapp:tags", "Daft Punk", "One More Time")
            await cache.aclose()

    asyncio.run(main())


def test_bad_prefix_and_bad_arguments_fail_before_the_function_runs() -> None:
    cache = CacheManager()
    with pytest.raises(InvalidInput, match="kind"):
        cache.cached("no_colon")

    ran = False

    @cache.cached("myapp:thing")
    def thing(value: object) -> int:
        nonlocal ran
        ran = True
        return 1

    with pytest.raises(InvalidInput, match="got list"):
        thing(["a"])
    assert not ran


def test_unstorable_answer_raises_type_error() -> None:
    cache = CacheManager()

    @cache.cached("myapp:obj")
    def obj() -> object:
        return object()

    with pytest.raises(TypeError):
        obj()
