"""What an HTTP outcome means, sans-IO: success, not found, rate limited, transient,
permanent or authentication, with the payload decoded or the typed error built.

The default reading goes by status and content type. A provider adds its own knowledge
through a *hook* (:data:`ProviderHook`) that sees the response and its decoded body first:
an upstream may put its errors inside HTTP 200 bodies (``{"error": 6, ...}``), or throttle
with a 503 (a quota signal, not an outage). A hook answers with an error from the tree, a
full :class:`Outcome`, or None for "the default reading is right".

The kind of a typed error follows the error tree and the one table of what an error means
(:func:`tunegate._policy.errors.meaning`), so the breaker, the metrics and the retry policy
never disagree about what is transient. Messages carry no body text that could hold a
secret; hooks should build theirs from fixed strings or cleaned provider messages.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tunegate._policy.errors import meaning
from tunegate._policy.headers import get_header, parse_retry_after
from tunegate.exceptions import (
    AuthenticationError,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)

__all__ = [
    "BAD_JSON",
    "WRONG_CONTENT_TYPE",
    "Expect",
    "Kind",
    "Outcome",
    "ProviderHook",
    "ResponseView",
    "classify_response",
    "kind_of",
    "outage_like",
]

Expect = Literal["json", "xml", "text", "bytes"]
#: ``code`` values on a :class:`MalformedResponse` built here.
BAD_JSON = "bad_json"
WRONG_CONTENT_TYPE = "content_type"

_JSON_TYPES = ("application/json", "text/json", "text/javascript")
_XML_TYPES = ("application/xml", "text/xml")


class Kind(enum.StrEnum):
    """The six outcomes. Values are the ``status`` label of ``api_calls_total``."""

    SUCCESS = "success"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    AUTHENTICATION = "authentication"


@dataclass(frozen=True, slots=True)
class ResponseView:
    """What classification reads: no I/O object, just values. ``now_wall`` (UNIX time)
    turns an HTTP-date ``Retry-After`` into seconds."""

    provider: str
    endpoint: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    expect: Expect = "json"
    now_wall: float = 0.0

    @property
    def content_type(self) -> str:
        value = get_header(self.headers, "Content-Type") or ""
        return value.split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Outcome:
    """``kind``; ``payload`` (the decoded body) for a success; ``error`` for every other
    kind; ``retry_after`` as the provider asked (seconds), when it did."""

    kind: Kind
    payload: Any = None
    error: ProviderError | None = None

    @property
    def retry_after(self) -> float | None:
        return None if self.error is None else self.error.retry_after

    @classmethod
    def success(cls, payload: Any) -> Outcome:
        return cls(Kind.SUCCESS, payload)

    @classmethod
    def failure(cls, error: ProviderError) -> Outcome:
        return cls(kind_of(error), None, error)


#: ``hook(view, decoded)``: ``decoded`` is the body as JSON when it parses (whatever the
#: status), else None. Return None to keep the default reading.
ProviderHook = Callable[[ResponseView, Any], "Outcome | ProviderError | None"]


def kind_of(error: BaseException) -> Kind:
    """The kind of a typed error (the inverse of the default status mapping)."""
    if isinstance(error, NotFound):
        return Kind.NOT_FOUND
    if isinstance(error, AuthenticationError):
        return Kind.AUTHENTICATION
    reason = meaning(error).reason
    if reason == "rate_limited" or isinstance(error, RateLimited):
        return Kind.RATE_LIMITED
    return Kind.PERMANENT if reason is None else Kind.TRANSIENT


def outage_like(error: BaseException) -> bool:
    """May a stale cache entry answer for ``error``? (``meaning(error).may_serve_stale``.)
    Yes for outage-like failures (transient or rate limited, an unreadable answer, an open
    breaker, no rate-limit token in time); no for "no such thing", refused credentials and a
    request the provider rejects."""
    return meaning(error).may_serve_stale


def _lenient_json(body: bytes) -> Any:
    head = body[:64].lstrip()
    if head[:1] not in (b"{", b"["):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _media_ok(content_type: str, expect: Expect) -> bool:
    if expect == "json":
        return content_type in _JSON_TYPES or content_type.endswith("+json")
    if expect == "xml":
        return content_type in _XML_TYPES or content_type.endswith("+xml")
    return True


def _success_payload(view: ResponseView) -> Any:
    """The decoded body of a 2xx answer, or a :class:`MalformedResponse` to raise."""
    if view.status == 204 or (not view.body and view.expect != "json"):
        return None if view.expect != "bytes" else b""
    if not _media_ok(view.content_type, view.expect):
        return _malformed(view, f"expected {view.expect}, got another type", WRONG_CONTENT_TYPE)
    if view.expect == "json":
        try:
            return orjson.loads(view.body)
        except orjson.JSONDecodeError:
            return _malformed(view, "body is not valid JSON", BAD_JSON)
    if view.expect == "bytes":
        return view.body
    try:
        return view.body.decode("utf-8")
    except UnicodeDecodeError:
        return _malformed(view, "body is not valid UTF-8", BAD_JSON)


def _malformed(view: ResponseView, message: str, code: str) -> MalformedResponse:
    return MalformedResponse(
        message, provider=view.provider, endpoint=view.endpoint, status=view.status, code=code
    )


def default_error(view: ResponseView) -> ProviderError:
    """The error for a non-2xx status: 404/410 not found, 401/403 authentication, 429 rate
    limited, 408/425/5xx (but 501, 505) unavailable, anything else permanent."""
    status = view.status
    kwargs: dict[str, Any] = {
        "provider": view.provider,
        "endpoint": view.endpoint,
        "status": status,
        "retry_after": parse_retry_after(get_header(view.headers, "Retry-After"), view.now_wall),
        "request_id": _request_id(view.headers),
    }
    if status in (404, 410):
        return NotFound("not found", **kwargs)
    if status in (401, 403):
        return AuthenticationError("credentials refused", **kwargs)
    if status == 429:
        return RateLimited("rate limited", **kwargs)
    if status in (408, 425) or (status >= 500 and status not in (501, 505)):
        return ProviderUnavailable("provider unavailable", **kwargs)
    if 300 <= status < 400:
        return ProviderError("unexpected redirect (not followed)", **kwargs)
    return ProviderError("request refused", **kwargs)


def _request_id(headers: Mapping[str, str]) -> str | None:
    for name in ("X-Request-Id", "X-Amzn-Trace-Id", "X-Cloud-Trace-Context"):
        value = get_header(headers, name)
        if value:
            return value[:100]
    return None


def classify_response(view: ResponseView, hook: ProviderHook | None = None) -> Outcome:
    """Read one HTTP answer: decode a 2xx body as ``view.expect`` says (wrong content type,
    invalid JSON -> :class:`MalformedResponse`), map other statuses to the error tree, and
    let ``hook`` override either reading."""
    ok = 200 <= view.status < 300
    payload: Any = _success_payload(view) if ok else None
    if hook is not None:
        decoded = payload if ok and view.expect == "json" else _lenient_json(view.body)
        if isinstance(decoded, MalformedResponse):
            decoded = None
        verdict = hook(view, decoded)
        if isinstance(verdict, Outcome):
            return verdict
        if isinstance(verdict, ProviderError):
            return Outcome.failure(verdict)
    if not ok:
        return Outcome.failure(default_error(view))
    if isinstance(payload, MalformedResponse):
        return Outcome.failure(payload)
    return Outcome.success(payload)
