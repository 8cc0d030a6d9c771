"""The service end to end: ``tunegate serve`` as a subprocess on a free port, exercised
through httpx: --sandbox, --config FILE, a bad config, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

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


def test_sigterm_lets_an_in_flight_request_finish(emulator: Emulator) -> None:
    import threading
    import time

    track = known_track(emulator.catalog)
    emulator.set_faults("spotify/track:latency=2")

    def arrived() -> int:  # counted by the emulator when a request arrives, not when answered
        clients = emulator.stats()["clients"].get("spotify", {})
        return sum(int(c["requests"]) for c in clients.values())

    with serve_process(env=emulator.env()) as (url, proc):
        warm = httpx.get(f"{url}/v1/spotify/isrc/{track['isrc']}", timeout=30)  # the token
        assert warm.status_code == 200, warm.text
        before = arrived()
        result: dict[str, int] = {}

        def slow() -> None:
            r = httpx.get(f"{url}/v1/spotify/tracks/{track['id']}", timeout=30)
            result["status"] = r.status_code

        worker = threading.Thread(target=slow)
        worker.start()
        deadline = time.monotonic() + 20
        while arrived() == before:  # bounded poll: the request is now held by the emulator
            assert time.monotonic() < deadline, emulator.stats()
            time.sleep(0.02)
        assert "status" not in result  # still in flight (the emulator holds it for 2 s)
        proc.send_signal(signal.SIGTERM)
        worker.join(timeout=30)
        code = proc.wait(timeout=30)
    assert result == {"status": 200}  # answered after the signal, not cut off
    assert code in (0, -signal.SIGTERM)
