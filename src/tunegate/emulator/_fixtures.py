"""pytest fixtures for users' suites (re-exported by ``tunegate.testing``, a pytest plugin).

``emulator`` starts a fresh emulator for one test and stops it afterwards; ``emulator_urls``
is its :class:`EmulatorURLs`. Settings come from an ``emulator_settings`` fixture if the
suite defines one (a dict of :class:`Emulator` keyword arguments), then from a
``@pytest.mark.emulator(...)`` marker on the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tunegate.emulator.server import Emulator, EmulatorURLs

__all__ = ["emulator", "emulator_urls"]


def _settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    with contextlib.suppress(pytest.FixtureLookupError):
        settings.update(request.getfixturevalue("emulator_settings"))
    marker = request.node.get_closest_marker("emulator")
    if marker is not None:
        settings.update(marker.kwargs)
    return settings


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A running provider emulator, fresh for this test (catalogues are shared, so it is cheap)."""
    with Emulator(**_settings(request)) as emu:
        yield emu


@pytest.fixture
def emulator_urls(emulator: Emulator) -> EmulatorURLs:
    """Base URLs of the ``emulator`` fixture: spotify (/v1), spotify_token, musicbrainz, lastfm."""
    return emulator.urls
