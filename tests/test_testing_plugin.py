"""The pytest plugin users load: fixtures and the emulator marker."""

from __future__ import annotations

import httpx
import pytest

from tunegate.emulator import Emulator


@pytest.mark.emulator(spotify_search_limit_max=50)
def test_marker_configures_the_emulator_fixture(emulator: Emulator) -> None:
    """``@pytest.mark.emulator(...)`` is registered and reaches the fixture's settings."""
    assert emulator.config.spotify_search_limit_max == 50
    health = httpx.get(emulator.urls.admin + "/health", timeout=5)
    assert health.status_code == 200
