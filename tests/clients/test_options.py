"""One frozen options value for every client, ``with_options`` copies that share the
components, the provider specs the embedded components follow, the key-first hit of every
cached method, and the stale-if-error rule of the clients' own cache reads."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.clients.conftest import AGENT, FAST_HTTP, FAST_RETRY, Driver, requests_to
from tunegate import CacheManager, RateLimiter
from tunegate.clients import LastFmClient, MusicBrainzClient, SpotifyClient
from tunegate.clients._base import ClientOptions
from tunegate.clients._token import TokenSource
from tunegate.clients.musicbrainz import MusicBrainzOptions
from tunegate.emulator import (
    DEFAULT_LASTFM_KEY,
    DEFAULT_SPOTIFY_CLIENT_ID,
    DEFAULT_SPOTIFY_CLIENT_SECRET,
    Emulator,
)
from tunegate.exceptions import ProviderError
from tunegate.providers import lastfm, musicbrainz, spotify
from tunegate.providers.spec import (
    CASE_SENSITIVE_KINDS,
    LASTFM,
    MUSICBRAINZ,
    SPECS,
    SPOTIFY,
)
from tunegate.providers.spec import DEFAULT_TTLS as spec_ttls
from tunegate.testing import FakeClock

DAY = 86_400.0
SPOTIFY_CREDS = (DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET)


# -- options ------------------------------------------------------------------------------


def test_one_options_value_for_all_three_clients(emulator: Emulator) -> None:
    """A plain ClientOptions configures every client; keywords given beside it win; it is
    frozen; a keyword a client does not take, or an option of another provider, is a
    TypeError, and so is a component passed positionally."""
    cache = CacheManager()
    options = ClientOptions(
        base_url=emulator.urls.root,
        cache_manager=cache,
        http=FAST_HTTP,
        retry=FAST_RETRY,
        registry=CollectorRegistry(),
    )
    with (
        SpotifyClient(*SPOTIFY_CREDS, options=options) as sp,
        MusicBrainzClient(AGENT, options=options, rate=100.0) as mb,
        LastFmClient(DEFAULT_LASTFM_KEY, options=options, stale_if_error=False) as lf,
    ):
        assert sp.cache_manager is mb.cache_manager is lf.cache_manager is cache
        assert mb.rate_limiter.buckets["musicbrainz"].rate == 100.0
        assert (lf.options.stale_if_error, sp.options.stale_if_error) == (False, True)
        assert sp.search_track("Deadmau5", "Strobe") is not None
        assert lf.get_track_tags("Deadmau5", "Strobe")[0] == "progressive house"
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.rate = 3.0  # type: ignore[misc]
    untyped: Any = LastFmClient
    with pytest.raises(TypeError):
        untyped(DEFAULT_LASTFM_KEY, options=options, allow_fast=True)
    with pytest.raises(TypeError):
        SpotifyClient(*SPOTIFY_CREDS, options=MusicBrainzOptions(allow_fast=True))
    with pytest.raises(TypeError):
        untyped(DEFAULT_LASTFM_KEY, cache)


def test_with_options_shares_the_components(driver: Driver, emulator: Emulator) -> None:
    """``with_options`` returns a new client of the same class with the change applied,
    sharing the cache (a hit of the first is a hit of the copy), the limiter, both
    breakers, the connection pool and the Spotify token (no second token request)."""
    client = driver.spotify()
    first = driver.call(client, "search_track", "Deadmau5", "Strobe")
    copy = client.with_options(stale_if_error=False, retry=FAST_RETRY)
    driver.clients.append(copy)
    assert type(copy) is type(client)
    assert copy is not client
    assert copy.options.stale_if_error is False
    assert client.options.stale_if_error is True
    assert copy.cache_manager is client.cache_manager
    assert copy.rate_limiter is client.rate_limiter
    assert copy.circuit_breaker is client.circuit_breaker
    assert copy.accounts_breaker is client.accounts_breaker
    assert copy.pipeline.http is client.pipeline.http
    assert copy.pipeline.budget is client.pipeline.budget
    assert driver.call(copy, "search_track", "Deadmau5", "Strobe") == first
    assert requests_to(emulator, "spotify", "search") == 1
    assert driver.call(copy, "get_track", emulator.describe_track(1)["spotify_id"]) is not None
    assert requests_to(emulator, "spotify", "token") == 1

    lf = driver.lastfm()
    faster = lf.with_options(rate=50.0)
    driver.clients.append(faster)
    # One limiter: the new rate is the shared bucket's, for both clients.
    assert lf.rate_limiter.buckets["lastfm"].rate == 50.0
    assert faster.rate_limiter is lf.rate_limiter


# -- the provider specs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "spec"),
    [
        (lambda: SpotifyClient("id", "secret", metrics=False), SPOTIFY),
        (lambda: MusicBrainzClient(AGENT, metrics=False), MUSICBRAINZ),
        (lambda: LastFmClient("your_lastfm_api_key", metrics=False), LASTFM),
    ],
)
def test_embedded_components_follow_the_spec(make: Any, spec: Any) -> None:
    """A client built with nothing but credentials takes its bucket, its breaker and its
    official origin from its provider's spec."""
    with make() as client:
        bucket = client.rate_limiter.buckets[spec.name]
        assert (bucket.rate, bucket.capacity) == (spec.rate, spec.capacity)
        config = client.circuit_breaker.config
        assert (config.failure_threshold, config.timeout, config.success_threshold) == (
            spec.failure_threshold,
            spec.breaker_timeout,
            spec.success_threshold,
        )
        assert client.base_url == spec.base_url


