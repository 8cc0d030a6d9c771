"""MusicBrainz over its quota: refusal (503 at once), throttling by delay (the answer held,
then served or refused), and the block of a client sending too many requests in a window.
Seen through httpx and musicbrainzngs. The emulator runs on a FakeClock: a hold moves that
clock by exactly its length (asserted) instead of waiting, and the block's windows pass by
advancing it; only the give-up test needs real time (the client's own timeout)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import musicbrainzngs
import pytest

from tunegate.emulator import Emulator, EmulatorConfig, RateLimit
from tunegate.emulator.musicbrainz import MSG_RATE
from tunegate.emulator.ratelimits import Blocker
from tunegate.testing import FakeClock

from .conftest import MB_AGENT


def isrc_url(emu: Emulator) -> str:
    return f"{emu.urls.musicbrainz}/isrc/{emu.describe_track(0)['isrc']}?fmt=json"


def throttled(emu: Emulator) -> dict[str, Any]:
    counts: dict[str, Any] = emu.stats()["throttled"].get("musicbrainz", {})
    return counts


def test_default_is_reject_at_once_and_counted(http: httpx.Client) -> None:
    assert EmulatorConfig().musicbrainz_throttle == "reject"
    assert EmulatorConfig().musicbrainz_block is False
    with Emulator(musicbrainz_rate=RateLimit(1, 30.0)) as emu:
        assert http.get(isrc_url(emu)).status_code == 200
        r = http.get(isrc_url(emu))
        assert r.status_code == 503
        assert r.json()["error"] == MSG_RATE
        assert int(r.headers["Retry-After"]) >= 1
        assert throttled(emu) == {"rejected": 1, "delayed": 0, "blocked": 0, "blocks": 0}


def test_delay_holds_the_answer_then_serves_it(http: httpx.Client) -> None:
    clock = FakeClock()
    with Emulator(
        musicbrainz_rate=RateLimit(1, 30.0),
        musicbrainz_throttle="delay",
        musicbrainz_throttle_delay=0.2,
        clock=clock,
    ) as emu:
        first = http.get(isrc_url(emu))
        assert clock.sleeps == []  # within the quota: served without a hold
        started = clock.monotonic()
        held = http.get(isrc_url(emu))
        assert first.status_code == held.status_code == 200
        assert held.json() == first.json()
        assert clock.monotonic() - started == pytest.approx(0.2)
        assert held.headers["X-RateLimit-Remaining"] == "0"
        counts = throttled(emu)
        assert counts["delayed"] == 1
        assert counts["rejected"] == 0
        assert counts["delay_seconds"] == pytest.approx(0.2)
        assert emu.stats()["requests"]["musicbrainz"]["by_status"] == {"200": 2}


def test_delay_then_reject_holds_then_answers_503(http: httpx.Client) -> None:
    clock = FakeClock()
    with Emulator(
        musicbrainz_rate=RateLimit(1, 30.0),
        musicbrainz_throttle="delay_then_reject",
        musicbrainz_throttle_delay="200ms",
        clock=clock,
    ) as emu:
        assert http.get(isrc_url(emu)).status_code == 200
        started = clock.monotonic()
        r = http.get(isrc_url(emu))
        assert clock.monotonic() - started == pytest.approx(0.2)
        assert r.status_code == 503
        assert r.json()["error"] == MSG_RATE
        counts = throttled(emu)
        assert counts["delayed"] == 1
        assert counts["rejected"] == 1


def test_client_that_gives_up_on_a_held_answer_is_counted_dropped() -> None:
    # The real clock: what ends this hold is the client's own (real) 0.3 s timeout.
    with (
        Emulator(
            musicbrainz_rate=RateLimit(1, 30.0),
            musicbrainz_throttle="delay",
            musicbrainz_throttle_delay=5.0,
        ) as emu,
        httpx.Client(headers={"User-Agent": MB_AGENT}, timeout=0.3) as impatient,
    ):
        assert impatient.get(isrc_url(emu)).status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            impatient.get(isrc_url(emu))
        deadline = time.monotonic() + 5
        while "dropped" not in emu.stats()["requests"]["musicbrainz"]["by_status"]:
            assert time.monotonic() < deadline, "the held request was never counted"
            time.sleep(0.05)
        assert emu.stats()["requests"]["musicbrainz"]["by_status"] == {"200": 1, "dropped": 1}
        assert emu.stats()["internal_errors"] == 0


def test_throttle_mode_changes_at_run_time(http: httpx.Client) -> None:
    clock = FakeClock()
    with Emulator(musicbrainz_rate=RateLimit(1, 30.0), clock=clock) as emu:
        assert http.get(isrc_url(emu)).status_code == 200
        assert http.get(isrc_url(emu)).status_code == 503
        assert clock.sleeps == []  # "reject" answers at once
        emu.configure(musicbrainz_throttle="delay", musicbrainz_throttle_delay=0.1)
        started = clock.monotonic()
        assert http.get(isrc_url(emu)).status_code == 200
        assert clock.monotonic() - started == pytest.approx(0.1)
        r = http.patch(
            f"{emu.urls.admin}/config",
            json={"musicbrainz_throttle": "delay_then_reject", "musicbrainz_throttle_delay": "1s"},
        )
        assert r.status_code == 200
        assert r.json()["musicbrainz_throttle"] == "delay_then_reject"
        assert r.json()["musicbrainz_throttle_delay"] == 1.0
        bad = http.patch(f"{emu.urls.admin}/config", json={"musicbrainz_throttle": "wait"})
        assert bad.status_code == 400
        assert "reject, delay, delay_then_reject" in bad.json()["error"]
        assert emu.config.musicbrainz_throttle == "delay_then_reject"
        counts = throttled(emu)
        assert counts["rejected"] == 1
        assert counts["delayed"] == 1


def test_musicbrainzngs_gets_the_held_answer() -> None:
    """The real client sees data, only later: what it meets at the real service in 2026."""
    clock = FakeClock()
    with Emulator(
        musicbrainz_rate=RateLimit(1, 30.0),
        musicbrainz_throttle="delay",
        musicbrainz_throttle_delay=0.2,
        clock=clock,
    ) as emu:
        musicbrainzngs.set_useragent("tunegate-tests", "0.1", "https://example.org/tunegate")
        musicbrainzngs.set_hostname(emu.urls.host, use_https=False)
        musicbrainzngs.set_rate_limit(False)  # its own pacing would hide the throttle
        try:
            isrc = emu.describe_track(0)["isrc"]
            first = musicbrainzngs.get_recordings_by_isrc(isrc)
            started = clock.monotonic()
            second = musicbrainzngs.get_recordings_by_isrc(isrc)
            held_for = clock.monotonic() - started
        finally:
            musicbrainzngs.set_rate_limit(limit_or_interval=1.0, new_requests=1)
        assert second == first
        assert held_for == pytest.approx(0.2)
        assert first["isrc"]["recording-list"]
        assert throttled(emu)["delayed"] == 1


def test_block_after_too_many_requests_until_the_rate_drops(http: httpx.Client) -> None:
    clock = FakeClock()
    with Emulator(
        musicbrainz_rate=RateLimit(1000, 1.0),
        musicbrainz_block=True,
        musicbrainz_block_rate=RateLimit(3, 3.0),
        musicbrainz_block_seconds=0.5,
        clock=clock,
    ) as emu:
        url = isrc_url(emu)
        assert [http.get(url).status_code for _ in range(3)] == [200, 200, 200]
        fourth, fifth = http.get(url), http.get(url)
        for r in (fourth, fifth):
            assert r.status_code == 503
            assert r.json()["error"] == MSG_RATE
            assert r.headers["Retry-After"] == "1"
            assert r.headers["X-RateLimit-Remaining"] == "0"
        # The block is per client: another source address is served meanwhile.
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(headers={"User-Agent": MB_AGENT}, transport=other, timeout=10) as c:
            assert c.get(url).status_code == 200
        # Past the block (0.5 s) but still over 3 in the window (3 s): blocked again.
        clock.advance(0.6)
        assert http.get(url).status_code == 503
        # Once the window has emptied the client is served.
        clock.advance(3.1)
        assert http.get(url).status_code == 200
        counts = throttled(emu)
        assert counts["blocked"] == 3
        assert counts["blocks"] == 2  # exact: on the fake clock no request ages in between
        assert counts["rejected"] == 0
        clients = emu.stats()["clients"]["musicbrainz"]
        assert set(clients) == {"127.0.0.1", "127.0.0.2"}


def test_block_is_off_by_default(http: httpx.Client) -> None:
    with Emulator(musicbrainz_rate=RateLimit(1000, 1.0)) as emu:
        assert {http.get(isrc_url(emu)).status_code for _ in range(12)} == {200}
        assert throttled(emu) == {}


def test_blocker_rule() -> None:
    """More than 10 in 10 s blocks; every call counts, so hammering keeps the block."""
    blocker = Blocker(RateLimit(10, 10.0), seconds=5.0)
    assert [blocker.check("a", float(t)) for t in range(10)] == [(0.0, False)] * 10
    assert blocker.check("a", 9.5) == (5.0, True)
    assert blocker.check("b", 9.5) == (0.0, False)
    assert blocker.check("a", 10.0) == (5.0, False)  # still 11 in the window: extended
    assert blocker.check("a", 30.0) == (0.0, False)
