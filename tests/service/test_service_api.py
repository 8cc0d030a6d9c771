"""The service end to end: ``tunegate serve --sandbox`` as a subprocess on a
free port, exercised through httpx."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("starlette", reason="the service needs the 'serve' extra")

from tunegate.emulator.catalog import Catalog


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "LASTFM_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunegate", "serve", "--sandbox", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"service did not start: {out}")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean shutdown


def test_typed_api_answers_from_the_emulator(base_url: str) -> None:
    cat = Catalog(10_000, 0)
    track = cat.track(0)
    artist = cat.artist(track.artists[0]).name
    with httpx.Client(base_url=base_url, timeout=30) as c:
        r = c.get("/v1/spotify/search", params={"artist": artist, "title": track.title})
        assert r.status_code == 200, r.text
        assert r.json()["id"] == track.spotify_id
        r = c.get(f"/v1/spotify/tracks/{track.spotify_id}")
        assert r.status_code == 200
        assert r.json()["id"] == track.spotify_id
        r = c.get(f"/v1/musicbrainz/isrc/{track.isrc}")
        assert r.status_code == 200, r.text
        r = c.get("/v1/lastfm/tags", params={"artist": artist, "title": track.title})
        assert r.status_code == 200, r.text
        r = c.post("/v1/enrich", json={"rows": [{"artist": artist, "title": track.title}]})
        assert r.status_code == 200, r.text
        (record,) = r.json()["records"]
        assert record["status"] in ("ok", "partial")


def test_errors_are_problem_json_with_request_id(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        r = c.get("/v1/spotify/search", params={"artist": "x"}, headers={"X-Request-ID": "abc1"})
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("/invalid-input")
        assert r.json()["field"] == "title"
        assert r.headers["x-request-id"] == "abc1"
        r = c.post("/v1/enrich", json={"rows": []})
        assert r.status_code == 422
        assert r.json()["field"] == "rows"
        r = c.get("/v1/spotify/tracks/" + "0" * 22)
        assert r.status_code == 404, r.text
        assert r.json()["type"].endswith("/not-found")
        assert r.headers["x-request-id"]
