"""MusicBrainz ISRC batching against the emulator: ``lookup_isrcs`` and concurrent
``lookup_isrc`` calls answered by ``isrc:A OR isrc:B ...`` recording searches, the same
answers as single lookups, cached under the single lookup's key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.clients.conftest import AGENT, FAST_HTTP, FAST_RETRY, Driver, requests_to
from tunegate.cache import CacheManager
from tunegate.clients import AsyncMusicBrainzClient
from tunegate.emulator import Emulator
from tunegate.exceptions import (
    CircuitBreakerOpenError,
    ConfigurationError,
    InvalidInput,
    ProviderUnavailable,
)
from tunegate.testing import FakeClock

SEARCH, SINGLE = "recording.search", "isrc"


def catalogue_isrcs(emulator: Emulator, n: int) -> tuple[list[str], list[str], list[str]]:
    """``n`` ISRCs in catalogue order: (all, those MusicBrainz has under several
    recordings, those MusicBrainz does not know)."""
    cat = emulator.catalog
    codes: list[str] = []
    shared: list[str] = []
    absent: list[str] = []
    for i in range(cat.size):
        code = cat.track(i).isrc
        if code in codes:
            continue
        on_mb = [j for j in cat.tracks_by_isrc(code) if cat.on_musicbrainz(j)]
        if len(codes) < n or (len(on_mb) > 1 and not shared):
            codes.append(code)
            if len(on_mb) > 1:
                shared.append(code)
            if not on_mb:
                absent.append(code)
        if len(codes) >= n and shared:
            break
    return codes, shared, absent


def test_lookup_isrcs_batches_and_matches_single_lookups(
    driver: Driver, emulator: Emulator
) -> None:
    """100 ISRCs cost 2 searches, not 100 lookups; every answer is the one lookup_isrc
    gives (several recordings under one ISRC included); answers and "not found" are cached
    under the single lookup's key, so later single calls make no request."""
    codes, shared, absent = catalogue_isrcs(emulator, 99)
    unknown = "USIR20400599"
    codes.append(unknown)
    assert len(codes) == 100
    assert shared
    assert absent
    batched = driver.musicbrainz()
    got = driver.call(batched, "lookup_isrcs", [c.lower() for c in codes])
    assert requests_to(emulator, "musicbrainz", SEARCH) == 2
    assert requests_to(emulator, "musicbrainz", SINGLE) == 0
    single = driver.musicbrainz()
    want = [driver.call(single, "lookup_isrc", c, use_cache=False) for c in codes]
    assert got == want
    assert got[-1] is None
    assert all(got[codes.index(c)] is None for c in absent)
    assert sum(r is not None for r in got) >= 80
    emulator.reset_stats()
    again = [driver.call(batched, "lookup_isrc", c) for c in codes]
    assert again == want
    assert requests_to(emulator, "musicbrainz") == 0  # hits, found and not found alike
    stats = batched.get_stats()
    assert stats["negative_hits"] >= len(absent) + 1


def test_batch_size_is_configurable_and_checked(driver: Driver, emulator: Emulator) -> None:
    """batch_size=10 makes 10 ISRCs a search; a size outside 1-200 is refused before any
    call, as are a bad ISRC and a plain string instead of a list."""
    codes, _, _ = catalogue_isrcs(emulator, 30)
    client = driver.musicbrainz()
    driver.call(client, "lookup_isrcs", codes, batch_size=10)
    assert requests_to(emulator, "musicbrainz", SEARCH) == 3
    emulator.reset_stats()
    assert isinstance(driver.catch(client, "lookup_isrcs", codes, batch_size=0), ConfigurationError)
    assert isinstance(
        driver.catch(client, "lookup_isrcs", codes, batch_size=201), ConfigurationError
    )
    bad = driver.catch(client, "lookup_isrcs", [*codes, "not-an-isrc"], use_cache=False)
    assert isinstance(bad, InvalidInput)
    assert bad.field == "isrcs"
    assert isinstance(driver.catch(client, "lookup_isrcs", codes[0]), InvalidInput)
    with pytest.raises(ConfigurationError):
        client.configure_isrc_batching(size=500)
    assert emulator.stats()["total"] == 0


def test_a_page_cut_at_the_limit_falls_back_to_single_lookups(
    driver: Driver, emulator: Emulator
) -> None:
    """200 ISRCs in one search return more than the 100 hits a page holds: the ISRCs the
    page did not show are looked up alone (not cached as "not found"), and every answer
    still matches a single lookup."""
    codes, _, absent = catalogue_isrcs(emulator, 200)
    codes = codes[:200]
    client = driver.musicbrainz()
    got = driver.call(client, "lookup_isrcs", codes, batch_size=200)
    searches = requests_to(emulator, "musicbrainz", SEARCH)
    singles = requests_to(emulator, "musicbrainz", SINGLE)
    assert searches == 1
    known = len(codes) - len([c for c in absent if c in codes])
    assert known > 100  # so the page must have been cut
    assert singles >= len(codes) - 100  # at least the ISRCs past the page
    single = driver.musicbrainz()
    want = [driver.call(single, "lookup_isrc", c, use_cache=False) for c in codes]
    assert [r["id"] if r else None for r in got] == [r["id"] if r else None for r in want]


