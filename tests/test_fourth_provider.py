"""A fourth provider from the public building blocks (docs/providers.md, "Adding a
provider"): a small Discogs-style client on Pipeline, CacheManager, RateLimiter and
CircuitBreaker, against a loopback HTTP server that counts what reaches it."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypedDict

import pytest

from tunegate import (
    CacheManager,
    CircuitBreaker,
    CircuitBreakerOpenError,
    InvalidInput,
    MalformedResponse,
    NotFound,
    Pipeline,
    ProviderError,
    RateLimited,
    RateLimiter,
    RetryPolicy,
)
from tunegate.observability import track_sources
from tunegate.providers import ApiRequest

TOKEN = "discogs-CANARY-token-5b1f"  # must never show outside the Authorization header

# -- the provider: what docs/providers.md shows ----------------------------------------


class Release(TypedDict):
    id: int
    title: str
    year: int | None


def release_request(release_id: int, token: str) -> ApiRequest:
    """Validated before any I/O: bad input is a typed error, not a request."""
    if not isinstance(release_id, int) or isinstance(release_id, bool) or release_id < 1:
        raise InvalidInput("release_id", "must be a positive integer")
    return ApiRequest(
        provider="discogs",  # type: ignore[arg-type]  # ApiRequest.provider lists the built-in three; Pipeline takes any name
        method="GET",
        endpoint_template="/releases/{id}",  # logs and metrics see this, never the path
        path=f"/releases/{release_id}",
        cache_kind="discogs:release",
        cache_parts=(str(release_id),),
        headers=(("Authorization", f"Discogs token={token}"),),
        secret_params=frozenset({"Authorization"}),
    )


def parse_release(body: Any) -> Release:
    if not isinstance(body, dict) or not isinstance(body.get("id"), int):
        raise MalformedResponse(
            "discogs: no release id in the answer", provider="discogs", endpoint="/releases/{id}"
        )
    year = body.get("year")
    return {"id": body["id"], "title": str(body.get("title", "")), "year": year or None}


def discogs_hook(view: Any, decoded: Any) -> ProviderError | None:
    """Discogs-specific reading: a 200 whose body says the quota is spent is a 429."""
    if view.status == 200 and isinstance(decoded, dict) and decoded.get("message") == "quota":
        return RateLimited(
            "discogs: quota spent", provider="discogs", endpoint=view.endpoint, retry_after=1.0
        )
    return None  # every other answer: the default reading (404 NotFound, 5xx transient...)


class DiscogsClient:
    PROVIDER = "discogs"

    def __init__(
        self,
        token: str,
        *,
        base_url: str = "https://api.discogs.com",
        cache: CacheManager | None = None,
        rate_limiter: RateLimiter | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._token = token
        limiter = rate_limiter or RateLimiter()
        limiter.ensure_provider(self.PROVIDER, rate=1.0, capacity=25)  # 60/min, bursts of 25
        self.pipeline = Pipeline(
            self.PROVIDER,
            base_url,
            cache=cache or CacheManager(),
            rate_limiter=limiter,
            circuit_breaker=circuit_breaker
            or CircuitBreaker(self.PROVIDER, failure_threshold=3, timeout=30.0),
            retry=retry,
            classifier=discogs_hook,
        )

    def get_release(self, release_id: int, *, use_cache: bool = True) -> Release:
        request = release_request(release_id, self._token)
        result: Release = self.pipeline.call(request, parse=parse_release, use_cache=use_cache)
        return result

    async def aget_release(self, release_id: int) -> Release:
        request = release_request(release_id, self._token)
        result: Release = await self.pipeline.acall(request, parse=parse_release)
        return result

    def close(self) -> None:
        self.pipeline.close()


# -- a loopback Discogs ------------------------------------------------------------------


class FakeDiscogs:
    """Releases 1..9 exist; ``mode`` "ok", "down" (503) or "quota" (a 200 saying so)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hits: list[str] = []
        self.auth: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(self.path)
                owner.auth.append(self.headers.get("Authorization"))
                if owner.mode == "down":
                    self._send(503, {"message": "down"})
                elif owner.mode == "quota":
                    self._send(200, {"message": "quota"})
                elif owner.mode == "garbage":
                    self._send(200, {"releases": []})
                elif self.path.startswith("/releases/"):
                    rid = int(self.path.rsplit("/", 1)[1])
                    if rid <= 9:
                        self._send(200, {"id": rid, "title": f"Release {rid}", "year": 1990 + rid})
                    else:
                        self._send(404, {"message": "Release not found."})
                else:
                    self._send(404, {"message": "no such path"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def discogs() -> Iterator[FakeDiscogs]:
    server = FakeDiscogs()
    yield server
    server.close()


def client_for(server: FakeDiscogs, **options: Any) -> DiscogsClient:
    return DiscogsClient(TOKEN, base_url=server.url, **options)


# -- what the building blocks give it ----------------------------------------------------


def test_answers_are_parsed_cached_and_their_source_tracked(discogs: FakeDiscogs) -> None:
    client = client_for(discogs)
    try:
        with track_sources() as sources:
            assert client.get_release(3) == {"id": 3, "title": "Release 3", "year": 1993}
        assert sources.by_provider == {"discogs": "api"}
        with track_sources() as sources:
            assert client.get_release(3)["title"] == "Release 3"
        assert sources.by_provider == {"discogs": "cache"}
        assert discogs.hits == ["/releases/3"]
        assert discogs.auth == [f"Discogs token={TOKEN}"]
        stats = client.pipeline.get_stats()
        assert (stats["api_calls"], stats["cache_hits"]) == (1, 1)
    finally:
        client.close()


def test_not_found_is_cached_as_a_negative_entry(discogs: FakeDiscogs) -> None:
    client = client_for(discogs)
    try:
        for _ in range(2):
            with pytest.raises(NotFound):
                client.get_release(42)
        assert discogs.hits == ["/releases/42"]
    finally:
        client.close()


def test_bad_input_is_refused_before_any_request(discogs: FakeDiscogs) -> None:
    client = client_for(discogs)
    try:
        for bad in (0, -1, True):
            with pytest.raises(InvalidInput, match="release_id"):
                client.get_release(bad)
        assert discogs.hits == []
    finally:
        client.close()


def test_an_outage_opens_its_breaker_and_then_costs_no_request(discogs: FakeDiscogs) -> None:
    breaker = CircuitBreaker("discogs", failure_threshold=3, timeout=30.0)
    client = client_for(discogs, circuit_breaker=breaker, retry=RetryPolicy(max_attempts=1))
    discogs.mode = "down"
    try:
        for rid in (1, 2, 3):
            with pytest.raises(ProviderError):
                client.get_release(rid, use_cache=False)
        assert breaker.state.value == "open"
        seen = len(discogs.hits)
        with pytest.raises(CircuitBreakerOpenError):
            client.get_release(4)
        assert len(discogs.hits) == seen == 3
    finally:
        client.close()


def test_the_hook_reads_a_quota_body_and_the_limiter_has_its_bucket(
    discogs: FakeDiscogs,
) -> None:
    limiter = RateLimiter()
    client = client_for(discogs, rate_limiter=limiter, retry=RetryPolicy(max_attempts=1))
    discogs.mode = "quota"
    try:
        with pytest.raises(RateLimited) as info:
            client.get_release(5)
        assert info.value.retry_after == 1.0
        assert "discogs" in limiter.buckets
        assert limiter.buckets["discogs"].capacity == 25
        discogs.mode = "garbage"  # the parser's refusal is a typed error too
        with pytest.raises(MalformedResponse, match="no release id"):
            client.get_release(6)
    finally:
        client.close()


def test_the_async_driver_takes_the_same_path(discogs: FakeDiscogs) -> None:
    client = client_for(discogs)

    async def both() -> list[Release]:
        try:
            return list(await asyncio.gather(client.aget_release(7), client.aget_release(7)))
        finally:
            await client.pipeline.aclose()

    first, second = asyncio.run(both())
    assert first == second == {"id": 7, "title": "Release 7", "year": 1997}
    assert discogs.hits == ["/releases/7"]  # two callers, one request (single-flight)


def test_the_token_stays_out_of_logs_keys_and_errors(
    discogs: FakeDiscogs, caplog: pytest.LogCaptureFixture
) -> None:
    cache = CacheManager()
    client = client_for(discogs, cache=cache, retry=RetryPolicy(max_attempts=1))
    caplog.set_level(logging.DEBUG, logger="tunegate")
    try:
        client.get_release(1)
        with pytest.raises(NotFound) as missing:
            client.get_release(10)
        discogs.mode = "down"
        with pytest.raises(ProviderError) as down:
            client.get_release(2)
        key = client.pipeline.key(release_request(1, TOKEN))
        assert key is not None
        assert TOKEN not in key
        assert cache.get(key) is not None
        texts = [caplog.text, str(missing.value), str(down.value), repr(release_request(1, TOKEN))]
        for text in texts:
            assert TOKEN not in text
    finally:
        client.close()
