"""``--sandbox``: run a command against the built-in emulator instead of the real providers.

The emulator serves all three APIs on loopback with its default test credentials, so the
sandbox needs none of yours. Its MusicBrainz is configured like a self-hosted mirror (20
requests/s instead of the official 1/s, which tunegate keeps against musicbrainz.org), so a
demo of a few hundred rows takes seconds rather than minutes; everything else, quotas
included, behaves as the real services do. (The real 1/s waits for MusicBrainz batching:
today ``enrich`` makes one MusicBrainz call per row.)

The cache keys of a non-official origin carry a digest of its URL, port included, so the
emulator listens on a port derived from its seed and catalogue size (the next one when that
is taken): the same sandbox gets the same port, hence the same cache scope, run after run.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tunegate.clients import Settings
from tunegate.clients.lastfm import LASTFM
from tunegate.clients.musicbrainz import MUSICBRAINZ
from tunegate.clients.spotify import AUTH_URL_ENV, SPOTIFY
from tunegate.emulator import Emulator
from tunegate.emulator.config import (
    DEFAULT_LASTFM_KEY,
    DEFAULT_SPOTIFY_CLIENT_ID,
    DEFAULT_SPOTIFY_CLIENT_SECRET,
    RateLimit,
)

__all__ = ["MIRROR_RATE", "emulator_env", "sandbox", "sandbox_port", "write_sample_input"]

MIRROR_RATE = 20.0
USER_AGENT = "tunegate-sandbox/1.0 ( https://github.com/tunegate/tunegate )"


_PORTS = (20_000, 32_000)  # below the usual ephemeral range (Linux: 32768 and up)
_TRIES = 16


def sandbox_port(seed: int, catalog_size: int, attempt: int = 0) -> int:
    """The sandbox emulator's port for its ``attempt``-th try: stable for a seed and size."""
    digest = hashlib.sha256(f"tunegate-sandbox:{seed}:{catalog_size}".encode()).digest()
    low, high = _PORTS
    return low + (int.from_bytes(digest[:4], "big") + attempt) % (high - low)


def _start(seed: int, catalog_size: int) -> Emulator:
    for attempt in range(_TRIES):
        emu = Emulator(
            catalog_size=catalog_size, seed=seed, port=sandbox_port(seed, catalog_size, attempt)
        )
        try:
            return emu.start()
        except RuntimeError as exc:
            if not isinstance(exc.__cause__, OSError):
                raise
    # Every stable port taken: a random one still works, only without cache reuse.
    return Emulator(catalog_size=catalog_size, seed=seed).start()


def emulator_env(emu: Emulator, musicbrainz_rate: float | None = MIRROR_RATE) -> dict[str, str]:
    """The environment that points tunegate (``Settings.from_env``, ``Gateway.from_env``,
    ``tunegate enrich``) at ``emu`` with the credentials it accepts. One place, so it can
    later defer to the emulator's own helper."""
    env = {
        "SPOTIFY_CLIENT_ID": DEFAULT_SPOTIFY_CLIENT_ID,
        "SPOTIFY_CLIENT_SECRET": DEFAULT_SPOTIFY_CLIENT_SECRET,
        "MUSICBRAINZ_USER_AGENT": USER_AGENT,
        "LASTFM_API_KEY": DEFAULT_LASTFM_KEY,
        SPOTIFY.url_env: emu.urls.spotify,
        AUTH_URL_ENV: emu.urls.spotify_token,
        MUSICBRAINZ.url_env: emu.urls.musicbrainz,
        LASTFM.url_env: emu.urls.lastfm,
    }
    if musicbrainz_rate is not None:
        env["TUNEGATE_MUSICBRAINZ_RATE"] = f"{musicbrainz_rate:g}"
    return env


@contextmanager
def sandbox(seed: int = 0, catalog_size: int = 10_000) -> Iterator[tuple[Emulator, Settings]]:
    """A running emulator and the :class:`Settings` that point the clients at it."""
    emu = _start(seed, catalog_size)
    try:
        emu.configure(musicbrainz_rate=RateLimit(int(MIRROR_RATE), 1.0))
        yield emu, Settings.from_env(emulator_env(emu))
    finally:
        emu.stop()


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
