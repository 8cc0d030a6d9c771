"""SpotifyClient and AsyncSpotifyClient against the emulator: every method, validation, the
token's life (lazy, shared refresh, refresh ahead, once on a 401), batch and per-id lookups."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests._loops import driver_loops
from tests.clients.conftest import Driver, requests_to, statuses
from tests.providers.test_request import request_of_every_field
from tunegate.cache import CacheManager
from tunegate.clients import SpotifyClient
from tunegate.clients._token import REFUSAL_HOLD
from tunegate.clients.spotify import _authorized
from tunegate.emulator import DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET, Emulator
from tunegate.exceptions import (
    AuthenticationError,
    CircuitBreakerOpenError,
    ConfigurationError,
    InvalidInput,
)
from tunegate.providers import ApiRequest
from tunegate.testing import FakeClock

STROBE = 0  # catalogue index of deadmau5 - Strobe
BRIGHTSIDE = 1  # The Killers - Mr. Brightside (recorded ids)
UNKNOWN_ID = "0000000000000000000000"


def test_search_track_finds_best_match_and_caches_it(driver: Driver, emulator: Emulator) -> None:
    """search_track returns the best hit as a dict; the second call is a cache hit."""
    strobe = emulator.describe_track(STROBE)
    client = driver.spotify()
    track = driver.call(client, "search_track", "Deadmau5", "Strobe")
    assert track["id"] == strobe["spotify_id"]
    assert track["artists"][0]["name"] == "deadmau5"
    again = driver.call(client, "search_track", " deadmau5 ", "STROBE")
    assert again == track
    stats = client.get_stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["api_calls"]) == (1, 1, 1)
    assert requests_to(emulator, "spotify", "search") == 1


def _read_only_all_the_way_down(value: Any) -> None:
    """Every container reached through the value's reads refuses mutation."""
    if isinstance(value, dict):
        with pytest.raises(TypeError):
            value["x"] = 1
        for k in value:
            _read_only_all_the_way_down(value[k])
    elif isinstance(value, list):
        with pytest.raises(TypeError):
            value.append(1)
        for item in value:
            _read_only_all_the_way_down(item)


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("search_track", ("Deadmau5", "Strobe")),
        ("search_by_isrc", ("GBFFP0300052",)),
        ("get_track", ("3n3Ppam7vgaVa1iaRUc9Lp",)),
    ],
)
def test_a_miss_answers_read_only_data_equal_to_the_hit(
    driver: Driver, method: str, args: tuple[Any, ...]
) -> None:
    """A miss's parsed value is frozen lazily (it is nobody else's): every read of it is
    read-only, and it equals (and serializes as) the hit that follows."""
    client = driver.spotify()
    miss = driver.call(client, method, *args)
    _read_only_all_the_way_down(miss)
    hit = driver.call(client, method, *args)
    assert client.get_stats()["cache_hits"] == 1
    assert hit == miss
    assert orjson.dumps(hit) == orjson.dumps(miss)


def test_search_track_without_a_close_hit_is_none_and_cached(
    driver: Driver, emulator: Emulator
) -> None:
    """No qualifying hit gives None (never a wrong track), and the answer is cached."""
    client = driver.spotify()
    assert driver.call(client, "search_track", "Nobody Atall", "Qqqzzx Vvvwwy") is None
    assert driver.call(client, "search_track", "Nobody Atall", "Qqqzzx Vvvwwy") is None
    assert requests_to(emulator, "spotify", "search") == 1
    assert client.get_stats()["negative_hits"] == 1


def test_search_by_isrc(driver: Driver, emulator: Emulator) -> None:
    """search_by_isrc normalises the ISRC and returns the track carrying it, or None."""
    client = driver.spotify()
    track = driver.call(client, "search_by_isrc", "gb-ffp-03-00052")
    assert track["id"] == "3n3Ppam7vgaVa1iaRUc9Lp"
    assert track["external_ids"]["isrc"] == "GBFFP0300052"
    assert driver.call(client, "search_by_isrc", "ZZZZZ9999999") is None


