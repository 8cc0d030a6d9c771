"""The sandbox at MusicBrainz's real 1 request/s: the emulator enforces it, the clients pace
to it, and a sample run stays under it because ISRC lookups go out in batches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tunegate.cache import CacheManager
from tunegate.clients import AsyncGateway
from tunegate.emulator import RateLimit
from tunegate.enrich import Providers, enrich
from tunegate.sandbox import sandbox, write_sample_input

SEED, SIZE = 12, 2_000  # a sandbox (hence a port) no other test uses
MIRROR_SEED = 13  # the mirror case's own port: it must not attach to a 1/s sandbox still up


def test_sandbox_musicbrainz_runs_at_the_official_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 request/s by default, enforced and paced to; 20/s as a mirror, by argument or
    TUNEGATE_SANDBOX_MIRROR=1."""
    monkeypatch.delenv("TUNEGATE_SANDBOX_MIRROR", raising=False)
    with sandbox(seed=SEED, catalog_size=SIZE) as (emu, settings):
        assert emu.config.musicbrainz_rate == RateLimit(1, 1.0)
        assert settings.musicbrainz_rate == 1.0
    with sandbox(seed=MIRROR_SEED, catalog_size=SIZE, mirror=True) as (emu, settings):
        assert emu.config.musicbrainz_rate == RateLimit(20, 1.0)
        assert settings.musicbrainz_rate == 20.0
    monkeypatch.setenv("TUNEGATE_SANDBOX_MIRROR", "1")
    with sandbox(seed=MIRROR_SEED, catalog_size=SIZE) as (emu, settings):
        assert settings.musicbrainz_rate == 20.0


def test_a_sample_run_stays_under_the_musicbrainz_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 sample rows: MusicBrainz gets one ISRC batch (plus a title search per row Spotify
    did not find), never more than 1 request in its 1 s window, and no 503."""
    monkeypatch.delenv("TUNEGATE_SANDBOX_MIRROR", raising=False)
    out = tmp_path / "out.jsonl"
    with sandbox(seed=SEED, catalog_size=SIZE) as (emu, settings):
        inp = write_sample_input(emu, tmp_path / "in.csv", rows=20)

        async def go() -> None:
            async with AsyncGateway(settings, cache_manager=CacheManager()) as gateway:
                await asyncio.wait_for(enrich(Providers.of(gateway), inp, out), 60)

        asyncio.run(go())
        stats = emu.stats()
    recs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(recs) == 20
    titles = sum(1 for r in recs if (r["match"].get("musicbrainz") or {}).get("method") != "isrc")
    mb = stats["requests"]["musicbrainz"]
    # Batched: a few searches for 20 ISRCs, not 20 lookups. How many batches depends on when
    # Spotify's answers arrive (10/s): on a loaded machine a batch can leave with part of them.
    assert mb["total"] <= 5 + titles < 20 + titles
    assert set(mb["by_status"]) == {"200"}
    clients = stats["clients"]["musicbrainz"]
    assert all(c["max_in_window"] <= 1 for c in clients.values())
