"""Helpers for the emulator's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tunegate.emulator import DEFAULT_LASTFM_KEY, Emulator

MB_AGENT = "tunegate-tests/0.1 ( https://example.org/tunegate )"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain HTTP client that identifies itself as MusicBrainz asks."""
    with httpx.Client(headers={"User-Agent": MB_AGENT}, timeout=10) as client:
        yield client


@pytest.fixture
def quiet_emulator() -> Iterator[Emulator]:
    """An emulator with quotas off, for tests that make many calls."""
    with Emulator(rate_limits=False) as emu:
        yield emu


def bearer(emu: Emulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.issue_spotify_token()}"}


def lastfm_params(**params: str) -> dict[str, str]:
    return {"api_key": DEFAULT_LASTFM_KEY, **params}
