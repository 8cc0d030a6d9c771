"""``tunegate enrich`` by stages, against the emulator: ISRC batches (2 searches for 100
rows, not 100 lookups), Spotify id batches and their Development-Mode fallback, a paused
provider that leaves its rows pending while the others complete, every row accounted for.
Client quotas are lifted so each test takes a few seconds; the emulator counts requests."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests.clients.conftest import AGENT, FAST_HTTP, FAST_RETRY, requests_to, statuses
from tunegate.cache import CacheManager
from tunegate.clients import AsyncLastFmClient, AsyncMusicBrainzClient, AsyncSpotifyClient
from tunegate.emulator import (
    DEFAULT_LASTFM_KEY,
    DEFAULT_SPOTIFY_CLIENT_ID,
    DEFAULT_SPOTIFY_CLIENT_SECRET,
    Emulator,
)
from tunegate.enrich import EnrichSummary, Providers, enrich
from tunegate.exceptions import ConfigurationError


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def write_rows(emulator: Emulator, path: Path, n: int, columns: tuple[str, ...]) -> list[int]:
    """``n`` catalogue tracks known to every provider (catalogue order) as a CSV with
    artist, title and ``columns`` (``isrc``, ``spotify_id``); their indices."""
    cat = emulator.catalog
    picked = [
        i
        for i in range(cat.size)
        if cat.on_musicbrainz(i) and cat.on_spotify(i) and cat.on_lastfm(i)
    ][:n]
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["artist", "title", *columns])
        for i in picked:
            t = emulator.describe_track(i)
            out.writerow([t["artists"][0], t["title"], *(t[c] for c in columns)])
    return picked


class Clients:
    """The three async clients against the emulator, quotas lifted, one shared cache."""

    def __init__(
        self, emulator: Emulator, cache: CacheManager | None = None, **spotify_kw: Any
    ) -> None:
        self.cache = cache if cache is not None else CacheManager()
        common: dict[str, Any] = {
            "base_url": emulator.urls.root,
            "http": FAST_HTTP,
            "retry": FAST_RETRY,
            "cache_manager": self.cache,
            "rate": 1000.0,
        }
        self.spotify = AsyncSpotifyClient(
            DEFAULT_SPOTIFY_CLIENT_ID,
            DEFAULT_SPOTIFY_CLIENT_SECRET,
            registry=CollectorRegistry(),
            **common,
            **spotify_kw,
        )
        self.musicbrainz = AsyncMusicBrainzClient(AGENT, registry=CollectorRegistry(), **common)
        self.lastfm = AsyncLastFmClient(DEFAULT_LASTFM_KEY, registry=CollectorRegistry(), **common)

    def providers(self) -> Providers:
        return Providers(spotify=self.spotify, musicbrainz=self.musicbrainz, lastfm=self.lastfm)

    async def aclose(self) -> None:
        for client in (self.spotify, self.musicbrainz, self.lastfm):
            await client.aclose()


def run(
    emulator: Emulator, inp: Path, out: Path, cache: CacheManager | None = None, **kw: Any
) -> EnrichSummary:
    async def go() -> EnrichSummary:
        clients = Clients(emulator, cache)
        try:
            return await asyncio.wait_for(enrich(clients.providers(), inp, out, **kw), 60)
        finally:
            await clients.aclose()

    return asyncio.run(go())


@pytest.fixture
def cache() -> Iterator[CacheManager]:
    cache = CacheManager()
    yield cache
    cache.close()


def test_rows_with_isrcs_take_two_musicbrainz_searches(
    tmp_path: Path, emulator: Emulator, cache: CacheManager
) -> None:
    """100 rows with an ISRC column: MusicBrainz sees 2 batch searches, not 100 lookups;
    every row has its one record, joined by ISRC, in row order; a second run answers
    MusicBrainz from the cache (sources say so)."""
    inp, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    picked = write_rows(emulator, inp, 100, ("isrc",))
    summary = run(emulator, inp, out, cache)
    assert requests_to(emulator, "musicbrainz") == 2
    assert statuses(emulator, "musicbrainz", "recording.search") == {"200": 2}
    recs = records(out)
    assert [r["row"] for r in recs] == list(range(100))
    assert summary.complete
    assert summary.status["ok"] == 100
    for i, r in zip(picked, recs, strict=True):
        assert r["musicbrainz"]["id"] == emulator.describe_track(i)["mbid"]
        assert r["match"]["musicbrainz"]["method"] == "isrc"
        assert r["sources"] == {"spotify": "api", "musicbrainz": "api", "lastfm": "api"}
    emulator.reset_stats()
    again = tmp_path / "again.jsonl"
    run(emulator, inp, again, cache)
    assert requests_to(emulator, "musicbrainz") + requests_to(emulator, "lastfm") == 0
    assert requests_to(emulator, "spotify", "search") == 0
    assert {r["sources"]["musicbrainz"] for r in records(again)} == {"cache"}


def test_batched_records_equal_per_row_records(tmp_path: Path, emulator: Emulator) -> None:
    """The ISRCs Spotify finds, batched, give the records per-row lookups give; per row
    costs a lookup each (the baseline), batched a few searches."""
    inp = tmp_path / "in.csv"
    write_rows(emulator, inp, 60, ())
    batched, per_row = tmp_path / "batched.jsonl", tmp_path / "per_row.jsonl"
    run(emulator, inp, batched)
    searches = requests_to(emulator, "musicbrainz", "recording.search")
    assert requests_to(emulator, "musicbrainz", "isrc") <= 1  # a lone first ISRC, at most
    assert searches <= 6
    emulator.reset_stats()
    run(emulator, inp, per_row, batching=False)
    assert requests_to(emulator, "musicbrainz", "isrc") == 60
    assert requests_to(emulator, "musicbrainz", "recording.search") == 0

    def parts(path: Path) -> list[Any]:
        return [(r["row"], r["status"], r["musicbrainz"], r["match"]) for r in records(path)]

    assert parts(batched) == parts(per_row)


@pytest.mark.parametrize("mode", ["development", "extended"])
def test_spotify_ids_batch_or_fall_back_on_403(
    tmp_path: Path, emulator: Emulator, mode: str
) -> None:
    """Rows with a spotify_id column use GET /v1/tracks?ids= (50 a request); in Development
    Mode that answers 403 once, and the client goes on with single GET /v1/tracks/{id}."""
    emulator.configure(spotify_batch_tracks=mode == "extended")
    inp, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    picked = write_rows(emulator, inp, 70, ("spotify_id",))
    run(emulator, inp, out)
    recs = records(out)
    assert [r["spotify"]["id"] for r in recs] == [
        emulator.describe_track(i)["spotify_id"] for i in picked
    ]
    assert all(r["match"]["spotify"]["method"] == "id" for r in recs)
    batch, single = statuses(emulator, "spotify", "tracks"), statuses(emulator, "spotify", "track")
    if mode == "extended":
        assert batch == {"200": 2}
        assert single == {}
    else:
        assert batch == {"403": 1}
        assert single == {"200": 70}


def test_a_long_retry_after_leaves_spotify_pending_and_the_rest_done(
    tmp_path: Path, emulator: Emulator, cache: CacheManager
) -> None:
    """Spotify answers 429 with a 2-hour Retry-After: its stage pauses (one request), its
    rows are pending with retry_at,
    MusicBrainz (by title search) and Last.fm complete every row. A later run (fresh
    clients, same cache) completes Spotify and repeats none of the calls that succeeded."""
    emulator.set_faults("spotify/search:error=429,retry_after=2h,times=1")
    inp, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    write_rows(emulator, inp, 30, ())
    summary = run(emulator, inp, out, cache, concurrency=1)  # no other search in flight
    recs = records(out)
    assert len(recs) == 30
    assert summary.complete
    assert summary.status["partial"] == 30
    for r in recs:
        assert r["providers"]["spotify"]["status"] == "pending"
        assert r["providers"]["spotify"]["retry_at"] > "2026"
        assert r["providers"]["musicbrainz"]["status"] == "found"
        assert r["providers"]["lastfm"]["status"] == "found"
        assert r["match"]["musicbrainz"]["method"] == "fallback"  # no ISRC without Spotify
    assert statuses(emulator, "spotify", "search") == {"429": 1}  # paused: asked once
    mb_before = requests_to(emulator, "musicbrainz")
    fm_before = requests_to(emulator, "lastfm")
    emulator.clear_faults()
    summary = run(emulator, inp, out, cache)
    assert summary.status["ok"] == 30
    assert [r["status"] for r in records(out)] == ["ok"] * 30
    assert statuses(emulator, "spotify", "search") == {"429": 1, "200": 30}
    assert requests_to(emulator, "lastfm") == fm_before  # all from the cache
    # MusicBrainz: only the ISRC batch Spotify now makes possible, nothing repeated.
    assert requests_to(emulator, "musicbrainz") - mb_before <= 2


def test_a_slow_provider_times_out_alone(tmp_path: Path, emulator: Emulator) -> None:
    """Last.fm slower than its stage's timeout: its part is an error for each row, and
    Spotify and MusicBrainz still fill every record."""
    emulator.set_faults("lastfm:latency=2s")
    inp, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    write_rows(emulator, inp, 5, ("isrc",))
    summary = run(emulator, inp, out, timeouts={"lastfm": 0.3})
    recs = records(out)
    assert summary.status["partial"] == 5
    for r in recs:
        assert r["providers"]["lastfm"] == {"status": "error", "error": "ProviderUnavailable"}
        assert "stage's timeout" in r["errors"]["lastfm"]
        assert r["providers"]["spotify"]["status"] == "found"
        assert r["providers"]["musicbrainz"]["status"] == "found"


class _SlowTags:
    """A Last.fm double that holds each call and counts the rows in flight."""

    def __init__(self) -> None:
        self.active = 0
        self.most = 0
        self.calls = 0

    async def get_track_tags(self, artist: str, title: str) -> list[str]:
        self.calls += 1
        self.active += 1
        self.most = max(self.most, self.active)
        await asyncio.sleep(0.01)
        self.active -= 1
        return ["rock"]


def test_rows_in_flight_stay_within_the_window(tmp_path: Path) -> None:
    """Whatever the input's size, at most ``window`` rows are in flight (here 4, with 8
    calls allowed at once), and every row gets its one record, in row order."""
    inp, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    inp.write_text("artist,title\n" + "".join(f"a{i},t{i}\n" for i in range(200)))
    tags = _SlowTags()
    summary = asyncio.run(enrich(Providers(lastfm=tags), inp, out, concurrency=8, window=4))
    assert tags.most <= 4
    assert tags.calls == 200
    assert summary.complete
    assert [r["row"] for r in records(out)] == list(range(200))


def test_bad_settings_are_refused_before_any_row(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    inp.write_text("artist,title\na,b\n")
    for kw in ({"window": 0}, {"timeouts": {"lastfm": 0}}, {"timeouts": {"deezer": 1.0}}):
        with pytest.raises(ConfigurationError):
            asyncio.run(enrich(Providers(lastfm=_SlowTags()), inp, out, **kw))
    assert not out.exists()
