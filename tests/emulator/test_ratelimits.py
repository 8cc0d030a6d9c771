"""Each provider's quota: a burst over the limit gets that provider's real error; a client
that keeps to the limit never does. Windows are shrunk so the tests stay fast."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.emulator.conftest import MB_AGENT, bearer, lastfm_params
from tunegate.emulator import Emulator, RateLimit
from tunegate.emulator.ratelimits import WindowLimiter

LIMIT = RateLimit(4, 0.4)


@pytest.fixture
def emu() -> Emulator:
    with Emulator(spotify_rate=LIMIT, musicbrainz_rate=LIMIT, lastfm_rate=LIMIT) as e:
        yield e  # type: ignore[misc]


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
    assert emu.stats()["clients"][provider]
    assert (
        max(c["max_in_window"] for c in emu.stats()["clients"][provider].values()) > LIMIT.requests
    )


@pytest.mark.parametrize("provider", ["spotify", "musicbrainz", "lastfm"])
def test_a_client_within_the_limit_is_never_refused(emu: Emulator, provider: str) -> None:
    """Requests spaced comfortably under the quota always succeed."""
    spacing = LIMIT.window / LIMIT.requests * 1.5
    with httpx.Client() as client:
        call = callers(emu, client)[provider]
        statuses = []
        for _ in range(10):
            statuses.append(call().status_code)
            time.sleep(spacing)
    assert statuses == [200] * 10
    window = emu.stats()["clients"][provider]
    assert all(c["max_in_window"] <= LIMIT.requests for c in window.values())


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
