"""Two sandbox runs at once share one emulator (hence one cache scope)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from tunegate.emulator import Emulator
from tunegate.sandbox import sandbox, sandbox_port

SEED, SIZE = 7, 500  # a sandbox no other test uses

CHILD = f"""
import sys, time, urllib.request
from tunegate.sandbox import sandbox
with sandbox(seed={SEED}, catalog_size={SIZE}) as (emu, settings):
    print(type(emu).__name__, emu.port, flush=True)
    sys.stdin.readline()  # the parent has left its sandbox by now
    time.sleep(1)
    with urllib.request.urlopen(emu.urls.admin + "/health", timeout=5) as r:
        print(r.read().decode(), flush=True)
"""


def test_second_sandbox_reuses_the_running_one() -> None:
    with sandbox(seed=SEED, catalog_size=SIZE) as (first, _):
        with sandbox(seed=SEED, catalog_size=SIZE) as (second, settings):
            assert type(second) is not Emulator
            assert second.port == first.port == sandbox_port(SEED, SIZE)
            assert settings.spotify_api_url == first.urls.spotify
            assert second.stats()["requests"].keys() == first.stats()["requests"].keys()
        # The second run's end left the first serving.
        with urllib.request.urlopen(first.urls.admin + "/health", timeout=5) as r:
            assert b'"ok"' in r.read()


def test_foreign_occupant_moves_to_the_next_port() -> None:
    foreign = Emulator(seed=SEED + 1, catalog_size=SIZE, port=sandbox_port(SEED, SIZE))
    with foreign, sandbox(seed=SEED, catalog_size=SIZE) as (emu, _):
        assert type(emu) is Emulator
        assert emu.port == sandbox_port(SEED, SIZE, 1)


def test_owner_keeps_serving_until_an_attached_run_ends() -> None:
    with sandbox(seed=SEED, catalog_size=SIZE) as (owner, _):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().split() == ["_Attached", str(owner.port)]
        child.stdin.write("go\n")
        child.stdin.flush()
        started = time.monotonic()
    # Leaving the block waited for the child, whose last call still reached the emulator.
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert '"ok"' in out
    assert time.monotonic() - started >= 1


def test_emulator_command_uses_the_emulators_env_block_and_fault_help() -> None:
    from tunegate.emulator import FAULTS_HELP

    help_text = subprocess.run(
        [sys.executable, "-m", "tunegate", "emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "error=STATUS[@P]" in help_text
    assert FAULTS_HELP.splitlines()[0].split()[0] in help_text
    with subprocess.Popen(
        [sys.executable, "-m", "tunegate", "emulator", "--print-env", "--seed", "3"],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            with Emulator(seed=3) as emu:
                expected = emu.env()
            lines = [proc.stdout.readline().strip() for _ in expected]
        finally:
            proc.terminate()
    got = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    assert got.keys() == expected.keys()
    for name in ("SPOTIFY_CLIENT_ID", "LASTFM_API_KEY", "TUNEGATE_MUSICBRAINZ_RATE"):
        assert got[name].strip("'") == expected[name]