def test_get_track_and_get_artist(driver: Driver, emulator: Emulator) -> None:
    """get_track takes ids, URIs and links; get_artist works; unknown ids give None."""
    strobe = emulator.describe_track(STROBE)
    client = driver.spotify()
    track = driver.call(client, "get_track", f"spotify:track:{strobe['spotify_id']}")
    assert (track["name"], track["duration_ms"]) == ("Strobe", strobe["duration_ms"])
    link = f"https://open.spotify.com/track/{strobe['spotify_id']}"
    assert driver.call(client, "get_track", link) == track
    artist = driver.call(client, "get_artist", strobe["artist_spotify_ids"][0])
    assert artist["name"] == "deadmau5"
    assert driver.call(client, "get_track", UNKNOWN_ID) is None
    assert driver.call(client, "get_artist", UNKNOWN_ID) is None
    assert statuses(emulator, "spotify", "track") == {"200": 1, "404": 1}


def test_get_tracks_per_id_when_batch_refused(driver: Driver, emulator: Emulator) -> None:
    """Development-Mode apps get 403 from the batch: one call per id, order and duplicates
    kept, None for unknown ids; later calls skip the batch and use the cache."""
    a, b = emulator.describe_track(STROBE), emulator.describe_track(BRIGHTSIDE)
    client = driver.spotify()
    ids = [a["spotify_id"], UNKNOWN_ID, b["spotify_id"], a["spotify_id"]]
    tracks = driver.call(client, "get_tracks", ids)
    assert [t and t["name"] for t in tracks] == ["Strobe", None, "Mr. Brightside", "Strobe"]
    assert statuses(emulator, "spotify", "tracks") == {"403": 1}
    assert requests_to(emulator, "spotify", "track") == 3
    assert client.get_stats()["batch_tracks"] is False
    assert driver.call(client, "get_tracks", ids) == tracks
    assert requests_to(emulator, "spotify", "track") == 3  # all from the cache now
    assert requests_to(emulator, "spotify", "tracks") == 1


def test_get_tracks_per_id_runs_in_the_one_driver_loop(emulator: Emulator) -> None:
    """The blocking client's one-call-per-id fallback runs every id inside the call's own
    driver loop (measured with a profile hook): no nested loop per id."""
    ids = [emulator.describe_track(i)["spotify_id"] for i in range(3)]
    client = SpotifyClient(
        DEFAULT_SPOTIFY_CLIENT_ID,
        DEFAULT_SPOTIFY_CLIENT_SECRET,
        base_url=emulator.urls.root,
        registry=CollectorRegistry(),
    )
    try:
        with driver_loops() as loops:
            tracks = client.get_tracks(ids)
    finally:
        client.close()
    assert [t and t["id"] for t in tracks] == ids
    assert statuses(emulator, "spotify", "tracks") == {"403": 1}
    assert requests_to(emulator, "spotify", "track") == 3
    assert (loops.entered, loops.deepest) == (1, 1)


def test_get_tracks_uses_the_batch_where_allowed(driver: Driver, emulator: Emulator) -> None:
    """With the batch endpoint: cached ids are not asked for, the rest in one request, every
    answer cached per id (unknown ones as "not found")."""
    emulator.configure(spotify_batch_tracks=True)
    a, b = emulator.describe_track(STROBE), emulator.describe_track(BRIGHTSIDE)
    client = driver.spotify()
    assert driver.call(client, "get_track", a["spotify_id"])["name"] == "Strobe"
    tracks = driver.call(client, "get_tracks", [b["spotify_id"], UNKNOWN_ID, a["spotify_id"]])
    assert [t and t["name"] for t in tracks] == ["Mr. Brightside", None, "Strobe"]
    assert requests_to(emulator, "spotify", "tracks") == 1
    assert client.get_stats()["batch_tracks"] is True
    assert driver.call(client, "get_track", b["spotify_id"])["name"] == "Mr. Brightside"
    assert driver.call(client, "get_track", UNKNOWN_ID) is None
    assert requests_to(emulator, "spotify", "track") == 1  # the rest came from the batch
    assert driver.call(client, "get_tracks", []) == []


@pytest.mark.parametrize(
    ("method", "args", "field"),
    [
        ("search_track", ("", "Strobe"), "artist"),
        ("search_track", ("Deadmau5", "x" * 201), "title"),
        ("search_track", ("Deadmau5", "Strobe", {"market": "USA"}), "market"),
        ("search_by_isrc", ("US-IR2-04-0050",), "isrc"),
        ("get_track", ("not-an-id",), "track_id"),
        ("get_track", ("spotify:artist:4BUJ9WFhRWo4Vj9Z2dPwkf",), "track_id"),
        ("get_tracks", (["4BUJ9WFhRWo4Vj9Z2dPwkf", "bad"],), "ids[1]"),
        ("get_tracks", ("4BUJ9WFhRWo4Vj9Z2dPwkf",), "ids"),
        ("get_artist", ("short",), "artist_id"),
    ],
)
def test_bad_input_fails_before_any_network_call(
    driver: Driver, emulator: Emulator, method: str, args: tuple[Any, ...], field: str
) -> None:
    """Invalid input raises InvalidInput naming the field, with no request (not even a token)."""
    client = driver.spotify()
    *positional, last = args
    if isinstance(last, dict):  # keyword options ride last
        err = driver.catch(client, method, *positional, **last)
    else:
        err = driver.catch(client, method, *args)
    assert isinstance(err, InvalidInput)
    assert err.field == field
    assert emulator.stats()["total"] == 0


