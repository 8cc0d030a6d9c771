"""A quota refusal said in a body pauses the whole fleet's bucket, as a 429 does.

Last.fm answers its error 29 ("Rate Limit Exceeded") with HTTP 200 when it sends errors
that way, with no ``Retry-After``: nothing in the headers says "pause". The limiter still
pauses the shared bucket (``RateLimiter.refused``, called by the attempts for every
rate-limited outcome the headers did not already pause), so another process sharing it
through Redis holds back too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tunegate._policy.bucket import RATE_LIMITED_PAUSE
from tunegate.emulator import Emulator
from tunegate.emulator.config import RateLimit
from tunegate.exceptions import RateLimitTimeout
from tunegate.ratelimit import RateLimiter

pytestmark = pytest.mark.redis

# The refused process: two Last.fm calls through the client's whole path (shared limiter in
# Redis); the second is over the emulator's quota of 1 a minute. Bounded by a deadline.
_REFUSED = """
import os, sys
import tunegate
from tunegate.cache import CacheManager
from tunegate.clients import Gateway, Settings
gw = Gateway(Settings.from_env(dict(os.environ)), cache_manager=CacheManager())
gw.lastfm.get_track_tags("Daft Punk", "One More Time")
print("first", flush=True)
# Three attempts (about 2.5 s of pauses) end well inside the deadline: with retries until
# the deadline, the last one could start with a few ms left and end cut, not refused.
few = gw.lastfm.with_options(retry=tunegate.RetryPolicy(max_attempts=3))
try:
    with tunegate.deadline(8.0):
        few.get_track_tags("Daft Punk", "Around the World")
except Exception as exc:
    print(type(exc).__name__, flush=True)
gw.close()
"""


def test_error_29_over_200_in_one_process_pauses_the_others_bucket(redis_url: str) -> None:
    with Emulator(lastfm_rate=RateLimit(1, 60.0), lastfm_errors_as_200=True) as emu:
        other = RateLimiter(redis=redis_url)  # another process's limiter, on the same Redis
        assert other.stats_for("lastfm")["paused_until"] is None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNEGATE_", "LASTFM_"))}
        env.update(emu.env())
        env["TUNEGATE_REDIS_URL"] = redis_url
        refused = subprocess.Popen(
            [sys.executable, "-c", _REFUSED],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            paused_until = None
            deadline = time.monotonic() + 30
            while paused_until is None and time.monotonic() < deadline:
                if refused.poll() is not None:
                    break
                paused_until = other.stats_for("lastfm")["paused_until"]
                if paused_until is None:
                    time.sleep(0.02)
            out, err = refused.communicate(timeout=30)
        finally:
            if refused.poll() is None:
                refused.kill()
                refused.wait(10)
        stats = emu.stats()
    # the second call was refused (error 29) on every attempt, each refusal an HTTP 200
    assert out.splitlines() == ["first", "RateLimited"], err
    assert stats["requests"]["lastfm"]["total"] >= 2
    assert set(stats["requests"]["lastfm"]["by_status"]) == {"200"}, "the refusal was a 200"
    assert paused_until is not None, "the other process's bucket was never paused"
    # the pause a bare 429 sets (no Retry-After), seen from the other process's side
    assert paused_until <= time.time() + RATE_LIMITED_PAUSE + 0.5
    other.close()


def test_refused_pauses_like_a_429_and_takes_the_retry_after(redis_url: str) -> None:
    """refused() is adjust_from_headers' pause: the same seconds a 429 with that Retry-After
    would set (one second without one), for everyone sharing the bucket."""
    limiter = RateLimiter(redis=redis_url)
    limiter.configure_provider("p", rate=10.0, capacity=2)
    other = RateLimiter(redis=redis_url)
    other.configure_provider("p", rate=10.0, capacity=2)
    assert limiter.refused("p") == RATE_LIMITED_PAUSE
    assert limiter.refused("p", retry_after=float("nan")) == RATE_LIMITED_PAUSE
    assert limiter.refused("p", retry_after=30.0) == 30.0
    assert limiter.adjust_from_headers("p", {"Retry-After": "30"}, status=429) == 30.0
    with pytest.raises(RateLimitTimeout) as err:
        other.acquire("p", timeout=0)
    assert 29.0 < err.value.retry_after <= 30.5
    limiter.close()
    other.close()


async def test_arefused_is_the_same_flow(redis_url: str) -> None:
    limiter = RateLimiter(redis=redis_url)
    limiter.configure_provider("p", rate=10.0, capacity=2)
    assert await limiter.arefused("p", retry_after=5.0) == 5.0
    stats = await limiter.aget_stats()
    paused_until = stats["p"]["paused_until"]
    assert paused_until is not None
    assert time.time() + 4.0 < paused_until <= time.time() + 5.5
    await limiter.aclose()