def test_limiter_and_cache_defaults_come_from_the_specs() -> None:
    """A provider nobody configured gets its spec's bucket on first use; the cache's
    default TTL table and its case-sensitive kinds are the specs' (the cache's own copies
    in _policy/ are to read them once the tables move out of _policy/)."""
    limiter = RateLimiter()
    for spec in SPECS.values():
        limiter.acquire(spec.name)
        stats = limiter.get_stats()[spec.name]
        assert (stats["rate"], stats["capacity"]) == (spec.rate, spec.capacity)
    cache = CacheManager()
    assert dict(cache.policy.ttls) == dict(spec_ttls)
    assert spec_ttls["spotify:track"] == 30 * DAY
    assert (
        cache.policy.ttl_for("musicbrainz:isrc", None, False)
        == MUSICBRAINZ.ttls["musicbrainz:isrc"]
    )
    assert cache.policy.ttl_for("lastfm:artist_info", None, False) == cache.policy.default_ttl
    # Spotify's ids keep their case in keys, everything else is folded.
    assert cache.key("spotify:track", "AbC") != cache.key("spotify:track", "abc")
    assert cache.key("spotify:search", "AbC") == cache.key("spotify:search", "abc")
    assert "spotify:track" in CASE_SENSITIVE_KINDS


def test_batch_limits_come_from_the_spec() -> None:
    """Spotify's batch track request carries at most the spec's ids; a search page at
    most the spec's limit."""
    ids = [f"{i:022d}" for i in range(SPOTIFY.batch_max * 2 + 1)]
    sizes = [len(dict(r.params)["ids"].split(",")) for r in spotify.tracks_requests(ids)]
    assert sizes == [SPOTIFY.batch_max, SPOTIFY.batch_max, 1]
    assert MUSICBRAINZ.batch_max == 50
    with pytest.raises(ValueError, match="limit"):
        lastfm.track_search_request("Strobe", api_key="k" * 32, limit=LASTFM.search_limit_max + 1)
    assert musicbrainz.search_recording_request("A", "B", limit=MUSICBRAINZ.search_limit_max)


# -- the key-first hit ----------------------------------------------------------------------


