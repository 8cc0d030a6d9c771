"""ApiRequest and the shared error plumbing: immutable, secret-safe, tolerant of any body."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tunegate.exceptions import AuthenticationError, NotFound, RateLimited
from tunegate.providers import ApiRequest, lastfm, musicbrainz, spotify
from tunegate.providers._request import amended, clean_message, decode_body, retry_after_from

CANARY = "canary-secret-0123456789"


def make() -> ApiRequest:
    """A request carrying a secret in params, form data and headers."""
    return ApiRequest(
        provider="lastfm",
        method="POST",
        endpoint_template="/2.0/?method=x",
        path="/2.0/",
        params=(("method", "x"), ("api_key", CANARY)),
        data=(("token", CANARY),),
        headers=(("Authorization", CANARY),),
        secret_params=frozenset({"api_key", "token", "Authorization"}),
        cache_kind="lastfm:x",
        cache_parts=("a",),
    )


def test_repr_and_helpers_hide_secrets() -> None:
    """Neither repr nor the public/redacted parameter views show a secret."""
    req = make()
    assert CANARY not in repr(req)
    assert CANARY not in str(req.public_params())
    assert CANARY not in str(req.redacted_params())
    assert req.public_params() == (("method", "x"),)
    assert req.redacted_params() == (("method", "x"), ("api_key", "***"))
    # The real values are still there for the HTTP layer.
    assert ("api_key", CANARY) in req.params


def test_frozen_and_hashable() -> None:
    """Requests are immutable values."""
    req = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.path = "/other"  # type: ignore[misc]
    assert hash(req) == hash(make())
    assert req == make()


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/2.0/"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/2.0/"),
        ("https://proxy.example/lastfm/", "https://proxy.example/lastfm/2.0/"),
    ],
)
def test_url(base: str, url: str) -> None:
    """The path joins any base URL with exactly one slash."""
    assert make().url(base) == url


def test_decode_body_tolerates_anything() -> None:
    """JSON bytes decode; text, HTML, broken JSON and None come back without raising."""
    assert decode_body(b'{"a": 1}') == {"a": 1}
    assert decode_body(bytearray(b"[1]")) == [1]
    assert decode_body("<html>x</html>") == "<html>x</html>"
    assert decode_body(b"{broken") == "{broken"
    assert decode_body(b"\xff\xfe") == "\ufffd\ufffd"
    assert decode_body(None) is None
    assert decode_body({"already": "decoded"}) == {"already": "decoded"}


def test_clean_message_is_one_bounded_line() -> None:
    """Provider text is flattened and cut to a bounded length."""
    assert clean_message("a\n\n  b\t c") == "a b c"
    assert len(clean_message("x" * 1000)) == 200
    assert clean_message(None) == ""
    assert clean_message(42) == ""


def test_retry_after_forms() -> None:
    """Seconds always; an HTTP-date only with a wall clock; garbage is None."""
    assert retry_after_from({"Retry-After": "12"}, None) == 12.0
    assert retry_after_from({"retry-after": "-3"}, None) == 0.0
    assert retry_after_from({"Retry-After": "soon"}, None) is None
    assert retry_after_from({}, None) is None
    date = {"Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"}
    assert retry_after_from(date, None) is None
    assert retry_after_from(date, 784111767.0) == pytest.approx(10.0)


@dataclasses.dataclass(frozen=True)
class View:
    """A stand-in for the pipeline's ResponseView."""

    status: int
    endpoint: str
    headers: dict[str, str]
    body: bytes
    now_wall: float = 0.0


def test_hooks_classify_like_classify_response() -> None:
    """Each provider's hook reads the decoded body when given, the raw body otherwise."""
    six = b'{"error": 6, "message": "Track not found", "links": []}'
    err = lastfm.hook(View(200, "/2.0/?method=track.getInfo", {}, six), None)
    assert isinstance(err, NotFound)
    assert lastfm.hook(View(200, "/2.0/", {}, b""), {"toptags": {"tag": []}}) is None
    busy = b'{"error": "The MusicBrainz web server is currently busy."}'
    err = musicbrainz.hook(View(503, "/ws/2/isrc/{isrc}", {"Retry-After": "0"}, busy), None)
    assert isinstance(err, RateLimited)
    assert err.retry_after == 1.0
    assert spotify.hook(View(200, "/v1/search", {}, b"{}"), {}) is None
    token = spotify.hook(View(400, "/api/token", {}, b""), {"error": "invalid_client"})
    assert isinstance(token, AuthenticationError)


def test_hook_accepts_the_pipelines_response_view() -> None:
    """The pipeline's own ResponseView fits the hooks (skipped while that module is absent)."""
    classify = pytest.importorskip("tunegate._policy.classify")
    view = classify.ResponseView(
        provider="lastfm",
        endpoint="/2.0/?method=track.getTopTags",
        status=200,
        headers={"Content-Type": "application/json"},
        body=b'{"error": 29, "message": "Rate Limit Exceeded"}',
    )
    err = lastfm.hook(view, {"error": 29, "message": "Rate Limit Exceeded"})
    assert isinstance(err, RateLimited)
    assert err.code == 29


def request_of_every_field(secret_params: frozenset[str]) -> ApiRequest:
    """A request with every field set apart from its default, for the tests that check a
    positional rebuild against ``dataclasses.replace``."""
    return ApiRequest(
        provider="spotify",
        method="POST",
        endpoint_template="/v1/x/{id}",
        path="/v1/x/1",
        params=(("q", "a"),),
        cache_kind="spotify:x",
        cache_parts=("1",),
        secret_params=secret_params,
        data=(("d", "e"),),
        headers=(("H", "v"),),
        not_found_result="empty",
    )


def test_amended_is_replace_of_its_three_fields() -> None:
    """``amended`` builds the request positionally: every field must land where
    ``dataclasses.replace`` puts it."""
    request = request_of_every_field(frozenset({"q"}))
    changes: dict[str, Any] = {
        "cache_parts": ("@s", "1"),
        "headers": (("H", "v"), ("U", "w")),
        "secret_params": frozenset({"q", "U"}),
    }
    got, expected = amended(request, **changes), dataclasses.replace(request, **changes)
    for f in dataclasses.fields(ApiRequest):
        assert getattr(got, f.name) == getattr(expected, f.name), f.name
    assert got == expected