def test_constructor_checks_credentials_without_echoing_them() -> None:
    """Missing or malformed credentials fail at construction; the message hides the value."""
    from tunegate.clients import SpotifyClient

    with pytest.raises(ConfigurationError, match="client_secret"):
        SpotifyClient("id", "")
    with pytest.raises(ConfigurationError) as info:
        SpotifyClient("id", "se cret-value")
    assert "se cret-value" not in str(info.value)


def test_token_is_lazy_and_one_refresh_serves_concurrent_callers(
    driver: Driver, emulator: Emulator
) -> None:
    """No token at construction; 12 concurrent first calls share one token request, and
    after the tokens expire server-side, 12 concurrent calls share one refresh."""
    client = driver.spotify(rate=100.0, capacity=30)
    assert requests_to(emulator, "spotify", "token") == 0
    ids = [(emulator.describe_track(i)["spotify_id"],) for i in range(12)]
    driver.many(client, "get_track", ids)
    assert requests_to(emulator, "spotify", "token") == 1
    if driver.loop is not None:  # gathered tasks all join before the one token request ends
        # the followers are counted in the accounts pipeline's stats, not in a throwaway
        assert client._tokens.pipeline.get_stats()["coalesced"] == 11
    emulator.expire_tokens()
    others = [(emulator.describe_track(i)["spotify_id"],) for i in range(12, 24)]
    tracks = driver.many(client, "get_track", others)
    assert all(track is not None for track in tracks)
    assert requests_to(emulator, "spotify", "token") == 1 + 1
    token_stats = client.get_stats()["token"]
    assert token_stats["fetched"] == 2
    assert 1 <= token_stats["rejected"] <= 12  # callers that sent the old token first


def test_expired_token_mid_run_is_refreshed_once(driver: Driver, emulator: Emulator) -> None:
    """A 401 "token expired" refreshes the token and retries once, invisibly to the caller."""
    client = driver.spotify()
    assert driver.call(client, "get_track", emulator.describe_track(STROBE)["spotify_id"])
    emulator.expire_tokens()
    track = driver.call(client, "get_track", emulator.describe_track(BRIGHTSIDE)["spotify_id"])
    assert track["name"] == "Mr. Brightside"
    assert statuses(emulator, "spotify", "track") == {"200": 2, "401": 1}
    assert requests_to(emulator, "spotify", "token") == 2


def test_token_refused_again_after_refresh_is_an_error(driver: Driver, emulator: Emulator) -> None:
    """If the fresh token is refused too, the 401 surfaces: one refresh per call, no loop."""
    client = driver.spotify()
    emulator.set_faults("spotify/track:error=401")
    err = driver.catch(client, "get_track", emulator.describe_track(STROBE)["spotify_id"])
    assert isinstance(err, AuthenticationError)
    assert requests_to(emulator, "spotify", "token") == 2
    assert requests_to(emulator, "spotify", "track") == 2


def test_token_is_refreshed_ahead_of_expiry(driver: Driver, emulator: Emulator) -> None:
    """With a short token lifetime the client renews the token before it expires: no 401."""
    emulator.configure(token_lifetime=1.0)
    clock = FakeClock()
    client = driver.spotify(clock=clock)
    ids = [emulator.describe_track(i)["spotify_id"] for i in range(3)]
    driver.call(client, "get_track", ids[0])
    clock.advance(0.95)  # past the refresh point (90 % of a 1 s lifetime), before expiry
    driver.call(client, "get_track", ids[1])
    assert requests_to(emulator, "spotify", "token") == 2
    assert "401" not in statuses(emulator, "spotify", "track")


