"""Each provider's quota: a burst over the limit gets that provider's real error; a client
that keeps to the limit never does. Windows are shrunk so the tests stay fast."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.emulator.conftest import MB_AGENT, bearer, lastfm_params
from tunegate.emulator import Emulator, RateLimit
from tunegate.emulator.ratelimits import WindowLimiter
from tunegate.emulator.stats import MAX_CLIENTS, OTHERS, Stats

LIMIT = RateLimit(4, 0.4)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(spotify_rate=LIMIT, musicbrainz_rate=LIMIT, lastfm_rate=LIMIT) as e:
        yield e


def callers(emu: Emulator, client: httpx.Client) -> dict[str, Callable[[], httpx.Response]]:
    headers = bearer(emu)
    return {
        "spotify": lambda: client.get(
            f"{emu.urls.spotify}/tracks/3n3Ppam7vgaVa1iaRUc9Lp", headers=headers
        ),
        "musicbrainz": lambda: client.get(
            f"{emu.urls.musicbrainz}/isrc/GBAHS1400099",
            params={"fmt": "json"},
            headers={"User-Agent": MB_AGENT},
        ),
        "lastfm": lambda: client.get(
            emu.urls.lastfm,
            params=lastfm_params(method="artist.getInfo", artist="U2", format="json"),
        ),
    }


@pytest.mark.parametrize("provider", ["spotify", "musicbrainz", "lastfm"])
def test_burst_gets_the_providers_error(emu: Emulator, provider: str) -> None:
    """Going over quota: Spotify 429 + Retry-After, MusicBrainz 503, Last.fm error 29."""
    with httpx.Client() as client:
        call = callers(emu, client)[provider]
        answers = [call() for _ in range(LIMIT.requests + 3)]
    statuses = [r.status_code for r in answers]
    assert statuses[: LIMIT.requests] == [200] * LIMIT.requests
    refused = answers[-1]
    if provider == "spotify":
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json() == {
            "error": {"status": 429, "message": "Too many requests", "reason": "QUOTA_EXCEEDED"}
        }
    elif provider == "musicbrainz":
        assert refused.status_code == 503
        assert refused.json()["error"].startswith(
            "Your requests are exceeding the allowable rate limit"
        )
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert "Retry-After" in refused.headers
    else:
        assert refused.status_code == 429
        assert refused.json()["error"] == 29
    stats = emu.stats()
    assert stats["clients"][provider]
    assert max(c["max_in_window"] for c in stats["clients"][provider].values()) > LIMIT.requests
    refusals = sum(1 for s in statuses if s != 200)
    assert stats["throttled"][provider]["rejected"] == refusals  # each provider's the same


def test_lastfm_error_29_with_status_200_is_counted_as_throttled() -> None:
    """With ``lastfm_errors_as_200`` no status shows the refusal: the throttled count does."""
    with Emulator(lastfm_rate=RateLimit(1, 30.0), lastfm_errors_as_200=True) as emu:
        with httpx.Client() as client:
            answers = [callers(emu, client)["lastfm"]() for _ in range(3)]
        assert [r.status_code for r in answers] == [200] * 3
        assert [r.json().get("error") for r in answers] == [None, 29, 29]
        stats = emu.stats()
    assert stats["throttled"]["lastfm"]["rejected"] == 2
    assert stats["requests"]["lastfm"]["by_status"] == {"200": 3}


@pytest.mark.parametrize("provider", ["spotify", "musicbrainz", "lastfm"])
def test_a_client_within_the_limit_is_never_refused(emu: Emulator, provider: str) -> None:
    """Requests paced exactly at the quota always succeed, and the stats agree."""
    spacing = LIMIT.window / LIMIT.requests  # each call waits for the last answer, then this
    with httpx.Client() as client:
        call = callers(emu, client)[provider]
        statuses = []
        for _ in range(10):
            statuses.append(call().status_code)
            time.sleep(spacing)
    assert statuses == [200] * 10
    stats = emu.stats()
    assert all(c["max_in_window"] <= LIMIT.requests for c in stats["clients"][provider].values())
    assert stats["throttled"].get(provider, {}).get("rejected", 0) == 0


def test_window_limiter_policy() -> None:
    """The rolling window admits N per window and says when the next call fits."""
    limiter = WindowLimiter(RateLimit(2, 10.0))
    assert limiter.check("a", 0.0).allowed
    assert limiter.check("a", 1.0).allowed
    refused = limiter.check("a", 2.0)
    assert not refused.allowed
    assert refused.retry_after == 8
    assert limiter.check("b", 2.0).allowed  # per client
    assert limiter.check("a", 10.0).allowed  # the first call left the window
    assert not limiter.check("a", 10.5).allowed


@pytest.mark.parametrize(
    ("limit", "spacing", "calls"),
    [(RateLimit(1, 1.0), 0.97, 30), (RateLimit(300, 30.0), 0.0999, 600)],
)
def test_stats_count_by_the_limiters_rule(limit: RateLimit, spacing: float, calls: int) -> None:
    """A client the limiter admits every time never shows more than the limit in the stats."""
    limiter, stats = WindowLimiter(limit), Stats()
    for k in range(calls):
        now = 1000.0 + k * spacing
        assert limiter.check("app", now).allowed, k
        stats.arrival("spotify", "app", limit.window, now)
    seen = stats.snapshot()["clients"]["spotify"]["app"]
    assert seen["requests"] == calls
    assert seen["max_in_window"] == limit.requests


def test_idle_clients_are_forgotten() -> None:
    """The limiter drops clients with nothing left in their window once many are tracked."""
    limiter = WindowLimiter(RateLimit(2, 1.0))
    for n in range(5000):
        assert limiter.check(f"10.0.{n // 256}.{n % 256}", n * 0.001).allowed
    assert len(limiter) < 2100  # swept at 1024, 2048, ...: only the last second's clients stay
    assert limiter.check("late", 100.0).allowed
    assert len(limiter) < 2100
    limiter.check("busy", 100.0)
    limiter.check("busy", 100.1)
    assert not limiter.check("busy", 100.2).allowed  # a live window is never forgotten


def test_stats_name_a_bounded_number_of_clients() -> None:
    """Past MAX_CLIENTS, newcomers are counted together as "(others)"."""
    stats = Stats()
    for n in range(MAX_CLIENTS + 5):
        stats.arrival("lastfm", f"client-{n}", 300.0, float(n))
    clients = stats.snapshot()["clients"]["lastfm"]
    assert len(clients) == MAX_CLIENTS + 1
    assert clients[OTHERS]["requests"] == 5


def test_stats_report_the_highest_rate_in_any_second() -> None:
    """``max_per_second`` is the most requests one client made in any one second, whatever
    the provider's quota window (Last.fm's is 5 minutes)."""
    from tunegate.emulator.stats import _ClientRate

    rate = _ClientRate(300.0)
    for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.45, 1.5):  # six in the first second
        rate.add(t)
    assert rate.max_per_second == 6
    assert rate.max_in_window == 8
