"""The service end to end: ``tunegate serve`` as a subprocess on a free port, exercised
through httpx: --sandbox, --config FILE, a bad config, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette", reason="the service needs the 'serve' extra")

from tests._redis_server import free_port
from tunegate.emulator import Emulator
from tunegate.emulator.catalog import Catalog

from ._proc import serve_process
from .conftest import known_track


def test_sandbox_serves_the_typed_api_and_stops_on_sigterm() -> None:
    track = known_track(Catalog(10_000, 0))
    with serve_process("--sandbox") as (url, proc), httpx.Client(base_url=url, timeout=30) as c:
        q = {"artist": track["artist"], "title": track["title"]}
        r = c.get("/v1/spotify/search", params=q)
        assert r.status_code == 200, r.text
        assert r.json()["id"] == track["id"]
        assert r.headers["x-cache"] in ("miss", "hit")  # the sandbox port is shared by runs
        assert c.get("/v1/spotify/search", params=q).headers["x-cache"] == "hit"
        r = c.post("/v1/enrich", json={"rows": [q]})
        assert r.status_code == 200, r.text
        assert r.json()["records"][0]["status"] in ("ok", "partial")
        r = c.get("/v1/spotify/search", params={"artist": "x"}, headers={"X-Request-ID": "abc1"})
        assert r.status_code == 422
        assert r.headers["x-request-id"] == "abc1"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean shutdown


def test_config_file_points_the_service_at_the_providers(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = emulator.env()
    cfg = tmp_path / "tunegate.toml"
    cfg.write_text(
        "\n".join(
            [
                f'spotify_client_id = "{env["SPOTIFY_CLIENT_ID"]}"',
                f'spotify_client_secret = "{env["SPOTIFY_CLIENT_SECRET"]}"',
                f'spotify_api_url = "{env["TUNEGATE_SPOTIFY_API_URL"]}"',
                f'spotify_auth_url = "{env["TUNEGATE_SPOTIFY_AUTH_URL"]}"',
                'cache = "memory"',
            ]
        )
        + "\n"
    )
    track = known_track(emulator.catalog)
    with serve_process("--config", str(cfg)) as (url, _), httpx.Client(base_url=url) as c:
        r = c.get(f"/v1/spotify/tracks/{track['id']}", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["id"] == track["id"]
        # Only Spotify is in the file: the others are "not configured", not a crash.
        r = c.get("/v1/lastfm/artist-tags", params={"artist": "a"}, timeout=30)
        assert r.status_code == 503
        assert r.json()["type"].endswith("/not-configured")
        ready = c.get("/readyz", timeout=30).json()
        assert ready["checks"]["providers"]["configured"] == ["spotify"]
    assert emulator.stats()["requests"]  # the calls reached the emulator of the file


def test_a_bad_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("no_such_key = 1\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunegate",
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "no_such_key" in out.stderr
    assert "Traceback" not in out.stderr


def _arrived(emulator: Emulator) -> int:
    """Spotify requests the emulator has seen arrive (counted on arrival, not answer)."""
    clients = emulator.stats()["clients"].get("spotify", {})
    return sum(int(c["requests"]) for c in clients.values())


def _hold_one(emulator: Emulator, url: str, track: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """One slow typed call in a thread, returned once the emulator holds it."""
    warm = httpx.get(f"{url}/v1/spotify/isrc/{track['isrc']}", timeout=30)  # the token
    assert warm.status_code == 200, warm.text
    before = _arrived(emulator)
    result: dict[str, Any] = {}

    def slow() -> None:
        try:
            r = httpx.get(f"{url}/v1/spotify/tracks/{track['id']}", timeout=60)
        except httpx.TransportError as exc:
            result["error"] = type(exc).__name__
        else:
            result["status"] = r.status_code

    worker = threading.Thread(target=slow)
    worker.start()
    deadline = time.monotonic() + 20
    while _arrived(emulator) == before:  # bounded poll: the request is now held upstream
        assert time.monotonic() < deadline, emulator.stats()
        time.sleep(0.02)
    assert not result  # still in flight (the emulator holds it)
    return worker, result


def _answered(emulator: Emulator) -> int:
    """Spotify track requests the emulator has answered (counted when answered)."""
    endpoints = emulator.stats()["requests"].get("spotify", {}).get("endpoints", {})
    return int(endpoints.get("track", {}).get("total", 0))


def _refused(url: str, proc: subprocess.Popen[bytes]) -> bool:
    """True once a new connection is refused while the process still runs (draining)."""
    for _ in range(250):  # bounded: uvicorn closes its listener right after the signal
        try:
            httpx.get(url + "/healthz", timeout=2)
        except httpx.ConnectError:
            return proc.poll() is None
        time.sleep(0.02)
    return False


def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(emulator: Emulator) -> None:
    track = known_track(emulator.catalog)
    emulator.set_faults("spotify/track:latency=4")  # under the 10 s drain
    with serve_process(env=emulator.env()) as (url, proc):
        worker, result = _hold_one(emulator, url, track)
        proc.send_signal(signal.SIGTERM)
        assert _refused(url, proc)  # no new connection while the old one drains
        worker.join(timeout=30)
        code = proc.wait(timeout=30)
        log = proc.log()
    assert result == {"status": 200}  # answered after the signal, not cut off
    assert code in (0, -signal.SIGTERM)
    assert "timeout graceful shutdown exceeded" not in log


def test_sigterm_cancels_what_outlasts_the_drain_deadline(emulator: Emulator) -> None:
    track = known_track(emulator.catalog)
    emulator.set_faults("spotify/track:latency=4")  # well past a 1 s drain
    with serve_process(env={**emulator.env(), "TUNEGATE_DRAIN": "1"}) as (url, proc):
        worker, result = _hold_one(emulator, url, track)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)  # it exits: it does not wait for the provider
        answered_at_exit = _answered(emulator)
        log = proc.log()
        worker.join(timeout=30)
    assert code in (0, -signal.SIGTERM)
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in log
    assert "status" not in result or result["status"] >= 500, result  # cut off, not answered
    assert "Application shutdown complete" in log  # the gateway was still closed cleanly
    assert answered_at_exit == 0  # the process left before the provider answered
    deadline = time.monotonic() + 30
    while _answered(emulator) == 0:  # bounded: let the emulator finish its held request
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_bad_drain_setting_is_refused() -> None:
    from tunegate.exceptions import ConfigurationError
    from tunegate.service import ServiceOptions

    assert ServiceOptions.from_env({}).drain == 10
    assert ServiceOptions.from_env({"TUNEGATE_DRAIN": "3"}).drain == 3
    for bad in ("0", "-1", "2.5", "x", "99999"):
        with pytest.raises(ConfigurationError, match="TUNEGATE_DRAIN"):
            ServiceOptions.from_env({"TUNEGATE_DRAIN": bad})
