"""RateLimiter and TokenBucket in one process: FakeClock or a clock that stands still."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from email.utils import formatdate

import pytest

from tunegate._clock import SystemClock
from tunegate.exceptions import ConfigurationError, RateLimitTimeout
from tunegate.providers.spec import SPECS, SPOTIFY, slots_in_window
from tunegate.ratelimit import PROVIDER_DEFAULTS, RateLimiter, TokenBucket
from tunegate.testing import FakeClock


class GateClock:
    """Time stands still; sleepers record (name, seconds) and block until ``open()``.

    With time frozen, each waiter's sleep is exactly the slot it reserved, so the order of
    slots is the order of service, independent of thread scheduling.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[tuple[str, float]] = []
        self._gate = threading.Event()
        self._agate: asyncio.Event | None = None

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append((threading.current_thread().name, seconds))
        assert self._gate.wait(10), "GateClock never opened"

    async def asleep(self, seconds: float) -> None:
        task = asyncio.current_task()
        self.slept.append((task.get_name() if task else "?", seconds))
        if self._agate is None:
            self._agate = asyncio.Event()
        await asyncio.wait_for(self._agate.wait(), 10)

    def open(self) -> None:
        self._gate.set()
        if self._agate is not None:
            self._agate.set()

    def wait_for_sleepers(self, count: int) -> None:
        for _ in range(1000):  # at most ~5 s
            if len(self.slept) >= count:
                return
            self._gate.wait(0.005)
        raise AssertionError(f"only {len(self.slept)} of {count} waiters went to sleep")

    async def await_sleepers(self, count: int) -> None:
        for _ in range(1000):
            if len(self.slept) >= count:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"only {len(self.slept)} of {count} waiters went to sleep")


def limiter_with(clock: object, rate: float = 10.0, capacity: int = 1) -> RateLimiter:
    limiter = RateLimiter(clock=clock)  # type: ignore[arg-type]
    limiter.configure_provider("spotify", rate=rate, capacity=capacity)
    return limiter


# -- configuration -----------------------------------------------------------------------


def test_unconfigured_provider_names_the_fix() -> None:
    """Acquiring an unknown provider raises ConfigurationError naming it and the call."""
    limiter = RateLimiter()
    with pytest.raises(ConfigurationError) as err:
        limiter.acquire("deezer")
    assert "'deezer'" in str(err.value)
    assert "configure_provider('deezer'" in str(err.value)


def test_known_provider_gets_its_usual_limits_on_first_use() -> None:
    """The issue's own sequence works: configure MusicBrainz, then acquire Spotify, which
    nobody configured, under PROVIDER_DEFAULTS."""
    from tunegate.ratelimit import PROVIDER_DEFAULTS

    limiter = RateLimiter()
    limiter.configure_provider("musicbrainz", rate=1.0, capacity=1)
    assert limiter.acquire("spotify") == 0.0
    stats = limiter.get_stats()["spotify"]
    assert (stats["rate"], stats["capacity"]) == PROVIDER_DEFAULTS["spotify"]


async def test_unconfigured_provider_async() -> None:
    """The async forms refuse an unknown provider the same way."""
    with pytest.raises(ConfigurationError):
        await RateLimiter().aacquire("deezer")


def test_ensure_provider_keeps_what_is_configured() -> None:
    """ensure_provider configures a new provider but never overrides the application's choice."""
    limiter = RateLimiter()
    limiter.configure_provider("spotify", rate=2.0, capacity=2)
    limiter.ensure_provider("spotify", *PROVIDER_DEFAULTS["spotify"])
    limiter.ensure_provider("lastfm", *PROVIDER_DEFAULTS["lastfm"])
    stats = limiter.get_stats()
    assert (stats["spotify"]["rate"], stats["spotify"]["capacity"]) == (2.0, 2)
    assert (stats["lastfm"]["rate"], stats["lastfm"]["capacity"]) == (5.0, 1)


