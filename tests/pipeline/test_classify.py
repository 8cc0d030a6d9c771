"""Classification of HTTP outcomes, sans-IO: statuses, bodies, content types, hooks."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tunegate._policy.classify import (
    BAD_JSON,
    WRONG_CONTENT_TYPE,
    Expect,
    Kind,
    Outcome,
    ResponseView,
    classify_response,
    kind_of,
)
from tunegate.exceptions import (
    AuthenticationError,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)

JSON = {"Content-Type": "application/json; charset=utf-8"}


def view(
    status: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
    expect: Expect = "json",
    provider: str = "spotify",
) -> ResponseView:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ResponseView(
        provider,
        "/v1/tracks/{id}",
        status,
        JSON if headers is None else headers,
        raw,
        expect,
        1_700_000_000.0,
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, Kind.SUCCESS),
        (404, Kind.NOT_FOUND),
        (410, Kind.NOT_FOUND),
        (401, Kind.AUTHENTICATION),
        (403, Kind.AUTHENTICATION),
        (429, Kind.RATE_LIMITED),
        (500, Kind.TRANSIENT),
        (502, Kind.TRANSIENT),
        (503, Kind.TRANSIENT),
        (504, Kind.TRANSIENT),
        (400, Kind.PERMANENT),
        (422, Kind.PERMANENT),
        (501, Kind.PERMANENT),
        (301, Kind.PERMANENT),
    ],
)
def test_statuses(status: int, kind: Kind) -> None:
    """Each status reads as its kind; every non-success carries a typed error."""
    outcome = classify_response(view(status, {"error": {"status": status}}))
    assert outcome.kind is kind
    assert (outcome.error is None) == (kind is Kind.SUCCESS)
    if outcome.error is not None:
        assert outcome.error.status == status
        assert kind_of(outcome.error) is kind


def test_retry_after_seconds_and_http_date() -> None:
    """Retry-After in seconds or as an HTTP-date lands on the error."""
    seconds = classify_response(view(429, {}, {**JSON, "Retry-After": "7"}))
    assert seconds.retry_after == 7
    date = classify_response(
        view(503, {}, {**JSON, "Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"})
    )
    assert date.retry_after == pytest.approx(20.0)


def test_success_payloads_by_expectation() -> None:
    """JSON decodes; XML and text come back as str; bytes as bytes; 204 as None."""
    assert classify_response(view(200, {"a": [1]})).payload == {"a": [1]}
    xml = view(200, b"<lfm/>", {"Content-Type": "text/xml"}, "xml")
    assert classify_response(xml).payload == "<lfm/>"
    raw = view(200, b"\x00\x01", {"Content-Type": "application/octet-stream"}, "bytes")
    assert classify_response(raw).payload == b"\x00\x01"
    assert classify_response(view(204, b"")).payload is None


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        (b'{"a": ', JSON, BAD_JSON),
        (b"<html>oops</html>", {"Content-Type": "text/html"}, WRONG_CONTENT_TYPE),
        (b"{}", {}, WRONG_CONTENT_TYPE),
    ],
)
def test_unreadable_success_bodies(body: bytes, headers: dict[str, str], code: str) -> None:
    """A 200 we cannot read is a permanent MalformedResponse with a code saying why."""
    outcome = classify_response(view(200, body, headers))
    assert isinstance(outcome.error, MalformedResponse)
    assert outcome.error.code == code
    assert outcome.kind is Kind.PERMANENT


def test_vendor_json_content_types_are_json() -> None:
    """``application/vnd.x+json`` is JSON."""
    headers = {"Content-Type": "application/vnd.api+json"}
    assert classify_response(view(200, {"a": 1}, headers)).payload == {"a": 1}


def test_error_bodies_never_need_to_parse() -> None:
    """An HTML 502 from a proxy is still a transient error, not a crash."""
    outcome = classify_response(
        view(502, b"<html>Bad gateway</html>", {"Content-Type": "text/html"})
    )
    assert outcome.kind is Kind.TRANSIENT


# -- provider hooks ------------------------------------------------------------------------


def lastfm_hook(v: ResponseView, decoded: Any) -> ProviderError | None:
    """Last.fm puts errors inside 200 bodies: {"error": N, "message": ...}."""
    if not isinstance(decoded, dict) or not isinstance(decoded.get("error"), int):
        return None
    code = decoded["error"]
    where = {"provider": v.provider, "endpoint": v.endpoint, "status": v.status, "code": code}
    if code == 6:
        return NotFound("not found", **where)
    if code in (10, 26):
        return AuthenticationError("API key refused", **where)
    if code == 29:
        return RateLimited("rate limit exceeded", **where)
    if code in (8, 11, 16):  # the provider maps its codes; the generic policy reads none
        return ProviderUnavailable("try again", **where)
    return ProviderError("Last.fm error", **where)


def musicbrainz_hook(v: ResponseView, decoded: Any) -> Outcome | None:
    """MusicBrainz answers 503 when a client goes over 1 request/s: a quota, not an outage."""
    if v.status == 503 and b"exceeding the allowable rate limit" in v.body:
        return Outcome.failure(
            RateLimited(
                "throttled", provider=v.provider, endpoint=v.endpoint, status=503, retry_after=1.0
            )
        )
    return None


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (6, Kind.NOT_FOUND),
        (10, Kind.AUTHENTICATION),
        (29, Kind.RATE_LIMITED),
        (16, Kind.TRANSIENT),
        (3, Kind.PERMANENT),
    ],
)
def test_lastfm_errors_inside_200_bodies(code: int, kind: Kind) -> None:
    """A hook reads Last.fm's error codes out of HTTP 200 answers."""
    body = {"error": code, "message": "x", "links": []}
    outcome = classify_response(view(200, body, provider="lastfm"), lastfm_hook)
    assert outcome.kind is kind
    assert outcome.error is not None
    assert outcome.error.code == code


def test_hook_returning_none_keeps_the_default() -> None:
    """A normal Last.fm body passes through the hook untouched."""
    outcome = classify_response(view(200, {"toptags": {"tag": []}}), lastfm_hook)
    assert outcome.payload == {"toptags": {"tag": []}}


def test_musicbrainz_throttling_503_is_a_rate_limit() -> None:
    """A hook turns MusicBrainz's throttling 503 into RateLimited; a busy 503 stays transient."""
    throttled = view(
        503,
        b"Your requests are exceeding the allowable rate limit.",
        {"Content-Type": "text/plain"},
        provider="musicbrainz",
    )
    outcome = classify_response(throttled, musicbrainz_hook)
    assert outcome.kind is Kind.RATE_LIMITED
    assert outcome.retry_after == 1.0
    busy = view(503, b"The server is currently busy.", {"Content-Type": "text/plain"})
    assert classify_response(busy, musicbrainz_hook).kind is Kind.TRANSIENT


def test_hook_sees_undecodable_bodies_as_none() -> None:
    """The hook gets None for a body that is not JSON, and may still decide."""
    seen: list[Any] = []

    def hook(v: ResponseView, decoded: Any) -> None:
        seen.append(decoded)

    classify_response(view(200, b"not json"), hook)
    assert seen == [None]
