"""The design's ``RateLimiter.acquire(provider, tokens=1, blocking=True, timeout=None)``
beside tunegate's form, several tokens taken atomically, and consumption in ``get_stats()``."""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tunegate._consumption import ConsumptionMeter, usage
from tunegate.exceptions import ConfigurationError, RateLimitTimeout
from tunegate.observability import Metrics
from tunegate.pipeline import Pipeline
from tunegate.ratelimit import Granted, RateLimiter
from tunegate.testing import FakeClock


def limiter_with(clock: FakeClock, rate: float = 1.0, capacity: int = 1) -> RateLimiter:
    limiter = RateLimiter(clock=clock)
    limiter.configure_provider("musicbrainz", rate=rate, capacity=capacity)
    return limiter


def available(limiter: RateLimiter, provider: str = "musicbrainz") -> float:
    return limiter.get_stats()[provider]["available_tokens"]


class StuckClock(FakeClock):
    """Asynchronous sleeps never end (until cancelled): a waiter stays inside its sleep."""

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.Event().wait()


# -- the two forms -------------------------------------------------------------------------


def test_non_blocking_on_an_empty_bucket_returns_false_at_once_and_takes_nothing() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, rate=1.0, capacity=1)
    first = limiter.acquire("musicbrainz", blocking=False)
    assert first is not False
    assert first == 0.0
    assert bool(first) is True
    tat_before = limiter.buckets["musicbrainz"]._state
    assert limiter.acquire("musicbrainz", blocking=False) is False
    assert limiter.acquire("musicbrainz", blocking=False, timeout=30) is False  # still at once
    assert clock.sleeps == []
    assert limiter.buckets["musicbrainz"]._state == tat_before  # nothing reserved
    # The next blocking caller waits exactly what it would have without the refusals.
    assert limiter.acquire("musicbrainz") == pytest.approx(1.0)
    assert clock.sleeps == [pytest.approx(1.0)]


def test_design_call_blocks_then_returns_true() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock)
    assert limiter.acquire("musicbrainz", blocking=True, timeout=30)
    waited = limiter.acquire("musicbrainz", blocking=True, timeout=30)
    assert waited
    assert waited == pytest.approx(1.0)
    assert isinstance(waited, Granted)
    assert repr(waited) == f"Granted({float(waited)!r})"


def test_design_timeout_shorter_than_the_wait_returns_false_without_waiting() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock)
    limiter.pause("musicbrainz", 10)
    assert limiter.acquire("musicbrainz", blocking=True, timeout=2) is False
    assert limiter.acquire("musicbrainz", tokens=1, timeout=2) is False
    assert clock.sleeps == []
    assert limiter.get_stats()["musicbrainz"]["granted"] == 0


def test_tunegate_form_keeps_raising_and_returning_seconds() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock)
    assert limiter.acquire("musicbrainz") == 0.0
    with pytest.raises(RateLimitTimeout) as err:
        limiter.acquire("musicbrainz", timeout=0.5)
    assert err.value.retry_after == pytest.approx(1.0)
    assert limiter.acquire("musicbrainz", timeout=5) == pytest.approx(1.0)


def test_positional_options_are_a_type_error_in_both_vocabularies() -> None:
    limiter = limiter_with(FakeClock())
    with pytest.raises(TypeError):
        limiter.acquire("musicbrainz", 5)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        limiter.acquire("musicbrainz", 1, True, 30)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        asyncio.run(limiter.aacquire("musicbrainz", 0.5))  # type: ignore[call-overload]


def test_async_forms() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, rate=2.0, capacity=2)

    async def scenario() -> list[object]:
        return [
            await limiter.aacquire("musicbrainz", tokens=2, blocking=False),
            await limiter.aacquire("musicbrainz", blocking=False),
            await limiter.aacquire("musicbrainz", blocking=True, timeout=30),
        ]

    got, refused, waited = asyncio.run(scenario())
    assert got == 0.0
    assert got is not False
    assert refused is False
    assert waited == pytest.approx(0.5)


# -- several tokens --------------------------------------------------------------------------