def test_configure_provider_replaces_settings() -> None:
    """configure_provider on a configured provider changes its rate and capacity in place."""
    limiter = RateLimiter()
    first = limiter.configure_provider("spotify", rate=2.0, capacity=2)
    second = limiter.configure_provider("spotify", rate=4.0, capacity=3)
    assert first is second is limiter.buckets["spotify"]
    assert (first.rate, first.capacity) == (4.0, 3)


def test_provider_defaults_keep_each_providers_window() -> None:
    """The design's rates, with the bursts each provider's window leaves room for: Spotify
    10/s and Last.fm 5/s with no burst (the design's 10 and 5 would overrun), MusicBrainz 1/s."""
    assert PROVIDER_DEFAULTS == {
        "spotify": (10.0, 1),
        "musicbrainz": (1.0, 1),
        "lastfm": (5.0, 1),
    }


def busiest_window(rate: float, capacity: int, window: float, seconds: float) -> int:
    """A greedy caller on a FakeClock takes every token for ``seconds``; the most of its
    grants that fall in one rolling window (each grant and the ones less than ``window``
    seconds before it)."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=rate, capacity=capacity)
    start = clock.monotonic()
    times: list[float] = []
    for _ in range(100_000):
        limiter.acquire("spotify")  # sleeps (advances the clock) until its slot
        if clock.monotonic() - start > seconds:
            break
        times.append(clock.monotonic())
    busiest, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - window + 1e-9:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_default_bucket_fits_its_providers_window(name: str) -> None:
    """Played out, the default bucket never has more than the quota in a rolling window, and
    slots_in_window (the spec's own check) says exactly how many it has at most."""
    spec = SPECS[name]
    assert spec.quota is not None
    assert spec.quota_window is not None
    most = busiest_window(spec.rate, spec.capacity, spec.quota_window, 3 * spec.quota_window)
    assert most == slots_in_window(spec.rate, spec.capacity, spec.quota_window) <= spec.quota


def test_the_old_bursts_overran_the_windows() -> None:
    """What the spec's check refuses: Spotify 10/s burst 10 starts 309 in 30 s (quota 300),
    Last.fm 5/s burst 5 starts 9 in one second (5)."""
    assert busiest_window(10.0, 10, 30.0, 90.0) == slots_in_window(10.0, 10, 30.0) == 309
    assert busiest_window(5.0, 5, 1.0, 3.0) == slots_in_window(5.0, 5, 1.0) == 9
    with pytest.raises(ValueError, match="over the quota of 300"):
        dataclasses.replace(SPOTIFY, capacity=10)


@pytest.mark.parametrize(("rate", "capacity"), [(0.0, 1), (-2.0, 1), (1.0, 0), (1.0, 2.5)])
def test_bad_settings_configure_nothing(rate: float, capacity: int) -> None:
    """Bad settings raise ConfigurationError and leave the provider unconfigured."""
    limiter = RateLimiter()
    with pytest.raises(ConfigurationError):
        limiter.configure_provider("spotify", rate=rate, capacity=capacity)
    assert "spotify" not in limiter.buckets


def test_bad_provider_name_and_idle_ttl() -> None:
    """An empty provider name and a non-positive idle_ttl are configuration errors."""
    with pytest.raises(ConfigurationError):
        RateLimiter().configure_provider("", rate=1.0, capacity=1)
    with pytest.raises(ConfigurationError):
        RateLimiter(idle_ttl=0)


def test_buckets_is_read_only() -> None:
    """limiter.buckets is a view; providers are added through configure_provider only."""
    limiter = limiter_with(FakeClock())
    with pytest.raises(TypeError):
        limiter.buckets["x"] = limiter.buckets["spotify"]  # type: ignore[index]


# -- acquiring ---------------------------------------------------------------------------


def test_acquire_returns_seconds_waited() -> None:
    """A burst goes at once, then each caller sleeps one interval, once, and reports it."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=2.0, capacity=2)
    waits = [limiter.acquire("spotify") for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.5, 0.5])
    assert clock.sleeps == pytest.approx([0.5, 0.5])


async def test_aacquire_returns_seconds_waited() -> None:
    """The async form waits the same amounts with clock.asleep."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=4.0, capacity=1)
    waits = [await limiter.aacquire("spotify") for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.25, 0.25])
    assert clock.sleeps == pytest.approx([0.25, 0.25])


