"""Searches do bounded work on the event loop: filtering and ranking read the catalogue's index
instead of building or testing tracks one by one, and MusicBrainz's unindexed fields test a
bounded number of candidates. Counted in calls, never timed (this machine is noisy)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.emulator.conftest import lastfm_params
from tunegate.emulator import Emulator
from tunegate.emulator import musicbrainz as mb
from tunegate.emulator import spotify as sp
from tunegate.emulator.catalog import Catalog
from tunegate.emulator.lucene import parse

SIZE = 30_000
# Everything a search could call once per candidate: none may scale with the catalogue.
PER_ITEM = (
    "track",
    "artist",
    "album",
    "on_spotify",
    "on_musicbrainz",
    "on_lastfm",
    "popularity",
    "title_tokens",
    "mb_tag_names",
    "track_album",
    "mb_length",
)


@pytest.fixture(scope="module")
def cat() -> Catalog:
    c = Catalog(SIZE, 0)  # its own, not get_catalog's shared one: its methods get wrapped
    c.index()
    return c


@pytest.fixture
def calls(cat: Catalog, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the per-item catalogue calls the search makes (not the ones they make)."""
    counts: Counter[str] = Counter()
    depth = [0]

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            if depth[0] == 0:
                counts[name] += 1
            depth[0] += 1
            try:
                return original(*args)
            finally:
                depth[0] -= 1

        return wrapper

    for name in PER_ITEM:
        monkeypatch.setattr(cat, name, counting(name, getattr(cat, name)))
    return counts


SPOTIFY_QUERIES = [
    "genre:rock",
    "year:2000",
    "year:1990-1999",
    "genre:rock year:2000",
    "genre:",
    "!",
    "the",
    "artist:the",
    "love",
    "track:love genre:rock",
]


@pytest.mark.parametrize("q", SPOTIFY_QUERIES)
def test_spotify_filters_and_ranking_read_the_index(
    cat: Catalog, calls: Counter[str], q: str
) -> None:
    """genre:, year: and ranking touch tens of tracks, not the 30,000 of the catalogue."""
    query = sp.parse_query(q)
    for search in (sp._search_tracks, sp._search_artists, sp._search_albums):
        _, page = search(cat, query, 990, 10)
        assert len(page) <= 10
    assert sum(calls.values()) <= 100, calls  # the exact-title checks of "love"


MB_QUERIES = [
    "tag:rock",
    "tag:love",
    "dur:[1 TO *]",
    "date:2000",
    "date:[1990 TO 1999]",
    "date:2000-05",
    "country:US",
    "NOT love",
    "*",
    "love",
    "tag:rock AND love",
    "artist:the AND tag:rock",
]


@pytest.mark.parametrize("q", MB_QUERIES)
def test_musicbrainz_unindexed_fields_test_a_bounded_number(
    cat: Catalog, calls: Counter[str], q: str
) -> None:
    """tag:, dur:, country: ... test at most _PREDICATE_TESTS candidates; date: by year and
    every ranking use the index."""
    for field, ranges, universe in (
        (mb._recording_field, mb._recording_range, cat.size),
        (mb._artist_field, mb._artist_range, cat.n_artists),
    ):
        calls.clear()
        node = parse(q)
        assert node is not None
        scores = mb._Search(cat, field, ranges, universe).run(node)
        mb._page([(s, i) for i, s in scores.items() if s > 0], 900, 100)
        assert sum(calls.values()) <= mb._PREDICATE_TESTS + 2 * cat.n_real, (field, calls)


def test_lastfm_search_builds_only_the_page() -> None:
    """track.search ranks by listeners from the index: it builds the tracks it returns."""
    with Emulator(catalog_size=SIZE, seed=11, rate_limits=False) as emu:
        built = emu.catalog.track.cache_info().misses
        with httpx.Client() as client:
            r = client.get(
                emu.urls.lastfm,
                params=lastfm_params(method="track.search", track="love", limit="5", format="json"),
            )
        assert int(r.json()["results"]["opensearch:totalResults"]) > 100
        assert emu.catalog.track.cache_info().misses - built <= 5
