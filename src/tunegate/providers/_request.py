"""What every provider module shares: the request description and the error plumbing.

An :class:`ApiRequest` says everything the pipeline needs to make one upstream call and to
cache its answer, with no I/O and no secrets where they could leak: the templated endpoint
is for logs and metrics, ``cache_kind``/``cache_parts`` feed the cache-key builder, and
``secret_params`` names the parameters the pipeline must keep out of keys, logs and errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

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
    "ApiRequest",
    "Classifier",
    "Hook",
    "Pairs",
    "Provider",
    "ResponseLike",
    "amended",
    "hook_for",
]

Provider = Literal["spotify", "musicbrainz", "lastfm"]
Pairs = tuple[tuple[str, str], ...]
"""Ordered ``(name, value)`` pairs: immutable, and accepted as-is by httpx and aiohttp."""

REDACTED = "***"


@dataclass(frozen=True, slots=True, repr=False)
class ApiRequest:
    """One upstream call, described without doing it.

    Attributes:
        provider: ``"spotify"``, ``"musicbrainz"`` or ``"lastfm"``.
        method: the HTTP method, ``"GET"`` or ``"POST"``.
        endpoint_template: the path with its variables left as placeholders
            (``"/v1/tracks/{id}"``, ``"/2.0/?method=track.getTopTags"``): the only form of the
            address that may appear in logs, metrics and error messages.
        path: the real path from the origin (``"/v1/tracks/3n3Ppam7vgaVa1iaRUc9Lp"``);
            the full URL is ``base_url.rstrip("/") + path`` (see :meth:`url`).
        params: query parameters, in a stable order.
        cache_kind: the key prefix (``"spotify:track"``), or None for calls that are not
            cached as a unit (the token request; the batch track request, whose answer is
            cached per id under ``spotify:track``).
        cache_parts: the variable parts of the key, validated and stripped but not
            normalised (the key builder normalises). Never contains a secret.
        secret_params: names in ``params``, ``data`` or ``headers`` whose values are
            secrets: kept out of cache keys, logs, metrics and messages.
        data: a form body (``application/x-www-form-urlencoded``) for POST requests.
        headers: extra request headers; the client adds its own (User-Agent, bearer token).
        not_found_result: what the client returns when the provider says "no such thing":
            ``"none"`` (a lookup) or ``"empty"`` (a list, such as tags). The pipeline may
            cache it as a negative entry either way.
    """

    provider: Provider
    method: Literal["GET", "POST"]
    endpoint_template: str
    path: str
    params: Pairs = ()
    cache_kind: str | None = None
    cache_parts: tuple[str, ...] = ()
    secret_params: frozenset[str] = frozenset()
    data: Pairs = ()
    headers: Pairs = ()
    not_found_result: Literal["none", "empty"] = "none"

    def url(self, base_url: str) -> str:
        """The full URL against ``base_url`` (an origin such as ``http://127.0.0.1:8080``,
        optionally with a path prefix for a mirror behind a reverse proxy)."""
        return base_url.rstrip("/") + self.path

    def public_params(self) -> Pairs:
        """``params`` without the secret ones: safe for cache keys and debug output."""
        return tuple((k, v) for k, v in self.params if k not in self.secret_params)

    def redacted_params(self) -> Pairs:
        """``params`` with secret values replaced by ``***``: safe to log."""
        return tuple((k, REDACTED if k in self.secret_params else v) for k, v in self.params)

    def __repr__(self) -> str:
        # Written by hand so that printing or logging a request can never show a secret.
        headers = tuple((k, REDACTED if k in self.secret_params else v) for k, v in self.headers)
        data = tuple((k, REDACTED if k in self.secret_params else v) for k, v in self.data)
        return (
            f"ApiRequest(provider={self.provider!r}, method={self.method!r}, "
            f"endpoint_template={self.endpoint_template!r}, path={self.path!r}, "
            f"params={self.redacted_params()!r}, cache_kind={self.cache_kind!r}, "
            f"cache_parts={self.cache_parts!r}, data={data!r}, headers={headers!r})"
        )


def amended(
    r: ApiRequest,
    *,
    cache_parts: tuple[str, ...],
    headers: Pairs,
    secret_params: frozenset[str],
) -> ApiRequest:
    """``dataclasses.replace(r, cache_parts=..., headers=..., secret_params=...)`` at half
    its cost: built positionally (a miss builds one or two; ``test_request`` checks every
    field against ``replace``)."""
    return ApiRequest(
        r.provider,
        r.method,
        r.endpoint_template,
        r.path,
        r.params,
        r.cache_kind,
        cache_parts,
        secret_params,
        r.data,
        headers,
        r.not_found_result,
    )


class ResponseLike(Protocol):
    """What a provider ``hook`` reads of an answer (``tunegate._policy.classify.ResponseView``
    is one): plain values, no I/O object."""

    @property
    def status(self) -> int: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def now_wall(self) -> float: ...


class Classifier(Protocol):
    """A provider's ``classify_response``: None for a usable answer, else its error."""

    def __call__(
        self,
        status: int,
        body: object,
        headers: Mapping[str, str],
        *,
        endpoint: str,
        now_wall: float | None,
    ) -> ProviderError | None: ...


