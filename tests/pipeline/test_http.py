"""The HTTP boundary: every malformed answer becomes its typed error within the deadline;
pooling, gzip, the User-Agent and the mapping of transport failures."""

from __future__ import annotations

import asyncio
import socket
import time
import traceback
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
import yarl

from tests.pipeline._server import RawServer, Reply, ScriptServer
from tests.pipeline.conftest import MakePipeline, catch, invoke, item
from tunegate._http import (
    BAD_ENCODING,
    TOO_LARGE,
    HttpConfig,
    HttpPool,
    HttpRequest,
    _raise_mapped,
)
from tunegate._policy.classify import BAD_JSON, WRONG_CONTENT_TYPE
from tunegate._policy.retry import TRUNCATED, RetryPolicy
from tunegate._redact import redact, strip_queries
from tunegate.exceptions import (
    ConfigurationError,
    MalformedResponse,
    ProviderError,
    ProviderUnavailable,
)

DEADLINE = 1.5
BIG = {"blob": "x" * 5000}


@pytest.mark.parametrize(
    ("reply", "error", "code", "attempts"),
    [
        (Reply(body=b'{"tracks": [1, 2'), MalformedResponse, BAD_JSON, 1),
        (
            Reply(body=b"<html>busy</html>", content_type="text/html"),
            MalformedResponse,
            WRONG_CONTENT_TYPE,
            1,
        ),
        (Reply(json=BIG), MalformedResponse, TOO_LARGE, 1),
        (Reply(json=BIG, mode="stream"), MalformedResponse, TOO_LARGE, 1),
        (Reply(json={"v": 1}, mode="truncated"), MalformedResponse, TRUNCATED, 3),
        (Reply(json={"v": 1}, mode="badgzip"), MalformedResponse, BAD_ENCODING, 1),
        (Reply(mode="hang"), ProviderUnavailable, None, None),
        (Reply(json=BIG, mode="drip"), ProviderUnavailable, None, None),
    ],
    ids=[
        "bad-json",
        "content-type",
        "too-large",
        "too-large-chunked",
        "truncated",
        "bad-gzip",
        "hang",
        "drip",
    ],
)
def test_malformed_answers_give_typed_errors_within_the_deadline(
    server: ScriptServer,
    make: MakePipeline,
    driver: str,
    reply: Reply,
    error: type[Exception],
    code: str | None,
    attempts: int | None,
) -> None:
    """Bad JSON, wrong content type, over-large, truncated, undecodable gzip, hanging and
    dripping bodies: the typed error, raised from the transport error where there is one,
    in time; only the truncated body is retried."""
    config = HttpConfig(
        connect_timeout=0.3, read_timeout=0.3, total_timeout=0.4, max_body_bytes=4096
    )
    pipeline = make(
        http=HttpPool("test", config),
        retry=RetryPolicy(max_attempts=3, base=0.01, cap=0.02, deadline=DEADLINE),
    )
    server.script("/items/1", reply)
    started = time.monotonic()
    err = catch(pipeline, item(1), driver)
    elapsed = time.monotonic() - started
    assert type(err) is error
    assert isinstance(err, ProviderError)
    assert elapsed < DEADLINE + 1.0  # generous: this machine is noisy
    if code is not None:
        assert err.code == code
    if attempts is not None:
        assert err.attempts == attempts
    if error is ProviderUnavailable:  # timeouts are raised from the library's TimeoutError
        assert isinstance(err.__cause__, TimeoutError)
    assert err.provider == "test"
    assert err.endpoint == "/items/{id}"