def test_timeout_raises_without_consuming() -> None:
    """A wait longer than timeout raises RateLimitTimeout at once and reserves nothing."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=1.0, capacity=1)
    limiter.acquire("spotify")
    for _ in range(3):
        with pytest.raises(RateLimitTimeout) as err:
            limiter.acquire("spotify", timeout=0.5)
        assert err.value.provider == "spotify"
        assert err.value.retry_after == pytest.approx(1.0)
    assert clock.sleeps == []
    assert limiter.acquire("spotify", timeout=1.0) == pytest.approx(1.0)  # still the next slot
    assert limiter.get_stats()["spotify"]["granted"] == 2


async def test_async_timeout_raises_without_consuming() -> None:
    """aacquire(timeout=...) refuses the same way and leaves the slot for the next caller."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=1.0, capacity=1)
    await limiter.aacquire("spotify")
    with pytest.raises(RateLimitTimeout) as err:
        await limiter.aacquire("spotify", timeout=0)
    assert err.value.retry_after == pytest.approx(1.0)
    assert await limiter.aacquire("spotify", timeout=1.0) == pytest.approx(1.0)


def test_threads_are_served_in_arrival_order() -> None:
    """Each thread reserves the next slot on arrival and sleeps once, for exactly that slot."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    limiter.acquire("spotify")  # the only token; everyone after queues
    threads = []
    for i in range(5):
        t = threading.Thread(target=limiter.acquire, args=("spotify",), name=f"t{i}")
        t.start()
        threads.append(t)
        clock.wait_for_sleepers(i + 1)  # t{i} has its slot before t{i+1} arrives
    clock.open()
    for t in threads:
        t.join(10)
    assert [name for name, _ in clock.slept] == [f"t{i}" for i in range(5)]
    assert [s for _, s in clock.slept] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_concurrent_threads_each_sleep_once_for_a_distinct_slot() -> None:
    """Threads released together get one slot each, an interval apart; nobody polls."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=2)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(10)
        limiter.acquire("spotify")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    clock.wait_for_sleepers(6)  # 2 burst tokens, 6 sleepers
    clock.open()
    for t in threads:
        t.join(10)
    assert sorted(s for _, s in clock.slept) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert limiter.get_stats()["spotify"]["granted"] == 8


async def test_tasks_are_served_in_arrival_order() -> None:
    """asyncio tasks get consecutive slots in the order they asked."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    await limiter.aacquire("spotify")
    tasks = [asyncio.create_task(limiter.aacquire("spotify"), name=f"task{i}") for i in range(5)]
    await clock.await_sleepers(5)
    clock.open()
    waits = await asyncio.gather(*tasks)
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert [name for name, _ in clock.slept] == [f"task{i}" for i in range(5)]


async def test_threads_and_tasks_share_one_bucket() -> None:
    """One bucket serves a thread and asyncio tasks from the same queue."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    limiter.acquire("spotify")
    thread = threading.Thread(target=limiter.acquire, args=("spotify",), name="thread")
    thread.start()
    await asyncio.to_thread(clock.wait_for_sleepers, 1)
    task = asyncio.create_task(limiter.aacquire("spotify"), name="task")
    await clock.await_sleepers(2)
    clock.open()
    assert await task == pytest.approx(0.2)
    await asyncio.to_thread(thread.join, 10)
    assert [who for who, _ in clock.slept] == ["thread", "task"]
    assert [s for _, s in clock.slept] == pytest.approx([0.1, 0.2])


