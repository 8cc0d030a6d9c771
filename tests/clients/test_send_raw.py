"""``send_raw``: a request of the caller's own through a client's whole path (the entry the
service's pass-through uses), sync and async: the client's cache scope and token are
added, the answer is cached like any other, "not found" is raised."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients.conftest import Driver, requests_to
from tunegate.emulator import Emulator
from tunegate.exceptions import NotFound
from tunegate.providers import ApiRequest

STROBE = 0
UNKNOWN_ID = "0000000000000000000000"


def _track(spotify_id: str) -> ApiRequest:
    path = f"/v1/tracks/{spotify_id}"
    return ApiRequest(
        provider="spotify",
        method="GET",
        endpoint_template="/v1/tracks/{id}",
        path=path,
        cache_kind="spotify:track",
        cache_parts=("raw", path),  # the client puts its scope in front
    )


def test_spotify_raw_request_carries_the_token_and_is_cached_under_the_clients_scope(
    driver: Driver, emulator: Emulator
) -> None:
    strobe = emulator.describe_track(STROBE)
    client = driver.spotify()
    request = _track(strobe["spotify_id"])
    body = driver.call(client, "send_raw", request)
    assert body["id"] == strobe["spotify_id"]
    assert body["name"] == strobe["display_title"]
    assert driver.call(client, "send_raw", request) == body  # from the cache
    tracks = requests_to(emulator, "spotify") - requests_to(emulator, "spotify", "token")
    assert (tracks, requests_to(emulator, "spotify", "token")) == (1, 1)
    stats = client.get_stats()
    assert (stats["cache_hits"], stats["cache_misses"]) == (1, 1)
    # The entry is under the client's scope (an emulator origin: one "@..." part) ...
    assert client.cache_scope
    parts = (*client.cache_scope, *request.cache_parts)
    assert driver.run(lambda: _invalidate(driver, client, "spotify:track", parts))
    driver.call(client, "send_raw", request)  # ... so forgetting it there sends it again
    driver.call(client, "send_raw", request, use_cache=False)  # and so does no cache
    after = requests_to(emulator, "spotify") - requests_to(emulator, "spotify", "token")
    assert after == 3


def _invalidate(driver: Driver, client: Any, kind: str, parts: tuple[str, ...]) -> Any:
    cache = client.cache_manager
    if driver.loop is None:
        return cache.invalidate(kind, *parts)
    return cache.ainvalidate(kind, *parts)


def test_raw_not_found_is_raised(driver: Driver, emulator: Emulator) -> None:
    client = driver.spotify()
    error = driver.catch(client, "send_raw", _track(UNKNOWN_ID))
    assert isinstance(error, NotFound)
    assert error.provider == "spotify"


@pytest.mark.parametrize("expect", ["xml", "json"])
def test_musicbrainz_raw_request_as_text_or_values_under_the_clients_scope(
    driver: Driver, emulator: Emulator, expect: str
) -> None:
    """XML comes back as text, JSON as values; cached under the client's scope."""
    mbid = emulator.describe_track(STROBE)["mbid"]
    path = f"/ws/2/recording/{mbid}"
    params = (("fmt", "json"),) if expect == "json" else ()
    request = ApiRequest(
        provider="musicbrainz",
        method="GET",
        endpoint_template="/ws/2/recording/{mbid}",
        path=path,
        params=params,
        cache_kind="musicbrainz:recording",
        cache_parts=("raw", path, expect),
    )
    client = driver.musicbrainz()
    answer = driver.call(client, "send_raw", request, expect=expect)
    if expect == "xml":
        assert isinstance(answer, str)
        assert answer.lstrip().startswith("<?xml")
        assert mbid in answer
    else:
        assert answer["id"] == mbid
    assert driver.call(client, "send_raw", request, expect=expect) == answer
    assert requests_to(emulator, "musicbrainz") == 1
    parts = (*client.cache_scope, *request.cache_parts)
    assert driver.run(lambda: _invalidate(driver, client, "musicbrainz:recording", parts))
    assert driver.call(client, "send_raw", request, expect=expect) == answer
    assert requests_to(emulator, "musicbrainz") == 2
