"""The environment that points tunegate (``Gateway.from_env()``, ``tunegate enrich``) at a
running emulator, and its ``export`` rendering for a shell."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tunegate.emulator.config import DEFAULT_LASTFM_KEY, DEFAULT_SPOTIFY_CLIENT_ID, EmulatorConfig

if TYPE_CHECKING:
    from tunegate.emulator.server import EmulatorURLs

__all__ = ["EMULATOR_USER_AGENT", "client_env", "render_exports"]

EMULATOR_USER_AGENT = "tunegate-emulator-client/1.0 ( emulator@localhost )"


def client_env(urls: EmulatorURLs, config: EmulatorConfig) -> dict[str, str]:
    """The variable names tunegate's settings read, with credentials this emulator accepts.

    ``TUNEGATE_MUSICBRAINZ_RATE`` is the emulator's enforced MusicBrainz quota, so a client
    paces itself to what the emulator allows (1/s unless configured otherwise)."""
    clients = config.spotify_clients
    client_id = DEFAULT_SPOTIFY_CLIENT_ID if DEFAULT_SPOTIFY_CLIENT_ID in clients else min(clients)
    keys = config.lastfm_api_keys
    api_key = DEFAULT_LASTFM_KEY if DEFAULT_LASTFM_KEY in keys else min(keys)
    return {
        "SPOTIFY_CLIENT_ID": client_id,
        "SPOTIFY_CLIENT_SECRET": clients[client_id],
        "MUSICBRAINZ_USER_AGENT": EMULATOR_USER_AGENT,
        "LASTFM_API_KEY": api_key,
        "TUNEGATE_SPOTIFY_API_URL": urls.spotify,
        "TUNEGATE_SPOTIFY_AUTH_URL": urls.spotify_token,
        "TUNEGATE_MUSICBRAINZ_URL": urls.musicbrainz,
        "TUNEGATE_LASTFM_URL": urls.lastfm,
        "TUNEGATE_MUSICBRAINZ_RATE": f"{config.musicbrainz_rate.per_second:g}",
    }


def render_exports(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines, shell-quoted, for ``eval "$(...)"``."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
