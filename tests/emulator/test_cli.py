"""``tunegate emulator`` prints the three base URLs and serves until stopped."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time

import httpx


def _start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunegate.cli", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: dict[str, str] = {}
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("Press Ctrl+C"):
            break
        name, _, rest = line.partition(" ")
        lines[name] = rest.strip()
    return proc, lines


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_prints_urls_and_serves() -> None:
    """The three base URLs are printed, answer, and Ctrl+C stops the server cleanly."""
    proc, lines = _start("--catalog-size", "500", "--seed", "3", "--faults", "lastfm:error=503")
    try:
        spotify = lines["spotify"].split()[0]
        assert spotify.startswith("http://127.0.0.1:")
        assert spotify.endswith("/v1")
        assert lines["musicbrainz"].endswith("/ws/2")
        assert lines["lastfm"].endswith("/2.0/")
        token = httpx.post(
            lines["spotify"].split("token: ")[1].rstrip(")"),
            auth=("tunegate-test-id", "tunegate-test-secret"),
            data={"grant_type": "client_credentials"},
        ).json()["access_token"]
        got = httpx.get(
            f"{spotify}/tracks/3n3Ppam7vgaVa1iaRUc9Lp", headers={"Authorization": f"Bearer {token}"}
        )
        assert got.json()["name"] == "Mr. Brightside"
        assert httpx.get(lines["lastfm"], params={"method": "artist.getInfo"}).status_code in (
            403,
            503,
        )
    finally:
        assert _stop(proc) == 0


def test_cli_tls_writes_a_ca_file() -> None:
    """--tls serves HTTPS and prints the CA file, removed again on exit."""
    proc, lines = _start("--tls", "--catalog-size", "100")
    try:
        ca = lines["ca"]
        assert lines["lastfm"].startswith("https://")
        assert os.path.isfile(ca)
        health = httpx.get(lines["admin"] + "/health", verify=ssl.create_default_context(cafile=ca))
        assert health.json() == {"status": "ok"}
    finally:
        assert _stop(proc) == 0
    assert not os.path.exists(ca)


def test_cli_rejects_bad_faults() -> None:
    """A malformed --faults spec is a usage error, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "tunegate.cli", "emulator", "--faults", "spotify:bogus=1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "bogus" in result.stderr
