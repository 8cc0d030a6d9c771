"""The pytest fixtures and the context manager work from sync and async tests."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tunegate.emulator import Emulator, EmulatorURLs


def test_sync_fixture(emulator_urls: EmulatorURLs) -> None:
    """emulator_urls gives the three base URLs, and they answer."""
    assert emulator_urls.spotify.endswith("/v1")
    assert emulator_urls.spotify_token.endswith("/api/token")
    assert emulator_urls.musicbrainz.endswith("/ws/2")
    assert emulator_urls.lastfm.endswith("/2.0/")
    assert httpx.get(f"{emulator_urls.admin}/health").json() == {"status": "ok"}


async def test_async_fixture(emulator: Emulator) -> None:
    """An asyncio test talks to the fixture's server with an async client."""
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{emulator.urls.admin}/catalog/tracks/0")
    assert r.json()["title"] == "Strobe"


async def test_async_context_manager() -> None:
    """``async with Emulator()`` starts and stops without blocking the loop."""
    async with Emulator(catalog_size=100) as emu, httpx.AsyncClient() as client:
        assert (await client.get(f"{emu.urls.admin}/health")).status_code == 200
    with pytest.raises(httpx.ConnectError):
        await asyncio.to_thread(httpx.get, f"{emu.urls.admin}/health")


def test_restart_serves_again_at_the_same_address() -> None:
    """stop() then start() listens again on the same port, state kept, hangs still hang."""
    emu = Emulator(catalog_size=100, rate_limits=False)
    with emu:
        root = emu.urls.root
        token = emu.issue_spotify_token()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{root}/_emulator/health")
    emu.set_faults("spotify/track:hang,times=1")  # while stopped
    with emu, httpx.Client() as client:
        assert emu.urls.root == root
        assert client.get(f"{root}/_emulator/health").status_code == 200
        track = f"{emu.urls.spotify}/tracks/3n3Ppam7vgaVa1iaRUc9Lp"
        headers = {"Authorization": f"Bearer {token}"}  # tokens outlive a restart
        with pytest.raises(httpx.ReadTimeout):
            client.get(track, headers=headers, timeout=0.5)
        assert client.get(track, headers=headers).status_code == 200
    with pytest.raises(RuntimeError, match="already started"), emu:
        emu.start()


def test_tls_restart_keeps_the_ca() -> None:
    """Under TLS a restarted emulator serves the same CA, written out again."""
    emu = Emulator(catalog_size=100, tls=True)
    with emu:
        context = emu.ssl_context()
    with emu, httpx.Client(verify=context) as client:
        assert client.get(f"{emu.urls.admin}/health").status_code == 200
        assert emu.ca_path is not None
        with open(emu.ca_path, "rb") as f:
            assert b"BEGIN CERTIFICATE" in f.read()


@pytest.fixture
def emulator_settings() -> dict[str, object]:
    return {"catalog_size": 321, "seed": 5}


def test_settings_fixture(emulator: Emulator) -> None:
    """A suite's emulator_settings fixture configures the emulator fixture."""
    assert emulator.catalog.size == 321
    assert emulator.catalog.seed == 5
