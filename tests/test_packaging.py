"""What a library-only install gets: the console script explains the missing extra."""

from __future__ import annotations

import subprocess
import sys

from tunegate._entry import HINT


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


def test_without_typer_the_command_prints_the_install_hint_and_exits_2() -> None:
    # A None entry in sys.modules makes ``import typer`` fail as if it were not installed.
    out = _run("import sys; sys.modules['typer'] = None; from tunegate._entry import main; main()")
    assert out.returncode == 2
    assert out.stderr.strip() == HINT
    assert "Traceback" not in out.stderr
    assert "pip install 'tunegate[cli]'" in HINT


def test_another_missing_module_still_raises() -> None:
    """Only the CLI's own packages get the hint; anything else is a real bug to show."""
    out = _run(
        "import sys; from tunegate._entry import main; sys.modules['tunegate.cli'] = None; main()"
    )
    assert out.returncode == 1
    assert "ModuleNotFoundError" in out.stderr


def test_with_typer_the_entry_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tunegate", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("tunegate ")


def test_the_library_works_without_prometheus_client() -> None:
    """Without the ``metrics`` extra a client still answers, with stats and no metrics."""
    code = """
import sys
sys.modules["prometheus_client"] = None
from tunegate import SpotifyClient
from tunegate.emulator import (
    DEFAULT_SPOTIFY_CLIENT_ID as ID, DEFAULT_SPOTIFY_CLIENT_SECRET as SECRET, Emulator,
)
with Emulator() as emu:
    client = SpotifyClient(ID, SECRET, base_url=emu.urls.root)
    try:
        track = client.search_track("Deadmau5", "Strobe")
        again = client.search_track("Deadmau5", "Strobe")
        stats = client.get_stats()
    finally:
        client.close()
print(track["artists"][0]["name"], again == track, stats["api_calls"], stats["cache_hits"])
print(sorted(m for m, mod in sys.modules.items() if m.startswith("prometheus") and mod))
"""
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["deadmau5 True 1 1", "[]"]
