"""Callers' API keys: parsing and the service's variables, 401 without a known key on /v1 and the
pass-through (operations stay open), the key never leaving the process, and the fair share:
two applications contend for one slow provider quota and the light one is not starved."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests._redis_server import free_port
from tunegate.clients import AsyncGateway
from tunegate.emulator import Emulator
from tunegate.exceptions import ConfigurationError
from tunegate.service import ServiceOptions, create_app
from tunegate.service.callers import CallerKeys, key_in
from tunegate.service.passthrough import verify_token

from ._proc import running_app
from .conftest import ADMIN_TOKEN, FAST_HTTP, FAST_RETRY, emulator_settings_of

KEY_HEAVY = "canary-key-heavy-91b7e2c4d0"
KEY_LIGHT = "canary-key-light-3f6a8d1e55"
KEYS = CallerKeys.of({"heavy": KEY_HEAVY, "light": KEY_LIGHT})
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_keys_name_their_applications_and_hide_themselves() -> None:
    keys = CallerKeys.parse(f"heavy={KEY_HEAVY}, light={KEY_LIGHT},")
    assert keys.apps() == {"heavy", "light"}
    assert keys.app_of(KEY_LIGHT) == "light"
    assert keys.app_of(f" {KEY_HEAVY} ") == "heavy"
    for wrong in (None, "", KEY_LIGHT[:-1], KEY_LIGHT + "x", "heavy", "light"):
        assert keys.app_of(wrong) is None
    assert KEY_HEAVY not in repr(keys)
    assert KEY_HEAVY not in repr(ServiceOptions(api_keys=keys))
    padded = CallerKeys.parse("b64=c2VjcmV0IGtleQ==")  # split at the first "=" only
    assert padded.app_of("c2VjcmV0IGtleQ==") == "b64"
    assert not CallerKeys.parse(" , ")
    # Errors name entries by position: never a key, nor a name that may be one.
    bad = {
        f"a={KEY_HEAVY},b={KEY_HEAVY}": "entries 1 and 2 share one key",
        f"{KEY_HEAVY}": "entry 1 is not app=KEY",
        f"a=k1,a={KEY_HEAVY}": "entry 2: that name is given twice",
        "a=": "entry 1: the key is empty",
        f"light={KEY_LIGHT},no spaces={KEY_HEAVY}": "entry 2: the name is not a plain name",
    }
    for text, message in bad.items():
        with pytest.raises(ConfigurationError, match=message) as refused:
            CallerKeys.parse(text)
        assert KEY_HEAVY not in str(refused.value)
    with pytest.raises(ConfigurationError, match="not a plain name"):
        CallerKeys.of({"no spaces": "k"})


def test_a_request_carries_its_key_in_either_header() -> None:
    assert key_in({"x-api-key": "k1"}) == "k1"
    assert key_in({"authorization": "Bearer k2"}) == "k2"
    assert key_in({"authorization": "Basic k3"}) is None
    assert key_in({}) is None


def test_service_variables() -> None:
    """``ServiceOptions.from_env``: the service's variables (the TOML file's equivalents are
    in tests/test_config_service.py)."""
    env = {
        "TUNEGATE_ADMIN_TOKEN": "from-env",
        "TUNEGATE_TOKEN_KEY": "tk",
        "TUNEGATE_API_KEYS": f"heavy={KEY_HEAVY},light={KEY_LIGHT}",
    }
    opts = ServiceOptions.from_env(env)
    assert opts.admin_token == "from-env"
    assert opts.token_key == b"tk"
    assert opts.api_keys.app_of(KEY_HEAVY) == "heavy"
    assert opts.api_keys.apps() == {"heavy", "light"}
    assert not ServiceOptions.from_env({}).api_keys  # none configured: an open service
    bad = {"TUNEGATE_API_KEYS": f"a={KEY_HEAVY},b={KEY_HEAVY}"}
    with pytest.raises(ConfigurationError, match="entries 1 and 2 share one key") as refused:
        ServiceOptions.from_env(bad)
    assert "TUNEGATE_API_KEYS" in str(refused.value)
    assert KEY_HEAVY not in str(refused.value)


def test_serve_exits_2_with_one_line_on_bad_keys() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tunegate", "serve", "--sandbox", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TUNEGATE_API_KEYS": f"a={KEY_HEAVY},b={KEY_HEAVY}"},
    )
    assert out.returncode == 2, out.stderr
    assert "share one key" in out.stderr
    assert "TUNEGATE_API_KEYS" in out.stderr  # the line names the variable
    assert "Traceback" not in out.stderr
    assert KEY_HEAVY not in out.stderr + out.stdout


def _keyed(emulator: Emulator, redis_url: str | None = None) -> Starlette:
    registry = CollectorRegistry()
    settings = emulator_settings_of(emulator, redis_url=redis_url)
    gateway = AsyncGateway(settings, registry=registry, http=FAST_HTTP, retry=FAST_RETRY)
    options = ServiceOptions(admin_token=ADMIN_TOKEN, registry=registry, api_keys=KEYS)
    return create_app(gateway, options=options, owns_gateway=True)


def test_keys_configured_every_caller_needs_one(
    emulator: Emulator, track: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    q = {"artist": track["artist"], "title": track["title"]}
    path = f"/v1/spotify/tracks/{track['id']}"
    app = _keyed(emulator)
    token_key = app.state.tunegate.options.token_key
    with TestClient(app) as c:
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            r = c.get(path, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["type"].endswith("/unauthorized")
            assert r.headers["www-authenticate"].startswith("Bearer")
        r = c.get(path, headers={"X-API-Key": KEY_HEAVY})
        assert r.status_code == 200, r.text
        r = c.get("/v1/lastfm/tags", params=q, headers={"Authorization": f"Bearer {KEY_LIGHT}"})
        assert r.status_code == 200, r.text
        for open_path in ("/healthz", "/readyz", "/metrics", "/status.json", "/openapi.json"):
            assert c.get(open_path).status_code == 200, open_path
        assert c.get("/admin/stats", headers=ADMIN).status_code == 200  # the admin token
        assert c.get("/admin/stats", headers={"X-API-Key": KEY_HEAVY}).status_code == 401

        # The pass-through, each provider's credential slot or the header.
        form = {"grant_type": "client_credentials"}
        r = c.post("/spotify/api/token", data=form, auth=("any-id", "wrong"))
        assert r.status_code == 401
        r = c.post("/spotify/api/token", data=form, auth=("any-id", KEY_LIGHT))
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        assert verify_token(token_key, token) == "light"
        seen.append(r.text)
        r = c.get(f"/spotify/v1/tracks/{track['id']}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.json()["id"] == track["id"]
        lastfm = {"method": "track.getTopTags", "format": "json", "artist": q["artist"]}
        lastfm["track"] = q["title"]
        r = c.get("/lastfm/2.0/", params={**lastfm, "api_key": "wrong"})
        assert r.status_code == 403
        assert r.json()["error"] == 10  # Last.fm's "invalid API key": its clients know it
        assert c.get("/lastfm/2.0/", params={**lastfm, "api_key": KEY_HEAVY}).status_code == 200
        mb = f"/musicbrainz/ws/2/recording/{track['mbid']}"
        r = c.get(mb, params={"fmt": "json"})
        assert r.status_code == 401
        assert "error" in r.json()
        r = c.get(mb, params={"fmt": "json"}, headers={"X-API-Key": KEY_HEAVY})
        assert r.status_code == 200, r.text
        for r in (c.get("/metrics"), c.get("/status.json")):
            seen.append(r.text)
    # The service's records (httpx's are this test's own client logging its URLs).
    ours = [r for r in caplog.records if not r.name.startswith("httpx")]
    seen.extend(rec.getMessage() + repr(rec.__dict__) for rec in ours)
    everything = "\n".join(seen)
    for key in (KEY_HEAVY, KEY_LIGHT):
        assert key not in everything


# -- the fair share ---------------------------------------------------------------------

HEAVY = 16
LIGHT = 4


@pytest.fixture(params=["memory", "redis"])
def live_keyed(request: pytest.FixtureRequest, emulator: Emulator) -> Iterator[str]:
    """The keyed service with local state, or on a shared Redis (cache, bucket, breakers):
    a shared bucket's waiters in one process are ordered by application too."""
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    with running_app(_keyed(emulator, url)) as base:
        yield base