def test_concurrent_single_lookups_coalesce_into_batches(
    driver: Driver, emulator: Emulator
) -> None:
    """100 lookup_isrc calls at once (threads, or tasks) go out as a few searches, and each
    caller gets the answer a lone lookup_isrc gives."""
    codes, _, _ = catalogue_isrcs(emulator, 100)
    client = driver.musicbrainz()
    client.configure_isrc_batching(linger=0.3)  # time for 100 threads to start on a busy box
    got = driver.many(client, "lookup_isrc", [(c,) for c in codes])
    searches = requests_to(emulator, "musicbrainz", SEARCH)
    singles = requests_to(emulator, "musicbrainz", SINGLE)
    if driver.kind == "async":
        assert (searches, singles) == (2, 0)
    else:  # threads start one by one: the first batch may be smaller
        assert searches + singles <= 3
    single = driver.musicbrainz()
    want = [driver.call(single, "lookup_isrc", c, use_cache=False) for c in codes]
    assert got == want


def test_coalescing_can_be_switched_off(driver: Driver, emulator: Emulator) -> None:
    """enabled=False: one /ws/2/isrc request per concurrent call (the per-row baseline)."""
    codes, _, _ = catalogue_isrcs(emulator, 12)
    client = driver.musicbrainz()
    client.configure_isrc_batching(enabled=False)
    driver.many(client, "lookup_isrc", [(c,) for c in codes])
    assert requests_to(emulator, "musicbrainz", SEARCH) == 0
    assert requests_to(emulator, "musicbrainz", SINGLE) == len(codes)


def test_a_failed_search_serves_stale_entries_or_raises(driver: Driver, emulator: Emulator) -> None:
    """The search failing: ISRCs with a stale cached answer get it; with one ISRC lacking
    any, the search's own error is raised."""
    codes, _, _ = catalogue_isrcs(emulator, 6)
    clock = FakeClock()  # the cache's: its entries expire when told, not after a real wait
    cache = CacheManager(
        ttls={"musicbrainz:isrc": 0.05}, negative_ttl=0.05, jitter=0.0, clock=clock
    )
    client = driver.musicbrainz(cache_manager=cache)
    first = driver.call(client, "lookup_isrcs", codes[:5])
    clock.advance(0.1)  # past the TTL, within the stale grace
    emulator.set_faults("musicbrainz/recording.search:error=500")
    assert driver.call(client, "lookup_isrcs", codes[:5]) == first
    err = driver.catch(client, "lookup_isrcs", codes)
    assert isinstance(err, (ProviderUnavailable, CircuitBreakerOpenError))  # 3 failures open it


def test_a_cancelled_leader_hands_its_batch_on(emulator: Emulator) -> None:
    """The task leading a batch is cancelled while it gathers: the other callers still get
    their answers, in one search."""
    codes, _, _ = catalogue_isrcs(emulator, 10)

    async def go() -> tuple[list[Any], int]:
        client = AsyncMusicBrainzClient(
            AGENT, base_url=emulator.urls.root, rate=100.0, http=FAST_HTTP, retry=FAST_RETRY
        )
        client.configure_isrc_batching(linger=0.3)
        try:
            tasks = [asyncio.ensure_future(client.lookup_isrc(c)) for c in codes]
            await asyncio.sleep(0.1)
            tasks[0].cancel()
            done = await asyncio.wait_for(asyncio.gather(*tasks[1:]), 10)
            return list(done), requests_to(emulator, "musicbrainz")
        finally:
            await client.aclose()

    got, requests = asyncio.run(go())
    assert len(got) == len(codes) - 1
    assert all(r is not None for r in got[:3])
    assert requests == 1


def test_the_lead_passes_on_whoever_gives_up() -> None:
    """The coalescer's bookkeeping: one leader at a time; a batch answered passes the lead
    to the oldest caller still waiting; a caller handed the lead that gives up passes it
    on; a stopped leader's batch waits again in front."""
    from tunegate.clients._isrc_batch import _LEAD, Coalescer

    c = Coalescer(size=2)
    assert c.join("A") is None  # leads
    b, lead_c, d1, d2 = c.join("B"), c.join("C"), c.join("D"), c.join("D")
    assert b is not None
    assert lead_c is not None
    assert d1 is not None
    assert d2 is not None
    batch = c.take()
    assert [code for code, _ in batch] == ["A", "B"]
    c.settle(batch, {"A": [], "B": []}, None)
    assert b.result(0) == []
    assert lead_c.result(0) is _LEAD  # C is the oldest still waiting
    c.leave("C", lead_c)  # ... and gives up: C has nobody left, the lead goes to D
    assert d1.result(0) is _LEAD
    batch = c.take()
    assert [code for code, _ in batch] == ["D"]
    f = c.join("E")
    assert f is not None
    assert not f.done()
    c.put_back(batch)  # D's leader was cancelled: D's other caller leads, D first again
    assert d2.result(0) is _LEAD
    assert not f.done()
    assert [code for code, _ in c.take()] == ["D", "E"]