def test_several_tokens_are_taken_together_or_not_at_all() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, rate=1.0, capacity=5)
    assert limiter.acquire("musicbrainz", tokens=3) == 0.0
    assert available(limiter) == pytest.approx(2.0)
    assert limiter.acquire("musicbrainz", tokens=3, blocking=False) is False
    assert available(limiter) == pytest.approx(2.0)  # the two left were not taken
    assert limiter.acquire("musicbrainz", tokens=3, timeout=0.5) is False
    assert available(limiter) == pytest.approx(2.0)
    # Blocking: one more token comes in 1 s, then the three go together.
    assert limiter.acquire("musicbrainz", tokens=3) == pytest.approx(1.0)
    assert available(limiter) == pytest.approx(0.0)
    assert limiter.get_stats()["musicbrainz"]["consumed"] == 6


def test_threads_taking_several_tokens_never_overdraw() -> None:
    """Time stands still: 4 tokens are there, 8 threads ask for 2 each without blocking;
    exactly two get them, whatever the scheduling."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=1.0, capacity=4)
    start = threading.Barrier(8, timeout=10)

    def take() -> bool:
        start.wait()
        return limiter.acquire("musicbrainz", tokens=2, blocking=False) is not False

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: take(), range(8), timeout=30))
    assert results.count(True) == 2
    assert available(limiter) == pytest.approx(0.0)


def test_cancelled_multi_token_waiter_gives_every_token_back() -> None:
    clock = StuckClock()
    limiter = RateLimiter(clock=clock)
    limiter.configure_provider("lastfm", rate=1.0, capacity=3)
    limiter.acquire("lastfm", tokens=3)
    state_before = limiter.buckets["lastfm"]._state

    async def scenario() -> None:
        task = asyncio.ensure_future(limiter.aacquire("lastfm", tokens=3))
        for _ in range(100):
            await asyncio.sleep(0)
            if clock.sleeps:
                break
        assert clock.sleeps == [pytest.approx(3.0)]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert limiter.buckets["lastfm"]._state == state_before


def test_bad_token_counts_are_configuration_errors() -> None:
    limiter = limiter_with(FakeClock(), rate=1.0, capacity=2)
    for tokens in (0, -1, True, 1.5):
        with pytest.raises(ConfigurationError, match="tokens"):
            limiter.acquire("musicbrainz", tokens=tokens)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="capacity of 2"):
        limiter.acquire("musicbrainz", tokens=3)
    with pytest.raises(ConfigurationError, match="no rate limit configured"):
        limiter.acquire("nowhere", blocking=False)


# -- shared buckets ---------------------------------------------------------------------------


@pytest.mark.redis
def test_shared_non_blocking_refusal_takes_nothing(redis_url: str) -> None:
    prefix = f"tunegate:test:{uuid.uuid4().hex}:"
    one = RateLimiter(redis=redis_url, key_prefix=prefix)
    two = RateLimiter(redis=redis_url, key_prefix=prefix)
    try:
        for limiter in (one, two):
            limiter.configure_provider("musicbrainz", rate=0.01, capacity=1)
        assert one.acquire("musicbrainz", blocking=False)
        assert two.acquire("musicbrainz", blocking=False) is False  # the other process's token
        tat = one.buckets["musicbrainz"].stats()
        assert two.acquire("musicbrainz", blocking=True, timeout=1) is False
        assert one.buckets["musicbrainz"].stats()["available_tokens"] == pytest.approx(
            tat["available_tokens"], abs=0.01
        )
        assert two.get_stats()["musicbrainz"]["granted"] == 0
    finally:
        one.close()
        two.close()


@pytest.mark.redis
def test_shared_several_tokens_are_taken_together_by_every_process(redis_url: str) -> None:
    """tokens=n on a shared bucket: one script call reserves all n or none, for every
    process; a refusal takes nothing, and each process's consumption counts its n."""
    prefix = f"tunegate:test:{uuid.uuid4().hex}:"
    one = RateLimiter(redis=redis_url, key_prefix=prefix)
    two = RateLimiter(redis=redis_url, key_prefix=prefix)
    try:
        for limiter in (one, two):
            limiter.configure_provider("spotify", rate=0.01, capacity=5)
        assert one.acquire("spotify", tokens=3, blocking=False) == 0.0
        assert two.acquire("spotify", tokens=3, blocking=False) is False  # 2 left, not 3
        assert two.acquire("spotify", tokens=3, timeout=1) is False
        assert two.acquire("spotify", tokens=2, blocking=False) == 0.0
        assert one.acquire("spotify", blocking=False) is False  # all 5 taken
        assert one.get_stats()["spotify"]["consumed"] == 3
        assert two.get_stats()["spotify"]["consumed"] == 2
        with pytest.raises(ConfigurationError, match="exceed its capacity"):
            one.acquire("spotify", tokens=6)
    finally:
        one.close()
        two.close()


