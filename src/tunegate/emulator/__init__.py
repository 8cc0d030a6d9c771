"""The provider emulator: a real HTTP server that speaks Spotify, MusicBrainz and Last.fm.

    with Emulator(catalog_size=10_000, seed=0) as emu:
        emu.urls.spotify        # http://127.0.0.1:PORT/v1
        emu.urls.musicbrainz    # http://127.0.0.1:PORT/ws/2
        emu.urls.lastfm         # http://127.0.0.1:PORT/2.0/

See docs/emulator.md.
"""

from __future__ import annotations

from tunegate.emulator.catalog import Catalog
from tunegate.emulator.config import (
    DEFAULT_LASTFM_KEY,
    DEFAULT_SPOTIFY_CLIENT_ID,
    DEFAULT_SPOTIFY_CLIENT_SECRET,
    SUSPENDED_LASTFM_KEY,
    EmulatorConfig,
    RateLimit,
)
from tunegate.emulator.env import client_env, render_exports
from tunegate.emulator.faults import FAULTS_HELP, FaultSpec, Latency, parse_faults
from tunegate.emulator.server import Emulator, EmulatorURLs

__all__ = [
    "DEFAULT_LASTFM_KEY",
    "DEFAULT_SPOTIFY_CLIENT_ID",
    "DEFAULT_SPOTIFY_CLIENT_SECRET",
    "FAULTS_HELP",
    "SUSPENDED_LASTFM_KEY",
    "Catalog",
    "Emulator",
    "EmulatorConfig",
    "EmulatorURLs",
    "FaultSpec",
    "Latency",
    "RateLimit",
    "client_env",
    "parse_faults",
    "render_exports",
]