def test_real_short_lifetime_token_expires_mid_run(driver: Driver, emulator: Emulator) -> None:
    """A 1-second token outlived by the run (real clock) is renewed; no call fails."""
    import time

    emulator.configure(token_lifetime=1.0)
    client = driver.spotify()
    ids = [emulator.describe_track(i)["spotify_id"] for i in range(4)]
    for i, tid in enumerate(ids):
        assert driver.call(client, "get_track", tid) is not None
        if i == 1:
            time.sleep(1.05)
    assert requests_to(emulator, "spotify", "token") == 2
    assert set(statuses(emulator, "spotify", "track")) == {"200"}


def test_cached_answer_served_when_no_token_can_be_had(driver: Driver, emulator: Emulator) -> None:
    """Accounts down and the token expired: a cached answer is still served, fresh or
    (with stale-if-error) expired; an uncached one raises the token error."""
    clock = FakeClock()
    client = driver.spotify(clock=clock, cache_manager=CacheManager(clock=clock))
    strobe = emulator.describe_track(STROBE)["spotify_id"]
    assert driver.call(client, "get_track", strobe)["name"] == "Strobe"
    emulator.set_faults("spotify/token:error=503,retry_after=0")
    clock.advance(3_700)  # the token has expired on the client's clock
    assert driver.call(client, "get_track", strobe)["name"] == "Strobe"
    clock.advance(31 * 86_400)  # past the 30-day TTL: stale, served because of the outage
    assert driver.call(client, "get_track", strobe)["name"] == "Strobe"
    stats = client.get_stats()
    assert (stats["cache_hits"], stats["stale_served"]) == (1, 1)
    err = driver.catch(client, "get_track", emulator.describe_track(BRIGHTSIDE)["spotify_id"])
    # The accounts service has its own breaker; 5 failed attempts above opened it.
    assert isinstance(err, CircuitBreakerOpenError)
    assert err.provider == "spotify:accounts"


def test_wrong_credentials_are_an_authentication_error(driver: Driver, emulator: Emulator) -> None:
    """Refused client credentials raise AuthenticationError, fetched once (never in a loop)."""
    client = driver.spotify("someone", "wrong-secret")
    err = driver.catch(client, "search_track", "Deadmau5", "Strobe")
    assert isinstance(err, AuthenticationError)
    assert "wrong-secret" not in str(err)
    assert requests_to(emulator, "spotify", "token") == 1
    assert requests_to(emulator, "spotify", "search") == 0


def test_refused_credentials_are_remembered(driver: Driver, emulator: Emulator) -> None:
    """A refusal of the credentials is remembered: N calls, one after another and then at
    once, make one token request, each failing at once with AuthenticationError; once the
    hold has passed, one new request is made."""
    clock = FakeClock()
    client = driver.spotify("someone", "wrong-secret", clock=clock)
    for i in range(10):
        err = driver.catch(client, "search_track", "Deadmau5", f"Strobe {i}")
        assert isinstance(err, AuthenticationError)
        assert err.code == "invalid_client"
        assert "wrong-secret" not in str(err)
    many = [(client, "search_track", ("Deadmau5", f"Other {i}")) for i in range(8)]
    assert all(isinstance(e, AuthenticationError) for e in driver.together(many, errors=True))
    assert requests_to(emulator, "spotify", "token") == 1
    assert requests_to(emulator, "spotify", "search") == 0
    assert client.get_stats()["token"]["credentials_refused"] is True
    clock.advance(REFUSAL_HOLD + 1)
    assert client.get_stats()["token"]["credentials_refused"] is False
    assert isinstance(driver.catch(client, "get_artist", UNKNOWN_ID), AuthenticationError)
    assert requests_to(emulator, "spotify", "token") == 2


def test_accounts_breaker_is_in_the_stats(driver: Driver, emulator: Emulator) -> None:
    """During an accounts outage the accounts breaker opens; ``get_stats()`` shows it under
    ``token.circuit_breaker`` (the API's own breaker stays closed) and the client exposes it."""
    client = driver.spotify()
    assert client.get_stats()["token"]["circuit_breaker"]["state"] == "closed"
    emulator.set_faults("spotify/token:error=503,retry_after=0")
    errors = [driver.catch(client, "search_track", "Deadmau5", f"Strobe {i}") for i in range(3)]
    assert isinstance(errors[-1], CircuitBreakerOpenError)
    assert errors[-1].provider == "spotify:accounts"
    stats = client.get_stats()
    assert stats["circuit_breaker"]["state"] == "closed"
    assert stats["token"]["circuit_breaker"]["state"] == "open"
    assert client.accounts_breaker.get_stats()["state"] == "open"
    assert client.accounts_breaker.name == "spotify:accounts"


