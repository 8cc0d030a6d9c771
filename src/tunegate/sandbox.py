"""``--sandbox``: run a command against the built-in emulator instead of the real providers.

The emulator serves all three APIs on loopback with its default test credentials, so the
sandbox needs none of yours. Its MusicBrainz is configured like a self-hosted mirror (20
requests/s instead of the official 1/s, which tunegate keeps against musicbrainz.org), so a
demo of a few hundred rows takes seconds rather than minutes; everything else, quotas
included, behaves as the real services do.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tunegate.clients import Settings
from tunegate.emulator import Emulator
from tunegate.emulator.config import (
    DEFAULT_LASTFM_KEY,
    DEFAULT_SPOTIFY_CLIENT_ID,
    DEFAULT_SPOTIFY_CLIENT_SECRET,
    RateLimit,
)

__all__ = ["MIRROR_RATE", "sandbox", "write_sample_input"]

MIRROR_RATE = 20.0
USER_AGENT = "tunegate-sandbox/1.0 ( https://github.com/tunegate/tunegate )"


@contextmanager
def sandbox(seed: int = 0, catalog_size: int = 10_000) -> Iterator[tuple[Emulator, Settings]]:
    """A running emulator and the :class:`Settings` that point the clients at it."""
    with Emulator(catalog_size=catalog_size, seed=seed) as emu:
        emu.configure(musicbrainz_rate=RateLimit(int(MIRROR_RATE), 1.0))
        settings = Settings(
            spotify_client_id=DEFAULT_SPOTIFY_CLIENT_ID,
            spotify_client_secret=DEFAULT_SPOTIFY_CLIENT_SECRET,
            musicbrainz_user_agent=USER_AGENT,
            lastfm_api_key=DEFAULT_LASTFM_KEY,
            spotify_api_url=emu.urls.spotify,
            spotify_auth_url=emu.urls.spotify_token,
            musicbrainz_url=emu.urls.musicbrainz,
            lastfm_url=emu.urls.lastfm,
            musicbrainz_rate=MIRROR_RATE,
        )
        yield emu, settings


def write_sample_input(emu: Emulator, path: Path, rows: int = 200) -> Path:
    """A CSV of ``rows`` (artist, title) pairs from the emulator's catalogue: its well-known
    real tracks first, then generated ones, with a few typed the way people type them
    (lower case, no accents) and one that no provider knows."""
    cat = emu.catalog
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["artist", "title"])
        for i in range(min(rows - 1, cat.size)):
            track = cat.track(i)
            artist = cat.artist(track.artists[0]).name
            title = track.title
            if i % 17 == 5:  # the way people type
                artist, title = artist.lower(), title.lower()
            out.writerow([artist, title])
        out.writerow(["Nobody Anywhere", "A Song That Does Not Exist"])
    return path