async def test_cancelled_last_waiter_gives_its_slot_back() -> None:
    """A task cancelled while waiting, with nobody behind it, returns its slot."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    await limiter.aacquire("spotify")
    task = asyncio.create_task(limiter.aacquire("spotify"))
    await clock.await_sleepers(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(RateLimitTimeout) as err:
        limiter.acquire("spotify", timeout=0)
    assert err.value.retry_after == pytest.approx(0.1)  # not 0.2: the slot came back
    assert limiter.get_stats()["spotify"]["granted"] == 1
    clock.open()


async def test_cancelled_waiter_with_others_behind_keeps_its_slot() -> None:
    """A cancelled waiter mid-queue leaves its slot spent (giving it back could double-grant)."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    await limiter.aacquire("spotify")
    first = asyncio.create_task(limiter.aacquire("spotify"))
    second = asyncio.create_task(limiter.aacquire("spotify"))
    await clock.await_sleepers(2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(RateLimitTimeout) as err:
        limiter.acquire("spotify", timeout=0)
    assert err.value.retry_after == pytest.approx(0.3)
    second.cancel()  # now the last one: its slot comes back
    with pytest.raises(asyncio.CancelledError):
        await second
    with pytest.raises(RateLimitTimeout) as err:
        limiter.acquire("spotify", timeout=0)
    assert err.value.retry_after == pytest.approx(0.2)
    clock.open()


def test_real_clock_smoke() -> None:
    """With the system clock, acquire really sleeps and returns non-negative waits."""
    limiter = RateLimiter(clock=SystemClock())
    limiter.configure_provider("spotify", rate=20.0, capacity=1)
    start = time.monotonic()
    waits = [limiter.acquire("spotify") for _ in range(3)]
    elapsed = time.monotonic() - start
    assert waits[0] == 0.0
    assert sum(waits) > 0  # two more tokens at 20/s cannot all be there at once
    assert elapsed >= sum(waits) * 0.99  # the waits were slept, not just reported


async def test_real_clock_smoke_async() -> None:
    """With the system clock, aacquire really awaits and returns non-negative waits."""
    limiter = RateLimiter()
    limiter.configure_provider("spotify", rate=20.0, capacity=1)
    start = time.monotonic()
    waits = [await limiter.aacquire("spotify") for _ in range(3)]
    elapsed = time.monotonic() - start
    assert sum(waits) > 0
    assert elapsed >= sum(waits) * 0.99


# -- provider signals --------------------------------------------------------------------


def test_retry_after_seconds_pauses() -> None:
    """Retry-After in seconds pauses the provider for that long, then the bucket resumes."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=10.0, capacity=10)
    assert limiter.adjust_from_headers("spotify", {"Retry-After": "30"}, status=429) == 30.0
    with pytest.raises(RateLimitTimeout) as err:
        limiter.acquire("spotify", timeout=5)
    assert err.value.retry_after == pytest.approx(30.0)
    assert limiter.get_stats()["spotify"]["paused_until"] == pytest.approx(clock.time() + 30)
    assert limiter.acquire("spotify") == pytest.approx(30.0)
    assert limiter.get_stats()["spotify"]["paused_until"] is None


def test_retry_after_http_date_pauses() -> None:
    """Retry-After as an HTTP-date pauses until that wall-clock moment."""
    clock = FakeClock()
    limiter = limiter_with(clock)
    when = formatdate(clock.time() + 120, usegmt=True)
    assert limiter.adjust_from_headers("spotify", {"retry-after": when}) == pytest.approx(120.0)
    with pytest.raises(RateLimitTimeout) as err:
        limiter.acquire("spotify", timeout=0)
    assert err.value.retry_after == pytest.approx(120.0)


def test_musicbrainz_exhausted_window_pauses_until_reset() -> None:
    """X-RateLimit-Remaining: 0 pauses until X-RateLimit-Reset (UNIX seconds)."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.configure_provider("musicbrainz", rate=1.0, capacity=1)
    headers = {
        "X-RateLimit-Limit": "800",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(clock.time()) + 2),
    }
    assert limiter.adjust_from_headers("musicbrainz", headers, status=200) == pytest.approx(2.0)
    assert limiter.acquire("musicbrainz") == pytest.approx(2.0)