def _fail(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a warm hit built a request or asked for a token")


def test_warm_hits_build_no_request(
    driver: Driver, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every cached method, once answered, answers again from memory without building a
    request or asking for a token (the builders are broken in between), a cached "not
    found" too, and a list answer is a new list each time."""
    track = emulator.describe_track(0)
    sp, mb, lf = driver.spotify(), driver.musicbrainz(), driver.lastfm()
    calls: list[tuple[Any, str, tuple[Any, ...]]] = [
        (sp, "search_track", ("Deadmau5", "Strobe")),
        (sp, "search_by_isrc", (track["isrc"],)),
        (sp, "get_track", (track["spotify_id"],)),
        (sp, "get_artist", (track["artist_spotify_ids"][0],)),
        (sp, "get_track", ("0" * 22,)),  # a cached "not found"
        (mb, "lookup_isrc", (track["isrc"],)),
        (mb, "lookup_isrc_recordings", (track["isrc"],)),
        (mb, "search_recording", ("Deadmau5", "Strobe")),
        (mb, "get_recording", (track["mbid"],)),
        (lf, "get_track_tags", ("Deadmau5", "Strobe")),
        (lf, "get_track_tag_counts", ("Deadmau5", "Strobe")),
        (lf, "get_artist_tags", ("Deadmau5",)),
        (lf, "get_artist_info", ("Deadmau5",)),
        (lf, "search_tracks", ("Strobe",)),
        (lf, "get_track_info", ("Deadmau5", "Strobe")),
        (lf, "get_correction", ("Deadmau5", "Strobe")),
    ]
    first = [driver.call(c, m, *args) for c, m, args in calls]
    sent = [requests_to(emulator, p) for p in ("spotify", "musicbrainz", "lastfm")]
    for module, names in (
        (spotify, ("search_track_request", "search_isrc_request", "track_request")),
        (spotify, ("artist_request",)),
        (musicbrainz, ("lookup_isrc_request", "search_recording_request")),
        (musicbrainz, ("get_recording_request",)),
        (lastfm, ("track_top_tags_request", "artist_top_tags_request", "artist_info_request")),
        (lastfm, ("track_search_request", "track_info_request", "track_correction_request")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, _fail)
    monkeypatch.setattr(TokenSource, "get", _fail)
    again = [driver.call(c, m, *args) for c, m, args in calls]
    assert again == first
    assert first[4] is None
    again[9].append("mutated")
    assert driver.call(lf, "get_track_tags", "Deadmau5", "Strobe") == first[9]
    assert [requests_to(emulator, p) for p in ("spotify", "musicbrainz", "lastfm")] == sent
    assert (sp.get_stats()["cache_hits"], sp.get_stats()["negative_hits"]) == (4, 1)
    assert lf.get_stats()["cache_hits"] == 8


# -- stale-if-error in the clients' own cache reads ------------------------------------------


@pytest.mark.parametrize(("status", "served"), [(503, True), (404, False), (400, False)])
def test_no_token_serves_stale_only_for_an_outage(
    driver: Driver, emulator: Emulator, status: int, served: bool
) -> None:
    """The token cannot be had and the cached answer has expired: an outage (503) serves
    it (stale-if-error), a 404 or a 400 never does (the pipeline's rule, one rule)."""
    clock = FakeClock()
    client = driver.spotify(clock=clock, cache_manager=driver.cache(clock=clock))
    strobe = emulator.describe_track(0)["spotify_id"]
    first = driver.call(client, "get_track", strobe)
    assert first is not None
    emulator.set_faults(f"spotify/token:error={status},retry_after=0")
    clock.advance(31 * DAY)  # the token has expired, the cached track is stale
    if served:
        assert driver.call(client, "get_track", strobe) == first
    else:
        err = driver.catch(client, "get_track", strobe)
        assert isinstance(err, ProviderError)
        assert err.status == status
    assert client.get_stats()["stale_served"] == (1 if served else 0)


def test_cli_config_names_the_specs_variables() -> None:
    """The CLI's settings repeat the variable names as literals (pydantic's mypy plugin
    needs them so): they are the specs'."""
    pytest.importorskip("pydantic_settings", reason="the cli extra")
    from tunegate.config import CliConfig

    fields = CliConfig.model_fields
    assert fields["spotify_api_url"].alias == SPOTIFY.url_env
    assert fields["spotify_auth_url"].alias == SPOTIFY.auth_url_env
    assert fields["musicbrainz_url"].alias == MUSICBRAINZ.url_env
    assert fields["lastfm_url"].alias == LASTFM.url_env


def test_musicbrainz_waits_for_a_held_answer_by_default() -> None:
    """MusicBrainz throttles by holding answers past 10 s: its clients read for 30 s and
    give a call 90 s by default, the other providers keep the general 10 s / 30 s."""
    from tunegate.clients import LastFmClient, MusicBrainzClient

    mb = MusicBrainzClient("TunegateTests/1.0 ( tests@example.com )")
    lf = LastFmClient("k" * 32)
    try:
        assert mb.pipeline.http.config.read_timeout == MUSICBRAINZ.read_timeout == 30.0
        assert mb.pipeline.http.config.app is not None  # the User-Agent kept
        assert mb.pipeline.retry.deadline == MUSICBRAINZ.deadline
        assert lf.pipeline.http.config.read_timeout == 10.0
        assert lf.pipeline.retry.deadline == 30.0
    finally:
        mb.close()
        lf.close()