Hook = Callable[[ResponseLike, object], "ProviderError | None"]


def hook_for(classify_response: Classifier) -> Hook:
    """``classify_response`` in the pipeline's hook form (``ProviderHook``): ``decoded`` is
    the body as JSON when it parsed, else None (then the raw body is read)."""

    def hook(view: ResponseLike, decoded: object) -> ProviderError | None:
        return classify_response(
            view.status,
            view.body if decoded is None else decoded,
            view.headers,
            endpoint=view.endpoint,
            now_wall=view.now_wall or None,
        )

    return hook


# --- error plumbing shared by the three classifiers -----------------------------------------

_MAX_MESSAGE = 200
_WS = re.compile(r"\s+")


def clean_message(text: object, redact: re.Pattern[str] | None = None) -> str:
    """A provider's error text made safe for an exception message: one line, bounded, and
    with anything that looks like a credential replaced (``redact``)."""
    if not isinstance(text, str):
        return ""
    text = _WS.sub(" ", text).strip()
    if redact is not None:
        text = redact.sub(REDACTED, text)
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    return text


def decode_body(body: object) -> Any:
    """An error body as JSON when it is JSON, else its text (``str``), else None.

    Error answers are often HTML or plain text (a proxy's 502, MusicBrainz's 503), so this
    never raises: classification must work on whatever came back.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        body = bytes(body).decode("utf-8", errors="replace")
    if isinstance(body, str):
        stripped = body.strip()
        if stripped[:1] in ("{", "["):
            try:
                return json.loads(stripped)
            except ValueError:
                return body
        return body
    return body


def retry_after_from(headers: Mapping[str, str], now_wall: float | None) -> float | None:
    """``Retry-After`` in seconds; an HTTP-date form needs ``now_wall`` (UNIX time)."""
    value = get_header(headers, "Retry-After")
    if value is None:
        return None
    if now_wall is None:
        try:
            return max(0.0, float(value.strip()))
        except ValueError:
            return None
    return parse_retry_after(value, now_wall)


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The provider's request id header, where it sends one."""
    for name in ("X-Request-Id", "X-Request-ID", "X-Amzn-Trace-Id"):
        value = get_header(headers, name)
        if value:
            return value[:100]
    return None


def error_by_status(
    provider: Provider,
    endpoint: str,
    status: int,
    message: str,
    *,
    code: int | str | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> ProviderError:
    """The default mapping of an HTTP status onto the error tree (providers refine it)."""
    kwargs: dict[str, Any] = {
        "provider": provider,
        "endpoint": endpoint,
        "status": status,
        "code": code,
        "retry_after": retry_after,
        "request_id": request_id,
    }
    if status == 404:
        return NotFound(message or "not found", **kwargs)
    if status == 429:
        return RateLimited(message or "rate limited", **kwargs)
    if status == 401:
        return AuthenticationError(message or "unauthorized", **kwargs)
    if status >= 500 or status in (408, 425):
        return ProviderUnavailable(message or "provider unavailable", **kwargs)
    return ProviderError(message or f"HTTP {status}", **kwargs)


def malformed(provider: Provider, endpoint: str, what: str) -> MalformedResponse:
    """A body that parsed as JSON but does not have the shape the provider documents."""
    return MalformedResponse(what, provider=provider, endpoint=endpoint)
