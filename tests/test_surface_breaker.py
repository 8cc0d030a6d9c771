"""The design's breaker surface: ``protect`` on def and async def, the registry's
``reset_all()`` and ``get_state()``, and openings counted apart from refusals."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tunegate.breaker import CircuitBreaker, CircuitBreakerRegistry, CircuitState
from tunegate.exceptions import CircuitBreakerOpenError, NotFound, ProviderUnavailable
from tunegate.testing import FakeClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Upstream:
    """A fake provider: answers, or raises what it is told to, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None

    def __call__(self, x: int) -> int:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return x * 2


def breaker(
    clock: FakeClock, failure_threshold: int = 3, success_threshold: int = 2
) -> CircuitBreaker:
    return CircuitBreaker(
        "spotify",
        failure_threshold=failure_threshold,
        timeout=60,
        success_threshold=success_threshold,
        clock=clock,
    )


def test_protect_def_passes_calls_through_and_keeps_the_function_s_identity() -> None:
    b = breaker(FakeClock())
    upstream = Upstream()

    @b.protect
    def double(x: int) -> int:
        """Twice x."""
        return upstream(x)

    assert double(21) == 42
    assert double.__name__ == "double"
    assert double.__doc__ == "Twice x."
    assert b.get_stats()["total_calls"] == 1


def test_protect_def_failures_open_the_breaker_and_then_refuse_without_calling() -> None:
    clock = FakeClock()
    b = breaker(clock)
    upstream = Upstream()
    guarded = b.protect(upstream)
    upstream.error = ProviderUnavailable("down", provider="spotify", status=503)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            guarded(1)
    assert b.state is OPEN
    with pytest.raises(CircuitBreakerOpenError):
        guarded(1)
    assert upstream.calls == 3  # the refused call never reached the provider
    # After the timeout, two good probes close it again.
    clock.advance(60)
    upstream.error = None
    assert guarded(2) == 4
    assert b.state is HALF_OPEN
    assert guarded(3) == 6
    assert b.state is CLOSED


def test_protect_def_not_found_is_not_a_failure() -> None:
    b = breaker(FakeClock())
    upstream = Upstream()
    upstream.error = NotFound("no such track", provider="spotify")
    guarded = b.protect(upstream)
    for _ in range(5):
        with pytest.raises(NotFound):
            guarded(1)
    assert b.state is CLOSED
    assert b.get_stats()["total_failures"] == 0


def test_protect_async_def_passes_calls_through_and_counts_failures() -> None:
    b = breaker(FakeClock())
    upstream = Upstream()

    @b.protect
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return upstream(x)

    assert asyncio.iscoroutinefunction(double)
    assert double.__name__ == "double"

    async def scenario() -> None:
        assert await double(5) == 10
        upstream.error = OSError("connection reset")
        for _ in range(3):
            with pytest.raises(OSError, match="connection reset"):
                await double(1)
        assert await b.astate() is OPEN
        with pytest.raises(CircuitBreakerOpenError):
            await double(1)

    asyncio.run(scenario())
    assert upstream.calls == 4
    stats = b.get_stats()
    assert (stats["total_calls"], stats["total_failures"], stats["rejected"]) == (4, 3, 1)


def test_protect_async_cancellation_is_not_a_failure() -> None:
    b = breaker(FakeClock(), failure_threshold=1)

    @b.protect
    async def hang() -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        task = asyncio.ensure_future(hang())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert b.state is CLOSED


def test_openings_count_transitions_into_open_not_refusals() -> None:
    clock = FakeClock()
    b = breaker(clock, failure_threshold=1, success_threshold=1)
    guarded = b.protect(Upstream())
    upstream_error = ProviderUnavailable("down", provider="spotify", status=503)

    def failing() -> None:
        raise upstream_error

    bad = b.protect(failing)
    assert b.openings == 0
    with pytest.raises(ProviderUnavailable):
        bad()
    for _ in range(4):  # refusals while open are not openings
        with pytest.raises(CircuitBreakerOpenError):
            guarded(1)
    assert b.openings == 1
    clock.advance(60)
    with pytest.raises(ProviderUnavailable):  # the probe fails: HALF_OPEN -> OPEN again
        bad()
    assert b.openings == 2
    clock.advance(60)
    assert guarded(1) == 2
    assert b.state is CLOSED
    b.reset()
    assert b.openings == 2  # cumulative, like the design's counter
    assert b.get_stats()["rejected"] == 4