# -- consumption and prediction -------------------------------------------------------------


def test_consumption_rate_fill_ratio_and_exhaustion_in_get_stats() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, rate=2.0, capacity=20)
    stats = limiter.get_stats()["musicbrainz"]
    assert stats["consumption_rate"] is None  # one look: no rate yet
    assert stats["fill_ratio"] == pytest.approx(1.0)
    assert stats["seconds_to_exhaustion"] is None
    for _ in range(4):  # 12 tokens in 1 s, refilled at 2/s
        clock.advance(0.25)
        assert limiter.acquire("musicbrainz", tokens=1) == 0.0
        assert limiter.acquire("musicbrainz", tokens=2, blocking=False) == 0.0
    stats = limiter.get_stats()["musicbrainz"]
    assert stats["consumed"] == 12
    assert stats["consumption_rate"] == pytest.approx(12.0)
    assert stats["available_tokens"] == pytest.approx(20 - 12 + 2 * 0.75)
    assert stats["fill_ratio"] == pytest.approx(9.5 / 20)
    assert stats["seconds_to_exhaustion"] == pytest.approx(9.5 / (12.0 - 2.0))


def test_exhaustion_is_predicted_from_the_net_drain() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, rate=1.0, capacity=20)
    limiter.get_stats()
    clock.advance(2.0)
    for _ in range(8):
        limiter.acquire("musicbrainz", blocking=False)
    stats = limiter.get_stats()["musicbrainz"]
    assert stats["consumption_rate"] == pytest.approx(4.0)  # 8 tokens in 2 s
    assert stats["available_tokens"] == pytest.approx(12.0)
    assert stats["fill_ratio"] == pytest.approx(0.6)
    assert stats["seconds_to_exhaustion"] == pytest.approx(12.0 / (4.0 - 1.0))
    # A quiet minute later the window holds no consumption: nothing runs out.
    clock.advance(120.0)
    limiter.get_stats()
    clock.advance(1.0)
    quiet = limiter.get_stats()["musicbrainz"]
    assert quiet["consumption_rate"] == pytest.approx(0.0)
    assert quiet["seconds_to_exhaustion"] is None
    assert quiet["fill_ratio"] == pytest.approx(1.0)


def test_consumption_counts_the_pipeline_s_acquisitions_too() -> None:
    """Tokens taken through tunegate's own form (the pipeline's) are counted alike."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=100.0, capacity=100)
    limiter.get_stats()
    clock.advance(1.0)
    for _ in range(30):
        limiter.buckets["musicbrainz"].acquire()
    stats = limiter.get_stats()["musicbrainz"]
    assert stats["consumed"] == 30
    assert stats["consumption_rate"] == pytest.approx(30.0)
    assert stats["seconds_to_exhaustion"] is None  # 30/s never outpaces a refill of 100/s


def test_meter_window_keeps_one_sample_before_its_start_and_stays_bounded() -> None:
    meter = ConsumptionMeter(window=10.0)
    for second in range(1000):
        meter.observe(float(second), second * 3)
    assert meter.rate() == pytest.approx(3.0)
    assert len(meter._samples) <= 12  # about window / step + 1, not 1000
    oldest = meter._samples[0][0]
    assert 999 - 10.0 - 1.0 <= oldest <= 999 - 10.0
    # Many looks in one instant move only the newest sample.
    for _ in range(1000):
        meter.observe(999.0, 2997)
    assert len(meter._samples) <= 13
    with pytest.raises(ValueError, match="window"):
        ConsumptionMeter(window=0)


def test_usage_arithmetic() -> None:
    figures = usage(
        consumed=5, consumption_rate=3.0, window=60.0, available=4.0, capacity=8, refill_rate=1.0
    )
    assert figures == {
        "consumed": 5,
        "consumption_rate": 3.0,
        "consumption_window": 60.0,
        "fill_ratio": 0.5,
        "seconds_to_exhaustion": 2.0,
    }
    empty = usage(
        consumed=5, consumption_rate=None, window=60.0, available=0.5, capacity=8, refill_rate=1.0
    )
    assert empty["seconds_to_exhaustion"] == 0.0
    assert empty["fill_ratio"] == pytest.approx(0.0625)


def test_stats_for_one_provider_is_its_get_stats_entry() -> None:
    clock = FakeClock()
    limiter = limiter_with(clock, rate=1.0, capacity=4)
    limiter.configure_provider("lastfm", rate=5.0, capacity=5)
    limiter.stats_for("musicbrainz")
    clock.advance(2.0)
    limiter.acquire("musicbrainz", tokens=4)
    one = limiter.stats_for("musicbrainz")
    assert one["consumption_rate"] == pytest.approx(2.0)
    assert limiter.get_stats()["musicbrainz"] == one  # no time passed: the same figures
    assert asyncio.run(limiter.astats_for("lastfm"))["fill_ratio"] == pytest.approx(1.0)
    with pytest.raises(ConfigurationError):
        limiter.stats_for("nowhere")


# -- the same figures as Prometheus gauges --------------------------------------------------


def scrape(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """(metric, provider) -> value, parsed back from the registry's text exposition."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, sample.labels.get("provider", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("rate_limit_")
    }