def test_a_light_caller_is_not_starved_by_a_heavy_one(live_keyed: str, emulator: Emulator) -> None:
    """Heavy queues 16 distinct Last.fm calls behind a 5/s quota; light then sends 4.
    In arrival order light's would all come after heavy's 16; round-robin by application
    answers light's 4 among heavy's next ones. Counted in answer order, not timed."""
    artists = sorted({emulator.catalog.artist(i).name for i in range(200)})[: HEAVY + LIGHT]
    assert len(artists) == HEAVY + LIGHT  # distinct: no cache hit, no coalescing
    order: list[str] = []

    async def run() -> None:
        async with httpx.AsyncClient(base_url=live_keyed, timeout=90) as c:
            r = await c.post(
                "/admin/limits/lastfm/rate", json={"rate": 5, "capacity": 1}, headers=ADMIN
            )
            assert r.status_code == 200, r.text

            async def ask(app: str, key: str, artist: str) -> None:
                r = await c.get(
                    "/v1/lastfm/artist-tags",
                    params={"artist": artist},
                    headers={"X-API-Key": key, "X-Request-Timeout": "100"},
                )
                assert r.status_code in (200, 404), r.text  # answered, not refused (429)
                order.append(app)

            heavy = [asyncio.create_task(ask("heavy", KEY_HEAVY, a)) for a in artists[:HEAVY]]
            for _ in range(500):  # bounded: until heavy's calls are all being answered
                status = (await c.get("/status.json")).json()
                if status["in_flight"] - 1 >= HEAVY - len(order):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("heavy's calls never all arrived")
            joined = len(order)
            assert joined <= HEAVY - 8, order  # most of heavy's calls still wait for slots
            light = [asyncio.create_task(ask("light", KEY_LIGHT, a)) for a in artists[HEAVY:]]
            await asyncio.gather(*heavy, *light)

    asyncio.run(run())
    assert sorted(order) == sorted(["heavy"] * HEAVY + ["light"] * LIGHT)
    last_light = max(i for i, app in enumerate(order) if app == "light")
    heavy_after = order[last_light:].count("heavy")
    # FIFO: 0 heavy answers after light's last. Fair: light's 4 take every other turn.
    assert heavy_after >= 4, order


def test_the_document_says_keys_are_required(emulator: Emulator) -> None:
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra")
    with TestClient(_keyed(emulator)) as c:
        doc = c.get("/openapi.json").json()
    schemathesis.openapi.from_dict(doc).validate()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["callerKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    for path, item in doc["paths"].items():
        for op in item.values():
            if path.startswith("/v1/"):
                assert op["security"] == [{"callerKey": []}, {"callerBearer": []}], path
                assert "401" in op["responses"], path
            elif not path.startswith("/admin/"):
                assert "security" not in op, path  # operations and the pass-through
    open_doc = openapi_document_of_open_service()
    assert "callerKey" not in open_doc["components"]["securitySchemes"]
    assert all("security" not in op for op in open_doc["paths"]["/v1/spotify/search"].values())


def openapi_document_of_open_service() -> dict[str, Any]:
    from tunegate.service.openapi import openapi_document

    app = create_app(options=ServiceOptions(registry=CollectorRegistry()))
    return openapi_document(app.routes)
