"""Issue 11, behaviours 2, 3 and 5, measured against the emulator: a call in its backoff
stops once another caller's failures open the breaker; sustained 429s cost about one
request per pause across concurrent callers; a slow body is taken when the caller's
deadline allows it. Waiting runs on a FakeClock except for the drip, which is real time
kept short by short deadlines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.clients import conftest as client_fixtures
from tests.clients.conftest import Driver, requests_to, statuses
from tunegate._http import HttpConfig
from tunegate._policy.quota import QuotaProbe
from tunegate._policy.retry import RetryPolicy
from tunegate.breaker import CircuitBreaker
from tunegate.deadlines import deadline
from tunegate.emulator import Emulator
from tunegate.exceptions import (
    CircuitBreakerOpenError,
    ConfigurationError,
    ProviderUnavailable,
    RateLimited,
)
from tunegate.testing import FakeClock

driver = client_fixtures.driver
emulator_settings = client_fixtures.emulator_settings
_no_url_overrides = client_fixtures._no_url_overrides


class HookClock(FakeClock):
    """A FakeClock that runs ``hook`` (once) right after the first sleep it is asked for,
    and remembers which sleeps the hook itself made (``during``)."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], Any] | None = None
        self.during = (0, 0)

    def _take(self) -> Callable[[], Any] | None:
        hook, self.hook = self.hook, None
        return hook

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        hook = self._take()
        if hook is not None:
            start = len(self.sleeps)
            hook()
            self.during = (start, len(self.sleeps))

    async def asleep(self, seconds: float) -> None:
        await super().asleep(seconds)
        hook = self._take()
        if hook is not None:
            start = len(self.sleeps)
            await hook()
            self.during = (start, len(self.sleeps))

    def outside_hook(self) -> list[float]:
        start, end = self.during
        return self.sleeps[:start] + self.sleeps[end:]


# -- 2: the breaker is looked at during a backoff ---------------------------------------------


def test_a_call_in_its_backoff_fails_fast_once_another_caller_opens_the_breaker(
    driver: Driver, emulator: Emulator
) -> None:
    """Call A fails once (503) and backs off 2 s. While it sleeps, call B's two failures
    open the shared breaker. A then fails with CircuitBreakerOpenError without another
    request and without sleeping the rest of its 2 s (before: it slept all 2 s)."""
    clock = HookClock()
    breaker = CircuitBreaker("spotify", failure_threshold=3, timeout=60, clock=clock)
    slow = RetryPolicy(max_attempts=3, base=2.0, cap=2.0, jitter="none", deadline=30.0)
    quick = RetryPolicy(max_attempts=2, base=0.01, cap=0.01, jitter="none", deadline=30.0)
    a = driver.spotify(clock=clock, circuit_breaker=breaker, retry=slow, retry_budget=False)
    b = driver.spotify(clock=clock, circuit_breaker=breaker, retry=quick, retry_budget=False)
    emulator.set_faults("spotify/search:error=503,retry_after=0")
    seen: list[BaseException] = []

    def other_caller() -> Any:
        if driver.loop is None:
            try:
                b.search_track("Muse", "Hysteria")
            except ProviderUnavailable as exc:
                seen.append(exc)
            return None

        async def go() -> None:
            try:
                await b.search_track("Muse", "Hysteria")
            except ProviderUnavailable as exc:
                seen.append(exc)

        return go()

    clock.hook = other_caller
    err = driver.catch(a, "search_track", "Deadmau5", "Strobe")
    assert isinstance(err, CircuitBreakerOpenError)
    assert len(seen) == 1  # B ran inside A's backoff and opened the breaker
    assert requests_to(emulator, "spotify", "search") == 1 + 2  # A once, B twice: no more
    slept = sum(clock.outside_hook())
    assert 0 < slept < 2.0  # one slice of the backoff, not all of it


# -- 3: quota refusals are damped across calls ----------------------------------------------


def _seven_searches(driver: Driver, emulator: Emulator, client: Any) -> list[Any]:
    tracks = [emulator.describe_track(i) for i in range(7)]
    calls = [(client, "search_track", (t["artists"][0], t["title"])) for t in tracks]
    return driver.together(calls, errors=True)


