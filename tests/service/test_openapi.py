"""The OpenAPI document: generated from the routes' declarations, it lists every route of
the app, every documented route answers, and schemathesis finds no server error or schema
violation against the live service (bounded number of examples)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from tunegate.clients import AsyncGateway
from tunegate.emulator import Emulator, RateLimit
from tunegate.ratelimit import RateLimiter
from tunegate.service import ServiceOptions, create_app
from tunegate.service.api import ENDPOINTS
from tunegate.service.openapi import openapi_document

from ._proc import running_app
from .conftest import ADMIN_TOKEN, FAST_HTTP, FAST_RETRY, Factory, emulator_settings_of

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra")


def _template(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def test_every_route_is_in_the_document_and_answers(service: Factory) -> None:
    with service() as c:
        doc = c.get("/openapi.json").json()
        app_routes = {
            (_template(r.path), m)
            for r in c.app.routes  # type: ignore[attr-defined]
            if isinstance(r, Route) and r.include_in_schema
            for m in (r.methods or {"GET"}) - {"HEAD"}
        }
        documented = {(p, m.upper()) for p, item in doc["paths"].items() for m in item}
        assert app_routes == documented
        assert {(e.path, e.method) for e in ENDPOINTS} <= documented
        for path, method in sorted(documented):
            concrete = re.sub(r"\{\w+\}", "x", path)
            r = c.request(method, concrete)
            # Every route is there: a refusal of the input or the token, never "no route".
            assert r.status_code != 405, (method, path)
            if r.status_code == 404:
                assert r.headers["content-type"].startswith(
                    ("application/problem+json", "application/json")
                ), (method, path)
        assert c.get("/docs").status_code == 200
        assert "/openapi.json" in c.get("/docs").text


def test_an_undeclared_route_is_refused() -> None:
    async def nothing(request: Any) -> Any:
        raise AssertionError

    with pytest.raises(LookupError, match="/v1/nowhere"):
        openapi_document([Route("/v1/nowhere", nothing)])


def test_the_document_is_valid_openapi(service: Factory) -> None:
    with service() as c:
        doc = c.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    schema.validate()  # against the OpenAPI 3.1 meta-schema (it refuses a broken document)
    operations = list(schema.get_all_operations())
    assert len(operations) == sum(len(item) for item in doc["paths"].values())
    assert doc["openapi"] == "3.1.0"
    track = doc["paths"]["/v1/spotify/tracks/{id}"]["get"]["responses"]["200"]
    assert track["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SpotifyTrack"
    }
    assert "X-Cache" in track["headers"]


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    emu = Emulator(
        catalog_size=2_000,
        spotify_rate=RateLimit(100_000, 30.0),
        musicbrainz_rate=RateLimit(100_000, 1.0),
        lastfm_rate=RateLimit(100_000, 1.0),
    )
    with emu:
        limiter = RateLimiter()
        for name in ("spotify", "musicbrainz", "lastfm"):
            limiter.configure_provider(name, 10_000.0, 10_000)
        registry = CollectorRegistry()
        gateway = AsyncGateway(
            emulator_settings_of(emu),
            registry=registry,
            http=FAST_HTTP,
            retry=FAST_RETRY,
            rate_limiter=limiter,
        )
        options = ServiceOptions(admin_token=ADMIN_TOKEN, registry=registry)
        app = create_app(gateway, options=options, owns_gateway=True)
        with running_app(app) as url:
            yield url


def not_a_gateway_bug(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 5xx is the gateway reporting a provider (502/503/504, typed problems); a 500 is a
    bug of ours."""
    if response.status_code == 500:
        raise AssertionError(f"500 from {case.method} {case.formatted_path}")
    return None


EXAMPLES = 10  # per operation: ~25 operations, a bounded run


def test_schemathesis_finds_no_failure(live_url: str) -> None:
    from hypothesis import given
    from schemathesis.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_gateway_bug,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    # The pass-through routes speak the providers' protocols (tested with their clients).
    schema = schema.exclude(path_regex=r"^/(spotify|musicbrainz|lastfm)/")
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(checks=checks, timeout=30)

        check()
        ran += 1
    assert ran >= 20


def test_live_service_answers(live_url: str) -> None:
    assert httpx.get(f"{live_url}/healthz", timeout=10).status_code == 200