def test_headers_without_signals_change_nothing() -> None:
    """A plain 200 with no rate headers leaves the bucket as it was."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=10.0, capacity=10)
    assert limiter.adjust_from_headers("spotify", {"Content-Type": "application/json"}) is None
    assert limiter.get_stats()["spotify"]["available_tokens"] == 10.0


async def test_async_header_and_pause_forms() -> None:
    """aadjust_from_headers and apause pause like their sync twins."""
    clock = FakeClock()
    limiter = limiter_with(clock)
    assert await limiter.aadjust_from_headers("spotify", {}, status=429) == 1.0
    await limiter.apause("spotify", 4.0)
    with pytest.raises(RateLimitTimeout) as err:
        await limiter.aacquire("spotify", timeout=0)
    assert err.value.retry_after == pytest.approx(4.0)


def test_resume_ends_a_retry_after_pause_and_restarts_empty() -> None:
    """resume() lifts a 429's pause at once: one token now, the next an interval later."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=10.0, capacity=10)
    limiter.acquire("spotify")  # a backlog from before the pause...
    limiter.adjust_from_headers("spotify", {"Retry-After": "3600"}, status=429)
    assert limiter.acquire("spotify", blocking=False) is False
    limiter.resume("spotify")
    assert limiter.get_stats()["spotify"]["paused_until"] is None
    assert limiter.acquire("spotify", blocking=False) == 0.0
    assert limiter.acquire("spotify", blocking=False) is False  # restarted empty
    assert limiter.acquire("spotify") == pytest.approx(0.1)
    limiter.resume("spotify")  # no pause: nothing changes
    assert limiter.acquire("spotify") == pytest.approx(0.1)


def test_resume_keeps_the_backlog_reserved_before_the_pause() -> None:
    """Slots reserved before the pause (callers asleep until them) stay reserved."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=1.0, capacity=1)
    bucket = limiter.buckets["spotify"]
    for _ in range(5):  # slots at +0 .. +4: the last caller sleeps 4 s
        bucket._reserve_local(None)
    limiter.pause("spotify", 60)
    limiter.resume("spotify")
    assert limiter.acquire("spotify") == pytest.approx(5.0)


async def test_aresume_and_a_slot_reserved_behind_the_pause() -> None:
    """A caller already asleep until the pause's end keeps its slot: resuming then changes
    nothing for the callers after it (they queue behind it, as they would have)."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=2.0, capacity=1)
    await limiter.apause("spotify", 30)
    limiter.buckets["spotify"]._reserve_local(None)  # asleep until +30
    await limiter.aresume("spotify")
    assert await limiter.aacquire("spotify") == pytest.approx(30.5)
    clock.advance(1)  # that token has refilled
    await limiter.apause("spotify", 30)
    await limiter.aresume("spotify")  # nobody behind this one
    assert await limiter.aacquire("spotify", blocking=False) == 0.0


def test_pause_never_shortens_and_ignores_nonsense() -> None:
    """A shorter or negative pause keeps the longer one already set."""
    clock = FakeClock()
    limiter = limiter_with(clock)
    limiter.pause("spotify", 10)
    limiter.pause("spotify", 1)
    limiter.pause("spotify", -5)
    with pytest.raises(RateLimitTimeout) as err:
        limiter.acquire("spotify", timeout=0)
    assert err.value.retry_after == pytest.approx(10.0)


# -- stats and rate changes --------------------------------------------------------------