def test_secrets_never_in_repr_stats_or_logs(
    driver: Driver, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the client secret nor the bearer token appears in repr, stats or any log."""
    caplog.set_level(logging.DEBUG)
    client = driver.spotify()
    driver.call(client, "search_track", "Deadmau5", "Strobe")
    emulator.expire_tokens()
    driver.call(client, "get_track", emulator.describe_track(BRIGHTSIDE)["spotify_id"])
    token = client._tokens._token.access_token
    texts = [repr(client), repr(client._tokens), str(client.get_stats())]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(str(record.__dict__))
    for text in texts:
        assert "tunegate-test-secret" not in text
        assert token not in text


def test_base_url_forms_and_auth_url_default(emulator: Emulator) -> None:
    """``/v1`` on the base URL is accepted; the token comes from the same origin unless the
    API is the official one."""
    from tunegate.clients import SpotifyClient

    client = SpotifyClient("id", "secret", base_url=emulator.urls.spotify)
    assert client.base_url == emulator.urls.root
    assert client.auth_url == emulator.urls.root
    official = SpotifyClient("id", "secret", base_url="https://api.spotify.com/v1")
    assert official.auth_url == "https://accounts.spotify.com"
    with pytest.raises(ConfigurationError):
        SpotifyClient("id", "secret", base_url="api.spotify.com")


def test_failed_early_refresh_keeps_the_current_token(driver: Driver, emulator: Emulator) -> None:
    """The accounts service failing inside the refresh window is no outage: the current
    token (still valid) is kept, and the refresh is tried again a few seconds later."""
    clock = FakeClock()
    client = driver.spotify(clock=clock)
    ids = [emulator.describe_track(i)["spotify_id"] for i in range(4)]
    driver.call(client, "get_track", ids[0])
    clock.advance(3_550)  # past refresh_at (expiry - 60 s), before expiry
    emulator.set_faults("spotify/token:error=503,retry_after=0")
    assert driver.call(client, "get_track", ids[1]) is not None
    tries = requests_to(emulator, "spotify", "token")
    assert tries == 1 + 3  # the first token, then one failed refresh of 3 attempts
    assert driver.call(client, "get_track", ids[2]) is not None
    assert requests_to(emulator, "spotify", "token") == tries  # held: no new attempt yet
    emulator.clear_faults()
    clock.advance(6)
    assert driver.call(client, "get_track", ids[3]) is not None
    assert requests_to(emulator, "spotify", "token") == tries + 1
    assert client.get_stats()["token"]["fetched"] == 2


def test_cancelled_token_refresher_hands_over(emulator: Emulator) -> None:
    """A task cancelled while fetching the token does not strand the tasks waiting for it:
    one of them fetches instead."""
    import asyncio

    from tunegate.clients import AsyncSpotifyClient

    emulator.set_faults("spotify/token:latency=0.3,times=1")
    ids = [emulator.describe_track(i)["spotify_id"] for i in range(3)]

    async def main() -> tuple[list[Any], int]:
        async with AsyncSpotifyClient(
            "tunegate-test-id", "tunegate-test-secret", base_url=emulator.urls.root
        ) as client:
            first = asyncio.ensure_future(client.get_track(ids[0]))
            await asyncio.sleep(0.05)  # the first task is now fetching the token
            others = [asyncio.ensure_future(client.get_track(i)) for i in ids[1:]]
            await asyncio.sleep(0.05)
            first.cancel()
            tracks = list(await asyncio.gather(*others))
            return tracks, client.get_stats()["token"]["fetched"]

    tracks, fetched = asyncio.run(main())
    assert [t["id"] for t in tracks] == ids[1:]
    assert fetched == 1  # by a waiting task: the cancelled one never got its token


@pytest.mark.parametrize("secret", [frozenset(), frozenset({"api_key"})])
def test_the_bearer_header_is_added_as_replace_would(secret: frozenset[str]) -> None:
    """``_authorized`` (built positionally) adds the header and its secret as
    ``dataclasses.replace`` would, every other field as it was."""
    request = request_of_every_field(secret)
    bearer = ("Authorization", "Bearer t")
    expected = dataclasses.replace(
        request,
        headers=(*request.headers, bearer),
        secret_params=secret | {"Authorization"},
    )
    got = _authorized(request, bearer)
    for f in dataclasses.fields(ApiRequest):
        assert getattr(got, f.name) == getattr(expected, f.name), f.name
