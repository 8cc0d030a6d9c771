"""The typed /v1 API in-process against the emulator: every route answers, X-Cache tells
hit from miss from stale, and every error of the tree has its status and problem type."""

from __future__ import annotations

from typing import Any

import pytest

from tunegate.cache import CacheManager
from tunegate.emulator import Emulator
from tunegate.ratelimit import RateLimiter
from tunegate.service.errors import PROBLEM
from tunegate.testing import FakeClock

from .conftest import Factory


def _problem(r: Any, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + kind
    assert body["status"] == status
    return body


def test_every_v1_route_answers_with_the_clients_data(
    service: Factory, track: dict[str, str]
) -> None:
    q = {"artist": track["artist"], "title": track["title"]}
    with service() as c:
        r = c.get("/v1/spotify/search", params=q)
        assert r.status_code == 200, r.text
        assert r.json()["id"] == track["id"]
        assert c.get(f"/v1/spotify/tracks/{track['id']}").json()["id"] == track["id"]
        many = c.get("/v1/spotify/tracks", params={"ids": f"{track['id']},{'0' * 22}"}).json()
        assert many[0]["id"] == track["id"]
        assert many[1] is None
        assert c.get(f"/v1/spotify/isrc/{track['isrc']}").json()["id"] == track["id"]
        assert c.get(f"/v1/musicbrainz/isrc/{track['isrc']}").json()["id"] == track["mbid"]
        recs = c.get(f"/v1/musicbrainz/isrc/{track['isrc']}/recordings").json()
        assert track["mbid"] in [rec["id"] for rec in recs]
        assert c.get("/v1/musicbrainz/recordings", params=q).json()["id"] == track["mbid"]
        assert c.get(f"/v1/musicbrainz/recordings/{track['mbid']}").json()["id"] == track["mbid"]
        tags = c.get("/v1/lastfm/tags", params=q).json()
        assert isinstance(tags, list)
        assert tags
        assert all(isinstance(t, str) for t in tags)
        info = c.get("/v1/lastfm/track", params=q).json()
        assert info["name"].casefold().startswith(track["title"].casefold()[:5])
        artist_tags = c.get("/v1/lastfm/artist-tags", params={"artist": track["artist"]})
        assert artist_tags.status_code == 200
        assert isinstance(artist_tags.json(), list)
        r = c.post("/v1/enrich", json={"rows": [q, {"artist": "Nobody Here", "title": "Nothing"}]})
        assert r.status_code == 200, r.text
        found, missing = r.json()["records"]
        assert found["status"] == "ok"
        assert found["spotify"]["id"] == track["id"]
        assert missing["status"] == "not_found"


def test_x_cache_is_miss_then_hit(service: Factory, track: dict[str, str]) -> None:
    q = {"artist": track["artist"], "title": track["title"]}
    with service() as c:
        for path, params in (
            ("/v1/spotify/search", q),
            (f"/v1/musicbrainz/isrc/{track['isrc']}", {}),
            ("/v1/lastfm/tags", q),
        ):
            first = c.get(path, params=params)
            second = c.get(path, params=params)
            assert (first.status_code, second.status_code) == (200, 200), path
            assert first.headers["x-cache"] == "miss", path
            assert second.headers["x-cache"] == "hit", path
            assert second.json() == first.json()
        rows = {
            "rows": [{"artist": track["artist"], "title": track["title"], "isrc": track["isrc"]}]
        }
        assert c.post("/v1/enrich", json=rows).headers["x-cache"] == "miss"
        assert c.post("/v1/enrich", json=rows).headers["x-cache"] == "hit"  # every part cached
        # An answer nothing was looked up for (refused input) is not a hit.
        assert c.get("/v1/spotify/search", params={"artist": "x"}).headers["x-cache"] == "miss"


def test_x_cache_stale_when_the_provider_fails_after_the_ttl(
    service: Factory, emulator: Emulator, track: dict[str, str]
) -> None:
    clock = FakeClock()
    cache = CacheManager(ttls={"spotify:track": 60.0}, clock=clock)
    with service(cache_manager=cache, clock=clock) as c:
        path = f"/v1/spotify/tracks/{track['id']}"
        assert c.get(path).headers["x-cache"] == "miss"
        assert c.get(path).headers["x-cache"] == "hit"
        clock.advance(120.0)  # past the TTL, within the stale grace
        emulator.set_faults("spotify/track:error=503")
        r = c.get(path)
        assert r.status_code == 200, r.text
        assert r.headers["x-cache"] == "stale"
        assert r.json()["id"] == track["id"]


def test_422_names_the_field(service: Factory) -> None:
    with service() as c:
        body = _problem(c.get("/v1/spotify/search", params={"artist": "x"}), 422, "invalid-input")
        assert body["field"] == "title"
        body = _problem(c.get("/v1/spotify/tracks/not-an-id"), 422, "invalid-input")
        assert body["field"]  # the client's validation names it
        body = _problem(c.get("/v1/musicbrainz/isrc/XX"), 422, "invalid-input")
        assert body["field"] == "isrc"
        body = _problem(c.post("/v1/enrich", json={"rows": []}), 422, "invalid-input")
        assert body["field"] == "rows"
        r = c.post("/v1/enrich", json={"rows": [{"artist": "a", "title": " "}]})
        assert _problem(r, 422, "invalid-input")["field"] == "rows[0].title"
        r = c.post("/v1/enrich", content=b"{nope", headers={"content-type": "application/json"})
        assert _problem(r, 422, "invalid-input")["field"] == "body"
        r = c.post("/v1/enrich", content=b" " * (2 << 20))
        assert _problem(r, 422, "invalid-input")["field"] == "body"
        r = c.get("/v1/lastfm/tags", params={"artist": "a", "title": "b", "autocorrect": "maybe"})
        assert _problem(r, 422, "invalid-input")["field"] == "autocorrect"
        r = c.get(
            "/v1/spotify/search",
            params={"artist": "a", "title": "b"},
            headers={"X-Request-Timeout": "-1"},
        )
        assert _problem(r, 422, "invalid-input")["field"] == "X-Request-Timeout"


def test_404_for_unknown_things(service: Factory) -> None:
    with service() as c:
        _problem(c.get("/v1/spotify/tracks/" + "0" * 22), 404, "not-found")
        r = c.get("/v1/musicbrainz/recordings/00000000-0000-4000-8000-000000000000")
        _problem(r, 404, "not-found")
        r = c.get("/v1/spotify/search", params={"artist": "Nobody Here", "title": "Nothing"})
        _problem(r, 404, "not-found")


def test_429_with_retry_after_when_the_gateway_makes_the_caller_wait(
    service: Factory, track: dict[str, str]
) -> None:
    limiter = RateLimiter()
    limiter.configure_provider("spotify", 0.01, 1)  # one call, then a token in 100 s
    with service(rate_limiter=limiter) as c:
        assert c.get(f"/v1/spotify/tracks/{track['id']}").status_code == 200
        r = c.get(f"/v1/spotify/isrc/{track['isrc']}")
        body = _problem(r, 429, "rate-limited")
        assert body["provider"] == "spotify"
        assert 60 <= int(r.headers["retry-after"]) <= 101


def test_429_passes_on_the_providers_retry_after(
    service: Factory, emulator: Emulator, track: dict[str, str]
) -> None:
    emulator.set_faults("spotify/track:error=429,retry_after=3600")
    with service() as c:
        r = c.get(f"/v1/spotify/tracks/{track['id']}")
        _problem(r, 429, "upstream-rate-limited")
        assert int(r.headers["retry-after"]) >= 3000


def test_503_when_the_breaker_is_open(
    service: Factory, emulator: Emulator, track: dict[str, str]
) -> None:
    emulator.set_faults("spotify/track:error=503")
    with service() as c:
        path = f"/v1/spotify/tracks/{track['id']}"
        kinds = set()
        for _ in range(8):  # bounded: the breaker opens after 5 failures
            r = c.get(path)
            kinds.add(r.json()["type"].rsplit("/", 1)[-1])
            if r.json()["type"].endswith("/breaker-open"):
                break
        assert "upstream-unavailable" in kinds
        body = _problem(r, 503, "breaker-open")
        assert body["provider"] == "spotify"
        assert int(r.headers["retry-after"]) >= 1


def test_502_for_a_malformed_upstream_answer(
    service: Factory, emulator: Emulator, track: dict[str, str]
) -> None:
    emulator.set_faults("spotify/track:malformed")
    with service() as c:
        _problem(c.get(f"/v1/spotify/tracks/{track['id']}"), 502, "upstream-malformed")


def test_504_when_the_request_deadline_runs_out(
    service: Factory, emulator: Emulator, track: dict[str, str]
) -> None:
    emulator.set_faults("spotify/track:latency=2")
    with service() as c:
        r = c.get(f"/v1/spotify/tracks/{track['id']}", headers={"X-Request-Timeout": "0.3"})
        body = _problem(r, 504, "deadline-exceeded")
        assert "0.3" in body["detail"]


def test_504_when_the_provider_times_out(
    service: Factory, emulator: Emulator, track: dict[str, str]
) -> None:
    from tunegate._http import HttpConfig
    from tunegate._policy.retry import RetryPolicy

    emulator.set_faults("spotify/track:latency=3")
    http = HttpConfig(connect_timeout=0.5, read_timeout=0.3, total_timeout=0.4)
    with service(http=http, retry=RetryPolicy(max_attempts=1, deadline=5.0)) as c:
        _problem(c.get(f"/v1/spotify/tracks/{track['id']}"), 504, "upstream-timeout")


def test_503_for_a_provider_that_is_not_configured(service: Factory, emulator: Emulator) -> None:
    from dataclasses import replace

    from .conftest import emulator_settings_of

    settings = replace(emulator_settings_of(emulator), lastfm_api_key=None)
    with service(settings=settings) as c:
        body = _problem(
            c.get("/v1/lastfm/artist-tags", params={"artist": "a"}), 503, "not-configured"
        )
        assert "LASTFM_API_KEY" in body["detail"]


def test_request_id_is_taken_or_made(service: Factory) -> None:
    with service() as c:
        assert (
            c.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["x-request-id"] == "abc-1"
        )
        made = c.get("/healthz").headers["x-request-id"]
        assert made
        assert made != "abc-1"


def test_every_problem_type_the_tree_can_produce_is_documented(
    service: Factory,
) -> None:
    from tunegate.service.errors import PROBLEMS

    with service() as c:
        doc = c.get("/openapi.json").json()
    enum = doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
    assert sorted(PROBLEM + p.kind for p in PROBLEMS) == enum


@pytest.mark.parametrize("status", [404, 422, 429, 502, 503, 504])
def test_documented_errors_of_v1_routes(service: Factory, status: int) -> None:
    with service() as c:
        doc = c.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        if path.startswith("/v1/") and path != "/v1/enrich":
            assert str(status) in item["get"]["responses"], path


def test_batched_isrc_lookup(service: Factory, emulator: Emulator) -> None:
    from .conftest import known_track

    tracks = [known_track(emulator.catalog, skip=i) for i in range(3)]
    isrcs = ",".join([t["isrc"] for t in tracks] + ["GBAAA0000000"])
    with service() as c:
        r = c.get("/v1/musicbrainz/isrcs", params={"isrcs": isrcs})
        assert r.status_code == 200, r.text
        found = r.json()
        assert [rec and rec["id"] for rec in found[:3]] == [t["mbid"] for t in tracks]
        assert found[3] is None
        assert r.headers["x-cache"] == "miss"
        searches = emulator.stats()["requests"]["musicbrainz"]["total"]
        assert searches == 1  # one batched search for all four
        again = c.get("/v1/musicbrainz/isrcs", params={"isrcs": isrcs})
        assert again.headers["x-cache"] == "hit"
        too_many = ",".join(["GBAAA0000000"] * 101)
        r = c.get("/v1/musicbrainz/isrcs", params={"isrcs": too_many})
        assert r.status_code == 422
        assert r.json()["field"] == "isrcs"