def test_connection_refused_is_provider_unavailable(make: MakePipeline, driver: str) -> None:
    """Nobody listening: ProviderUnavailable raised from aiohttp's connection error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from tunegate.pipeline import Pipeline

    pipeline = Pipeline(
        "test",
        f"http://127.0.0.1:{port}",
        http=HttpPool("test", HttpConfig(connect_timeout=0.3)),
        retry=RetryPolicy(max_attempts=2, base=0.01, deadline=2.0),
        metrics=False,
    )
    try:
        err = catch(pipeline, item(1), driver)
    finally:
        pipeline.close()
    assert isinstance(err, ProviderUnavailable)
    assert isinstance(err.__cause__, aiohttp.ClientConnectionError)
    assert err.attempts == 2


def test_gzip_user_agent_and_keep_alive(server: ScriptServer, make: MakePipeline) -> None:
    """Gzip bodies are decompressed; the User-Agent names the app and tunegate; sequential
    calls reuse one pooled connection."""
    pipeline = make()
    server.script("/items/1", Reply(json={"v": "zipped"}, mode="gzip"))
    assert pipeline.call(item(1)) == {"v": "zipped"}
    for i in range(2, 6):
        pipeline.call(item(i))
    seen = server.requests()
    ua = seen[0].headers["User-Agent"]
    assert ua.startswith("tests/1.0 tunegate/")
    assert "gzip" in seen[0].headers["Accept-Encoding"]
    assert len({s.peer_port for s in seen}) == 1


async def test_async_calls_reuse_one_connection(server: ScriptServer, make: MakePipeline) -> None:
    """The asyncio session pools too."""
    async with make() as pipeline:
        for i in range(5):
            await pipeline.acall(item(i))
    assert len({s.peer_port for s in server.requests()}) == 1


def test_query_params_and_form_data_are_sent(server: ScriptServer, make: MakePipeline) -> None:
    """Params go in the query string, data as a form body, headers as given."""
    pipeline = make()
    req = item(
        1, params=(("method", "track.getTopTags"), ("format", "json")), headers=(("X-Extra", "1"),)
    )
    pipeline.call(req)
    seen = server.requests()[0]
    assert seen.query == {"method": "track.getTopTags", "format": "json"}
    assert seen.headers["X-Extra"] == "1"


def test_redirects_are_not_followed(server: ScriptServer, make: MakePipeline) -> None:
    """A 3xx is a permanent error: following it could carry a secret to another host."""
    pipeline = make()
    server.script("/items/1", Reply(302, headers={"Location": "http://127.0.0.2/steal"}))
    err = catch(pipeline, item(1), "sync")
    assert isinstance(err, ProviderError)
    assert err.status == 302
    assert server.count() == 1


def test_foreign_error_text_with_a_secret_is_redacted() -> None:
    """A transport error whose text holds a secret is replaced before it can be printed."""
    canary = "CANARY-5f1e2d"
    request = HttpRequest("GET", "http://x/2.0/", "lastfm", "/2.0/", secrets=(canary,))

    def fail() -> None:
        try:
            raise aiohttp.ClientConnectionError(f"failed http://x/2.0/?api_key={canary}")
        except aiohttp.ClientConnectionError as exc:
            _raise_mapped(request, exc)

    with pytest.raises(ProviderUnavailable) as info:
        fail()
    text = "".join(traceback.format_exception(info.value))
    assert "ClientConnectionError" in text
    assert canary not in text
    assert canary not in repr(info.value.__cause__)


def encoded_forms(secret: str) -> set[str]:
    """Every way the test can think of that a secret shows up in foreign text."""
    query = yarl.URL("http://x/").with_query({"k": secret}).raw_query_string[2:]
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), query}


@pytest.mark.parametrize("secret", ["abc+def/ghi==", "tok en&x", "c4n4ry0123456789abcdef"])
def test_percent_encoded_secrets_in_foreign_errors_are_redacted(secret: str, driver: str) -> None:
    """aiohttp puts the request URL, query percent-encoded, in the text of some errors (a bad
    status line here): no form of the secret survives into the traceback."""
    raw = RawServer(b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}")
    pool = HttpPool("test", HttpConfig(total_timeout=2.0))
    request = HttpRequest(
        "GET", raw.url + "/x", "test", "/x", params=(("api_key", secret),), secrets=(secret,)
    )

    async def go() -> None:
        try:
            await pool.asend(request)
        finally:
            await pool.aclose()

    try:
        with pytest.raises(MalformedResponse) as info:
            pool.send(request) if driver == "sync" else asyncio.run(go())
    finally:
        pool.close()
        raw.stop()
    text = "".join(traceback.format_exception(info.value))
    assert "ClientResponseError" in text  # the cause still says what went wrong
    assert "/x?***" in text  # the query string is gone, whatever it held
    assert [form for form in encoded_forms(secret) if form in text] == []


def test_redact_strips_queries_and_encoded_forms() -> None:
    """URL query strings go whatever they hold; each secret goes in every encoding."""
    text = "failed http://h:1/p?api_key=abc%2Bdef/ghi%3D%3D&x=1 body 'tok+en%26x' tok en&x"
    assert strip_queries(text).startswith("failed http://h:1/p?*** body")
    assert redact(text, ("abc+def/ghi==", "tok en&x")) == "failed http://h:1/p?*** body '***' ***"


def test_bad_base_url_is_a_configuration_error(driver: str) -> None:
    """A base URL the library cannot use is our caller's configuration error."""
    pool = HttpPool("test", HttpConfig())
    request = HttpRequest("GET", "http://[::1/x", "test", "/x")

    async def go() -> None:
        try:
            await pool.asend(request)
        finally:
            await pool.aclose()

    with pytest.raises(ConfigurationError):
        pool.send(request) if driver == "sync" else asyncio.run(go())
    pool.close()


def test_invoke_helper_uses_a_fresh_session_per_loop(
    server: ScriptServer, make: MakePipeline
) -> None:
    """Sessions are per event loop; a closed one is reopened on the next call."""
    pipeline = make()
    assert invoke(pipeline, item(1), "async") == {"ok": True}
    assert invoke(pipeline, item(2), "async") == {"ok": True}
    assert invoke(pipeline, item(3), "sync") == {"ok": True}