def test_get_stats_reports_the_bucket_and_this_process() -> None:
    """get_stats has the design's keys plus counters, waits and pause state."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=10.0, capacity=10)
    for _ in range(12):
        limiter.acquire("spotify")
    clock.advance(0.35)
    stats = limiter.get_stats()["spotify"]
    assert stats == {
        "rate": 10.0,
        "capacity": 10,
        "available_tokens": pytest.approx(3.5),
        "granted": 12,
        "waits": {"count": 2, "total": pytest.approx(0.2), "max": pytest.approx(0.1)},
        "paused_until": None,
        "shared": False,
        # Consumption (tests/test_surface_ratelimit.py): 12 tokens in the 0.55 s since the
        # first acquire, against a refill of 10/s, drain the 3.5 left in 3.5 / (12/0.55 - 10) s.
        "consumed": 12,
        "consumption_rate": pytest.approx(12 / 0.55),
        "consumption_window": 60.0,
        "fill_ratio": pytest.approx(0.35),
        "seconds_to_exhaustion": pytest.approx(3.5 / (12 / 0.55 - 10)),
    }


def test_adjust_rate_changes_spacing_and_reset_restores_it() -> None:
    """buckets[p].adjust_rate slows the bucket; reset_rate returns to the configured rate."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    bucket = limiter.buckets["spotify"]
    assert isinstance(bucket, TokenBucket)
    limiter.acquire("spotify")
    bucket.adjust_rate(new_rate=5.0)
    assert limiter.acquire("spotify") == pytest.approx(0.2)  # the owed token, at 5/s
    assert limiter.acquire("spotify") == pytest.approx(0.2)
    assert limiter.get_stats()["spotify"]["rate"] == 5.0
    bucket.reset_rate()
    assert limiter.acquire("spotify") == pytest.approx(0.1)
    assert (bucket.rate, bucket.capacity) == (10.0, 1)


def test_adjust_rate_rejects_bad_values() -> None:
    """adjust_rate validates like configure_provider and keeps the old rate on error."""
    limiter = limiter_with(FakeClock())
    with pytest.raises(ConfigurationError):
        limiter.buckets["spotify"].adjust_rate(new_rate=0.0)
    assert limiter.buckets["spotify"].rate == 10.0


async def test_async_rate_and_stats_forms_match_the_sync_ones() -> None:
    """aadjust_rate, areset_rate, astats and aget_stats do what their sync twins do."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    bucket = limiter.buckets["spotify"]
    await limiter.aacquire("spotify")
    await bucket.aadjust_rate(new_rate=5.0)
    assert await limiter.aacquire("spotify") == pytest.approx(0.2)
    assert (await bucket.astats())["rate"] == 5.0
    await bucket.areset_rate()
    assert await limiter.aacquire("spotify") == pytest.approx(0.1)
    assert await limiter.aget_stats() == limiter.get_stats()
    assert (await limiter.aget_stats())["spotify"]["granted"] == 3


def test_close_without_redis_does_nothing() -> None:
    """close() and aclose() exist on a local limiter too, and leave it usable."""
    limiter = limiter_with(FakeClock())
    limiter.close()
    assert limiter.acquire("spotify") == 0.0


def test_a_free_token_takes_the_hot_path_and_everything_else_the_flow() -> None:
    """Once metered, a local acquire that finds a token returns one shared Granted(0.0)
    (no flow, nothing built), counted like any grant; a paused or empty bucket still goes
    through the flow: a refusal or a wait, exactly as before."""
    clock = FakeClock()
    limiter = limiter_with(clock, rate=10.0, capacity=3)
    first = limiter.acquire("spotify")  # the first one goes through the flow (the meter)
    assert limiter.buckets["spotify"]._metered
    second, third = limiter.acquire("spotify"), limiter.acquire("spotify", blocking=False)
    assert second is third  # the hot path's one answer
    assert (first, second, bool(third)) == (0.0, 0.0, True)
    assert limiter.acquire("spotify", blocking=False) is False  # empty: the flow refuses
    assert limiter.acquire("spotify") == pytest.approx(0.1)  # and waits
    limiter.pause("spotify", 5)
    with pytest.raises(RateLimitTimeout):
        limiter.acquire("spotify", timeout=1)
    stats = limiter.get_stats()["spotify"]
    assert stats["granted"] == 4
    assert stats["consumed"] == 4
