"""Operations: /metrics, /healthz, /readyz (a real Redis that the test stops), and the
admin endpoints behind the bearer token; canary secrets never leave the process."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests._redis_server import RedisServer
from tunegate.emulator import Emulator

from .conftest import ADMIN_TOKEN, Factory, emulator_settings_of, known_track

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CANARY_SECRET = "canary-spotify-secret-0d9e8f7a"
CANARY_LASTFM = "canary-lastfm-key-5c4b3a2918"


def test_metrics_show_the_librarys_and_the_servers_figures(
    service: Factory, track: dict[str, str]
) -> None:
    with service() as c:
        c.get(f"/v1/spotify/tracks/{track['id']}")
        c.get(f"/v1/spotify/tracks/{track['id']}")
        r = c.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        text = r.text
    assert 'api_calls_total{provider="spotify",status="success"}' in text
    assert 'cache_operations_total{provider="spotify",result="hit"} 1.0' in text
    assert 'circuit_breaker_state{provider="spotify"} 0.0' in text
    assert "rate_limit_tokens_available" in text
    line = 'http_requests_total{method="GET",route="/v1/spotify/tracks/{id}",status="200"} 2.0'
    assert line in text
    assert "http_request_duration_seconds_bucket" in text
    assert track["id"] not in text  # route templates only, never a raw path


def test_healthz_and_readyz_without_redis(service: Factory) -> None:
    with service() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.get("/readyz")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ready"
        assert body["checks"]["providers"]["configured"] == ["spotify", "musicbrainz", "lastfm"]
        assert "redis" not in body["checks"]
        assert body["breakers"]["spotify"] == "closed"


def test_readyz_follows_redis(
    service: Factory, emulator: Emulator, redis_server: RedisServer
) -> None:
    settings = emulator_settings_of(emulator, redis_url=redis_server.url)
    with service(settings=settings) as c:
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["redis"] == {"ok": True}
        redis_server.stop()
        try:
            r = c.get("/readyz")
            assert r.status_code == 503
            assert r.json()["status"] == "not ready"
            assert r.json()["checks"]["redis"]["ok"] is False
            assert c.get("/healthz").status_code == 200  # alive, only not ready
        finally:
            redis_server.start()
        assert c.get("/readyz").status_code == 200  # back when Redis is


def test_admin_needs_the_token(service: Factory) -> None:
    with service() as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
            r = c.get("/admin/stats", headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["type"].endswith("/unauthorized")
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/admin/stats", headers=AUTH).status_code == 200
        r = c.post("/admin/breakers/spotify/reset", headers={"Authorization": "Bearer x"})
        assert r.status_code == 401


def test_admin_with_no_token_configured_refuses_everyone(
    service: Factory, track: dict[str, str]
) -> None:
    from prometheus_client import CollectorRegistry

    from tunegate.service import ServiceOptions

    options = ServiceOptions(admin_token=None, registry=CollectorRegistry())
    with service(options=options) as c:
        assert c.get("/admin/stats", headers=AUTH).status_code == 401
        assert c.get("/admin/stats", headers={"Authorization": "Bearer "}).status_code == 401


def test_admin_resets_a_breaker_and_invalidates_the_cache(
    service: Factory, emulator: Emulator, track: dict[str, str]
) -> None:
    path = f"/v1/spotify/tracks/{track['id']}"
    with service() as c:
        assert c.get(path).headers["x-cache"] == "miss"
        assert c.get(path).headers["x-cache"] == "hit"
        r = c.post(
            "/admin/cache/invalidate",
            json={"kind": "spotify:track", "parts": [track["id"]]},
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        assert r.json()["deleted"] == 1
        assert c.get(path).headers["x-cache"] == "miss"  # asked the provider again

        emulator.set_faults("spotify/search:error=503")
        q = {"artist": track["artist"], "title": track["title"]}
        for _ in range(8):  # bounded: the breaker opens after 5 failures
            if c.get("/v1/spotify/search", params=q).json().get("type", "").endswith("open"):
                break
        assert c.get("/admin/breakers", headers=AUTH).json()["spotify"]["state"] == "open"
        emulator.clear_faults()
        r = c.post("/admin/breakers/spotify/reset", headers=AUTH)
        assert r.status_code == 200
        assert r.json()["state"] == "closed"
        assert c.get("/v1/spotify/search", params=q).status_code == 200
        r = c.post("/admin/breakers/nope/reset", headers=AUTH)
        assert r.status_code == 422
        assert r.json()["field"] == "name"


def test_admin_invalidates_by_pattern(service: Factory, track: dict[str, str]) -> None:
    with service() as c:
        c.get(f"/v1/spotify/tracks/{track['id']}")
        c.get(f"/v1/spotify/isrc/{track['isrc']}")
        r = c.post("/admin/cache/invalidate", json={"pattern": "spotify:*"}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["deleted"] >= 2
        assert c.get(f"/v1/spotify/tracks/{track['id']}").headers["x-cache"] == "miss"


def test_admin_pauses_and_changes_a_providers_rate(service: Factory, track: dict[str, str]) -> None:
    with service() as c:
        r = c.post("/admin/limits/lastfm/rate", json={"rate": 2.5, "capacity": 3}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"provider": "lastfm", "rate": 2.5, "capacity": 3}
        providers = c.get("/status.json").json()["providers"]
        assert providers["lastfm"]["rate"] == 2.5
        r = c.post("/admin/limits/lastfm/rate", json={"reset": True}, headers=AUTH)
        assert r.json()["rate"] != 2.5
        r = c.post("/admin/limits/spotify/pause", json={"seconds": 300}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["paused_until"] is not None
        # Paused: the gateway itself makes the caller wait, so it says for how long.
        r = c.get(f"/v1/spotify/tracks/{track['id']}", headers={"X-Request-Timeout": "5"})
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 200
        for bad in ({"seconds": -1}, {"seconds": "x"}, {}):
            r = c.post("/admin/limits/spotify/pause", json=bad, headers=AUTH)
            assert r.status_code == 422
            assert r.json()["field"] == "seconds"
        r = c.post("/admin/limits/nobody/pause", json={"seconds": 1}, headers=AUTH)
        assert r.json()["field"] == "provider"


def test_admin_resume_ends_a_pause_and_requests_flow(
    service: Factory, emulator: Emulator, track: dict[str, str]
) -> None:
    short = {"X-Request-Timeout": "5"}
    with service() as c:
        assert c.post("/admin/limits/spotify/resume", headers={}).status_code == 401
        r = c.post("/admin/limits/spotify/pause", json={"seconds": 600}, headers=AUTH)
        assert r.status_code == 200, r.text
        r = c.get(f"/v1/spotify/tracks/{track['id']}", headers=short)
        assert r.status_code == 429, r.text

        def spotify_calls() -> int:
            return int(emulator.stats()["requests"].get("spotify", {}).get("total", 0))

        before = spotify_calls()
        r = c.post("/admin/limits/spotify/resume", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"provider": "spotify", "paused_until": None, "next_token_in": 0.0}
        assert c.get("/status.json").json()["providers"]["spotify"]["paused_until"] is None
        other = known_track(emulator.catalog, skip=1)
        for t in (track, other):  # flowing again: neither is cached, so each asks Spotify
            r = c.get(f"/v1/spotify/tracks/{t['id']}", headers=short)
            assert r.status_code == 200, r.text
            assert r.headers["x-cache"] == "miss"
        assert spotify_calls() >= before + 2
        r = c.post("/admin/limits/nobody/resume", headers=AUTH)
        assert r.status_code == 422
        assert r.json()["field"] == "provider"


@pytest.fixture
def emulator_settings() -> dict[str, Any]:
    from tunegate.emulator import RateLimit

    return {
        "catalog_size": 2_000,
        "musicbrainz_rate": RateLimit(1000, 1.0),
        "lastfm_rate": RateLimit(1000, 1.0),
        "spotify_clients": {"canary-client": CANARY_SECRET},
        "lastfm_api_keys": [CANARY_LASTFM],
    }


def test_canary_secrets_never_leave_the_process(
    service: Factory,
    emulator: Emulator,
    track: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = emulator_settings_of(
        emulator,
        spotify_client_id="canary-client",
        spotify_client_secret=CANARY_SECRET,
        lastfm_api_key=CANARY_LASTFM,
    )
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    q = {"artist": track["artist"], "title": track["title"]}
    with service(settings=settings) as c:
        wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}x"}
        calls: list[tuple[str, dict[str, str], dict[str, str]]] = [
            ("/v1/spotify/search", q, {}),
            ("/v1/lastfm/tags", q, {}),
            ("/admin/stats", {}, AUTH),
            ("/admin/stats", {}, wrong),
            ("/admin/breakers", {}, AUTH),
            ("/readyz", {}, {}),
            ("/status.json", {}, {}),
            ("/openapi.json", {}, {}),
        ]
        for path, params, headers in calls:
            r = c.get(path, params=params, headers=headers)
            assert r.status_code < 500, (path, r.text)
            seen.append(r.text)
            seen.extend(f"{k}: {v}" for k, v in r.headers.items())
        emulator.set_faults("spotify/track:error=401;lastfm:error=500")
        for path in (f"/v1/spotify/tracks/{track['id']}", "/v1/lastfm/track"):
            r = c.get(path, params=q)
            assert r.status_code >= 400
            seen.append(r.text)
        seen.append(c.get("/metrics").text)
    seen.extend(rec.getMessage() + repr(rec.__dict__) for rec in caplog.records)
    assert seen
    everything = "\n".join(seen)
    assert "Bearer " + ADMIN_TOKEN not in everything
    for canary in (ADMIN_TOKEN, CANARY_SECRET, CANARY_LASTFM):
        assert canary not in everything


def test_readyz_is_503_without_any_provider(service: Factory) -> None:
    from tunegate.clients import Settings

    with service(settings=Settings()) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["providers"] == {"ok": False, "configured": []}
        assert c.get("/healthz").status_code == 200