def test_consumption_gauges_on_a_scrape() -> None:
    """rate_limit_consumption_rate, _fill_ratio and _seconds_to_exhaustion per provider, from
    the limiter's consumption figures at scrape time."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=2.0, capacity=20)
    registry = CollectorRegistry()
    pipeline = Pipeline(
        "musicbrainz", "http://127.0.0.1:9", rate_limiter=limiter, registry=registry
    )
    assert ("rate_limit_consumption_rate", "musicbrainz") not in scrape(registry)  # no rate yet
    for _ in range(9):
        limiter.acquire("musicbrainz", blocking=False)
    clock.advance(2.0)
    samples = scrape(registry)
    assert samples[("rate_limit_consumption_rate", "musicbrainz")] == pytest.approx(4.5)
    assert samples[("rate_limit_tokens_available", "musicbrainz")] == pytest.approx(15.0)
    assert samples[("rate_limit_fill_ratio", "musicbrainz")] == pytest.approx(0.75)
    assert samples[("rate_limit_seconds_to_exhaustion", "musicbrainz")] == pytest.approx(
        15.0 / (4.5 - 2.0)
    )
    clock.advance(120.0)  # a quiet two minutes: consumption 0, the bucket never runs dry
    scrape(registry)
    clock.advance(1.0)
    samples = scrape(registry)
    assert samples[("rate_limit_consumption_rate", "musicbrainz")] == 0.0
    assert samples[("rate_limit_fill_ratio", "musicbrainz")] == 1.0
    assert samples[("rate_limit_seconds_to_exhaustion", "musicbrainz")] == math.inf
    pipeline.close()


@pytest.mark.redis
def test_consumption_gauges_of_a_shared_bucket(redis_url: str) -> None:
    """A shared bucket's gauges come from a reading taken off the scrape (no Redis call on
    the scrape itself): the fill ratio is the shared bucket's."""
    limiter = RateLimiter(redis=redis_url, key_prefix=f"tunegate:test:{uuid.uuid4().hex}:")
    limiter.configure_provider("lastfm", rate=0.01, capacity=4)
    registry = CollectorRegistry()
    pipeline = Pipeline("lastfm", "http://127.0.0.1:9", rate_limiter=limiter, registry=registry)
    fill = ("rate_limit_fill_ratio", "lastfm")

    def scrape_until(done: Callable[[dict[tuple[str, str], float]], bool]) -> dict[Any, float]:
        for _ in range(300):  # until the reading taken off the scrape is in (bounded: ~3 s)
            samples = scrape(registry)
            if done(samples):
                break
            threading.Event().wait(0.01)
        return samples

    try:
        assert scrape_until(lambda got: fill in got)[fill] == pytest.approx(1.0, abs=0.01)
        for _ in range(3):
            assert limiter.acquire("lastfm", blocking=False)
        Metrics.for_registry(registry).live.readings.max_age = 0.0  # refresh after each scrape
        samples = scrape_until(lambda got: got[fill] < 0.5)
        assert samples[("rate_limit_fill_ratio", "lastfm")] == pytest.approx(0.25, abs=0.01)
        assert samples[("rate_limit_tokens_available", "lastfm")] == pytest.approx(1.0, abs=0.05)
    finally:
        pipeline.close()
        limiter.close()