def test_registry_get_state_and_reset_all() -> None:
    clock = FakeClock()
    registry = CircuitBreakerRegistry(clock=clock)
    for name in ("spotify", "musicbrainz", "lastfm"):
        registry.register(name, failure_threshold=1)
    assert registry.get_state() == {
        "spotify": "closed",
        "musicbrainz": "closed",
        "lastfm": "closed",
    }
    for name in ("spotify", "lastfm"):
        with pytest.raises(ProviderUnavailable):
            registry[name].call(_down)
    assert registry.get_state() == {
        "spotify": OPEN,
        "musicbrainz": CLOSED,
        "lastfm": OPEN,
    }
    registry.reset_all()
    assert registry.get_state() == dict.fromkeys(("spotify", "musicbrainz", "lastfm"), CLOSED)
    assert all(s["failures"] == 0 for s in registry.get_stats().values())


def test_registry_async_forms() -> None:
    registry = CircuitBreakerRegistry(clock=FakeClock())
    b = registry.register("spotify", failure_threshold=1)
    with pytest.raises(ProviderUnavailable):
        b.call(_down)

    async def scenario() -> tuple[dict[str, CircuitState], dict[str, CircuitState]]:
        before = await registry.aget_state()
        await registry.areset_all()
        return before, await registry.aget_state()

    before, after = asyncio.run(scenario())
    assert before == {"spotify": OPEN}
    assert after == {"spotify": CLOSED}


def test_registry_empty() -> None:
    registry = CircuitBreakerRegistry()
    registry.reset_all()
    assert registry.get_state() == {}


def _down() -> None:
    raise ProviderUnavailable("down", provider="x", status=503)


@pytest.mark.redis
def test_shared_protect_and_reset_all_reach_every_process(redis_url: str) -> None:
    """Two registries on one Redis stand for two processes: a failure counted through one's
    decorator opens the other's breaker, and reset_all in one closes it for both."""
    prefix = f"tunegate:test:{uuid.uuid4().hex}:"
    one = CircuitBreakerRegistry(redis=redis_url, cache_ttl=0, key_prefix=prefix)
    two = CircuitBreakerRegistry(redis=redis_url, cache_ttl=0, key_prefix=prefix)
    try:
        a = one.register("musicbrainz", failure_threshold=2, timeout=30)
        b = two.register("musicbrainz", failure_threshold=2, timeout=30)
        guarded = a.protect(_down)
        for _ in range(2):
            with pytest.raises(ProviderUnavailable):
                guarded()
        assert two.get_state() == {"musicbrainz": OPEN}
        with pytest.raises(CircuitBreakerOpenError):
            b.call(lambda: None)
        assert a.openings == 1
        assert b.openings == 1  # heard of from Redis: the same one opening
        two.reset_all()
        assert one.get_state() == {"musicbrainz": CLOSED}
        assert a.get_stats()["failures"] == 0
    finally:
        one.close()
        two.close()


@pytest.mark.redis
def test_shared_protect_async(redis_url: str) -> None:
    prefix = f"tunegate:test:{uuid.uuid4().hex}:"

    async def scenario() -> CircuitState:
        registry = CircuitBreakerRegistry(redis=redis_url, cache_ttl=0, key_prefix=prefix)
        try:
            b = registry.register("lastfm", failure_threshold=1)

            @b.protect
            async def down() -> None:
                _down()

            with pytest.raises(ProviderUnavailable):
                await down()
            state = (await registry.aget_state())["lastfm"]
            await registry.areset_all()
            assert (await registry.aget_state())["lastfm"] is CLOSED
            return state
        finally:
            await registry.aclose()

    assert asyncio.run(scenario()) is OPEN
