"""The pytest plugin users load: fixtures and the emulator marker."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tunegate.emulator import Emulator, EmulatorURLs


@pytest.mark.emulator(spotify_search_limit_max=50)
def test_marker_configures_the_emulator_fixture(emulator: Emulator) -> None:
    """``@pytest.mark.emulator(...)`` is registered and reaches the fixture's settings."""
    assert emulator.config.spotify_search_limit_max == 50
    health = httpx.get(emulator.urls.admin + "/health", timeout=5)
    assert health.status_code == 200


def test_loading_the_plugin_does_not_import_the_emulator() -> None:
    """Every pytest session of every user loads the plugin: the emulator waits for a fixture."""
    code = (
        "import sys, tunegate.testing; "
        "print(sorted(m for m in sys.modules if m.startswith('tunegate.emulator')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_emulator_urls_fixture_points_at_the_running_emulator(
    emulator: Emulator, emulator_urls: EmulatorURLs
) -> None:
    assert emulator_urls == emulator.urls
    health = httpx.get(emulator_urls.admin + "/health", timeout=5)
    assert health.status_code == 200
