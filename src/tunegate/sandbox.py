"""``--sandbox``: run a command against the built-in emulator instead of the real providers.

The emulator serves all three APIs on loopback with its default test credentials, so the
sandbox needs none of yours. Its quotas are the real services': MusicBrainz at 1 request/s
(ISRC lookups go out in batches of 50, so a demo still finishes in about the time Last.fm's
5/s allows; see docs/enrich.md). ``mirror=True`` (or ``TUNEGATE_SANDBOX_MIRROR=1``) serves
MusicBrainz at 20 requests/s instead, as a self-hosted mirror would.

The cache keys of a non-official origin carry a digest of its URL, port included, so the
emulator listens on a port derived from its seed and catalogue size: the same sandbox gets
the same port, hence the same cache scope, run after run. When that port is already served
by a tunegate emulator of the same seed and catalogue (another sandbox run), this run uses
it too, so two ``--sandbox --redis`` runs at once share one cache; the run that started it
keeps it serving while the other is still sending requests. Any other occupant: next port.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunegate.clients import Settings
from tunegate.emulator import Emulator
from tunegate.emulator.config import RateLimit

__all__ = ["MIRROR_RATE", "OFFICIAL_RATE", "sandbox", "sandbox_port", "write_sample_input"]

MIRROR_RATE = 20.0
OFFICIAL_RATE = 1.0  # musicbrainz.org: 1 request/s per IP


_PORTS = (20_000, 32_000)  # below the usual ephemeral range (Linux: 32768 and up)
_TRIES = 16


def sandbox_port(seed: int, catalog_size: int, attempt: int = 0) -> int:
    """The sandbox emulator's port for its ``attempt``-th try: stable for a seed and size."""
    digest = hashlib.sha256(f"tunegate-sandbox:{seed}:{catalog_size}".encode()).digest()
    low, high = _PORTS
    return low + (int.from_bytes(digest[:4], "big") + attempt) % (high - low)


_MIRROR = RateLimit(int(MIRROR_RATE), 1.0)
_OFFICIAL = RateLimit(int(OFFICIAL_RATE), 1.0)
_LINGER = 600.0  # the owner waits at most this long for attached runs to finish


class _Attached(Emulator):
    """Another process's sandbox emulator: same catalogue, URLs and credentials, never
    started or stopped here; its stats come over HTTP."""

    def __init__(self, *, catalog_size: int, seed: int, port: int) -> None:
        super().__init__(catalog_size=catalog_size, seed=seed, port=port)
        self._mark = _attached_dir(port) / str(os.getpid())
        self._mark.parent.mkdir(parents=True, exist_ok=True)
        self._mark.touch()

    def stats(self) -> dict[str, Any]:
        return _get_json(f"{self.urls.admin}/stats") or {"requests": {}}

    def stop(self) -> None:
        self._mark.unlink(missing_ok=True)


def _attached_dir(port: int) -> Path:
    return Path(tempfile.gettempdir()) / f"tunegate-sandbox-{port}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _same_sandbox(port: int, seed: int, catalog_size: int) -> bool:
    info = _get_json(f"http://127.0.0.1:{port}/_emulator/catalog")
    return isinstance(info, dict) and (info.get("seed"), info.get("size")) == (seed, catalog_size)


def _start(seed: int, catalog_size: int, mb_rate: RateLimit) -> Emulator:
    for attempt in range(_TRIES):
        port = sandbox_port(seed, catalog_size, attempt)
        emu = Emulator(catalog_size=catalog_size, seed=seed, port=port, musicbrainz_rate=mb_rate)
        try:
            return emu.start()
        except RuntimeError as exc:
            if not isinstance(exc.__cause__, OSError):
                raise
        if _same_sandbox(port, seed, catalog_size):
            return _Attached(catalog_size=catalog_size, seed=seed, port=port)
    # Every stable port taken: a random one still works, only without cache reuse.
    return Emulator(catalog_size=catalog_size, seed=seed, musicbrainz_rate=mb_rate).start()


def _linger(emu: Emulator) -> None:
    """Keep serving while a live run attached to this emulator has not finished."""
    marks = _attached_dir(emu.port)
    deadline = time.monotonic() + _LINGER
    while time.monotonic() < deadline:
        pids = [int(m.name) for m in marks.glob("*") if m.name.isdigit()]
        if not any(_alive(pid) and pid != os.getpid() for pid in pids):
            return
        time.sleep(0.5)


@contextmanager
def sandbox(
    seed: int = 0, catalog_size: int = 10_000, *, mirror: bool | None = None
) -> Iterator[tuple[Emulator, Settings]]:
    """A running emulator and the :class:`Settings` that point the clients at it; its
    MusicBrainz at the official 1 request/s, or at 20/s with ``mirror`` (default:
    ``$TUNEGATE_SANDBOX_MIRROR`` set to 1). An attached run (another process's sandbox)
    takes the owner's quotas, whatever it asked; its clients pace themselves to them."""
    if mirror is None:
        mirror = os.environ.get("TUNEGATE_SANDBOX_MIRROR", "").strip().lower() in ("1", "true")
    emu = _start(seed, catalog_size, _MIRROR if mirror else _OFFICIAL)
    try:
        env = emu.env()
        if isinstance(emu, _Attached):  # pace to the owner's MusicBrainz quota
            served = _get_json(f"{emu.urls.admin}/config") or {}
            rate = served.get("musicbrainz_rate") or {}
            if rate.get("requests") and rate.get("window"):
                env["TUNEGATE_MUSICBRAINZ_RATE"] = f"{rate['requests'] / rate['window']:g}"
        yield emu, Settings.from_env(env)
    finally:
        if not isinstance(emu, _Attached):
            _linger(emu)
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
