"""Test support that users can load in their own suites (``pytest -p tunegate.testing`` is
automatic once tunegate is installed: it registers itself as a pytest plugin).

- :class:`FakeClock`: a :class:`tunegate._clock.Clock` whose time moves only when told to,
  or when code under test sleeps on it; policies and drivers accept it as ``clock=``.
- The emulator fixtures (``emulator``, ``emulator_urls``) run ``tunegate.emulator``, which is
  imported only when a test uses one of them: loading this plugin into every pytest session
  must cost nothing (it needs the ``emulator`` extra only then).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tunegate.emulator.server import Emulator, EmulatorURLs

__all__ = ["FakeClock", "emulator", "emulator_urls", "pytest_configure"]


class FakeClock:
    """Deterministic time: ``sleep`` advances the clock instead of waiting."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``emulator`` marker so ``--strict-markers`` suites can use it."""
    config.addinivalue_line(
        "markers", "emulator(**settings): Emulator keyword arguments for the emulator fixture"
    )


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
    """A running provider emulator, fresh for this test (catalogues are shared, so it is cheap).

    Settings: an ``emulator_settings`` fixture (a dict of ``Emulator`` keyword arguments) if
    the suite defines one, then a ``@pytest.mark.emulator(...)`` marker on the test."""
    from tunegate.emulator.server import Emulator

    with Emulator(**_settings(request)) as emu:
        yield emu


@pytest.fixture
def emulator_urls(emulator: Emulator) -> EmulatorURLs:
    """Base URLs of the ``emulator`` fixture: spotify (/v1), spotify_token, musicbrainz, lastfm."""
    return emulator.urls