def test_sustained_429s_cost_about_one_request_per_pause(
    driver: Driver, emulator: Emulator
) -> None:
    """7 concurrent calls under sustained 429 (Retry-After: 1), 4 attempts each, no retry
    budget: before, 24 requests (every call retried on its own after each pause); now the
    7 first attempts plus one probe per pause (3), and every call ends RateLimited."""
    clock = FakeClock()
    retry = RetryPolicy(max_attempts=4, base=0.5, cap=2.0, deadline=30.0)
    cache = driver.cache(clock=clock)
    client = driver.spotify(clock=clock, cache_manager=cache, retry=retry, retry_budget=False)
    # Each answer 0.3 s late, so the 7 first attempts are all out before the first refusal
    # comes back (a call started after a probe round would add its own rounds).
    emulator.set_faults("spotify/search:error=429,retry_after=1,latency=0.3")
    results = _seven_searches(driver, emulator, client)
    assert all(isinstance(r, RateLimited) for r in results), results
    pauses = retry.max_attempts - 1
    assert requests_to(emulator, "spotify", "search") <= 7 + pauses


def test_when_the_probe_is_answered_the_waiting_calls_go_on(
    driver: Driver, emulator: Emulator
) -> None:
    """The 7 first attempts are refused, then the provider answers again: the probe and the
    calls that waited for it all get their answer (no call gives up on a quota that is back)."""
    clock = FakeClock()
    retry = RetryPolicy(max_attempts=4, base=0.5, cap=2.0, deadline=30.0)
    cache = driver.cache(clock=clock)
    client = driver.spotify(clock=clock, cache_manager=cache, retry=retry, retry_budget=False)
    emulator.set_faults("spotify/search:error=429,retry_after=1,times=7,latency=0.3")
    results = _seven_searches(driver, emulator, client)
    assert all(isinstance(r, dict) for r in results), results
    answered = statuses(emulator, "spotify", "search")
    assert answered["429"] == 7
    assert answered["200"] <= 7  # one answer per call at most (two may coalesce)


def test_quota_probe_one_prober_the_others_wait_for_its_answer() -> None:
    probe = QuotaProbe()
    first, fut = probe.join()
    second, same = probe.join()
    assert first
    assert not second
    assert same is fut
    QuotaProbe.settle(fut, True)
    QuotaProbe.settle(fut, False)  # a second answer is ignored
    assert fut.result(0) is True
    again, new = probe.join()  # the next refusal after an answer starts a new probe
    assert again
    assert new is not fut


# -- 5: the deadline, per call and per provider ---------------------------------------------

DRIP = "spotify/search:drip,drip_seconds=1.0"
# Each attempt cut at 0.5 s (the HTTP total timeout), one attempt: the default's shape.
SHORT = HttpConfig(connect_timeout=1.0, read_timeout=1.0, total_timeout=0.5)
ONCE = RetryPolicy(max_attempts=1, deadline=5.0)


def test_a_slow_drip_is_abandoned_at_the_attempt_timeout_by_default(
    driver: Driver, emulator: Emulator
) -> None:
    client = driver.spotify(http=SHORT, retry=ONCE)
    emulator.set_faults(DRIP)
    err = driver.catch(client, "search_track", "Muse", "Hysteria", use_cache=False)
    assert isinstance(err, ProviderUnavailable)


def test_a_per_call_deadline_takes_the_slow_answer(driver: Driver, emulator: Emulator) -> None:
    client = driver.spotify(http=SHORT, retry=ONCE)
    emulator.set_faults(DRIP)
    with deadline(4.0):
        found = driver.call(client, "search_track", "Muse", "Hysteria", use_cache=False)
    assert found is not None
    assert found["name"] == "Hysteria"
    # Outside the block the client's own settings hold again.
    err = driver.catch(client, "search_track", "Muse", "Hysteria", use_cache=False)
    assert isinstance(err, ProviderUnavailable)


def test_a_per_call_deadline_also_cuts_short(driver: Driver, emulator: Emulator) -> None:
    client = driver.spotify(http=HttpConfig(total_timeout=4.0), retry=ONCE)
    emulator.set_faults(DRIP)
    with deadline(0.4):
        err = driver.catch(client, "search_track", "Muse", "Hysteria", use_cache=False)
    assert isinstance(err, ProviderUnavailable)


def test_a_per_provider_deadline_takes_the_slow_answer(driver: Driver, emulator: Emulator) -> None:
    patient = HttpConfig(connect_timeout=1.0, read_timeout=1.0, total_timeout=4.0)
    client = driver.spotify(http=patient, retry=RetryPolicy(max_attempts=1, deadline=4.0))
    emulator.set_faults(DRIP)
    found = driver.call(client, "search_track", "Muse", "Hysteria", use_cache=False)
    assert found is not None
    assert found["name"] == "Hysteria"


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "10", True])
def test_a_bad_deadline_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError), deadline(bad):
        pass
