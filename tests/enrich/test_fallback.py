"""The design's fallback, end to end against the emulator: Spotify fails (every search
answers 503) until its breaker opens; MusicBrainz's title search fills in each row's
recording and its ISRC, ``match`` says ``fallback``, and Spotify is ``pending`` (with
``retry_at``, when the breaker lets a probe through) in every row."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.clients.conftest import requests_to, statuses
from tests.enrich.test_stages import Clients, records, write_rows
from tunegate.breaker import CircuitBreaker
from tunegate.emulator import Emulator
from tunegate.enrich import EnrichSummary, enrich


def test_spotify_down_musicbrainz_search_fills_recording_and_isrc(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.set_faults("spotify/search:error=503")
    inp, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    picked = write_rows(emulator, inp, 12, ())
    breaker = CircuitBreaker("spotify", failure_threshold=2, timeout=3600.0)

    async def go() -> EnrichSummary:
        clients = Clients(emulator, circuit_breaker=breaker)
        try:
            # One Spotify call at a time: the breaker opens after exactly two attempts.
            run = enrich(clients.providers(), inp, out, concurrency=1)
            return await asyncio.wait_for(run, 60)
        finally:
            await clients.aclose()

    summary = asyncio.run(go())
    recs = records(out)
    assert summary.complete
    assert summary.status["partial"] == 12
    for i, r in zip(picked, recs, strict=True):
        track = emulator.describe_track(i)
        assert r["spotify"] is None
        assert r["musicbrainz"]["id"] == track["mbid"]
        assert r["musicbrainz"]["isrc"] == track["isrc"]
        assert r["match"]["musicbrainz"]["method"] == "fallback"
        assert r["providers"]["musicbrainz"]["status"] == "found"
        assert r["providers"]["lastfm"]["status"] == "found"
    # Each failed attempt counts: the breaker opens within the first row's retries, so
    # every row has Spotify pending until the breaker lets a probe through.
    for r in recs:
        assert r["providers"]["spotify"]["status"] == "pending"
        assert r["providers"]["spotify"]["error"] == "CircuitBreakerOpenError"
        assert r["providers"]["spotify"]["retry_at"] > "2026"
    assert statuses(emulator, "spotify", "search") == {"503": 2}  # then refused locally
    assert requests_to(emulator, "musicbrainz", "recording.search") == 12
    assert requests_to(emulator, "musicbrainz", "isrc") == 0
