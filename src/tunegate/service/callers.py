"""Callers' API keys: which application a request comes from, so the limiter can give
each one a fair share of a provider's quota (:func:`tunegate.caller`: contending callers
are granted round-robin by application instead of in arrival order).

Keys come from the configuration (:mod:`tunegate.config`: ``TUNEGATE_API_KEYS`` or the
``[api_keys]`` table of the TOML file ``tunegate serve`` reads) and are optional. None
configured: the service is open and every request queues in arrival order, as before.
Keys configured: every caller-facing request (``/v1``, the pass-through) must carry a
known key, else 401; operations (``/healthz``, ``/readyz``, ``/metrics``, the status
page, the OpenAPI document) stay open for probes and scrapers, and admin calls take the
admin token. A key is carried as ``X-API-Key: KEY`` or
``Authorization: Bearer KEY``, or in the provider's own credential slot on the
pass-through (Spotify's client secret at ``/spotify/api/token``, Last.fm's ``api_key``).

Keys are compared in constant time (every configured key is compared, so the time does
not say which one matched) and never logged, echoed or used as a label: only the
application's name goes further."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from tunegate.config import caller_keys, parse_caller_keys
from tunegate.ratelimit import caller
from tunegate.service.errors import UNAUTHORIZED, problem

__all__ = ["CallerKeys", "guarded", "key_in", "running_as"]

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class CallerKeys:
    """The configured keys, each naming its application."""

    _keys: tuple[tuple[bytes, str], ...] = ()

    @classmethod
    def of(cls, apps: Mapping[str, str]) -> CallerKeys:
        """From ``application name -> key``, checked by :func:`tunegate.config.caller_keys`
        (ConfigurationError naming the entry by its position, never a name or a key)."""
        return cls(tuple((_digest(key), app) for app, key in caller_keys(apps).items()))

    @classmethod
    def parse(cls, text: str) -> CallerKeys:
        """``TUNEGATE_API_KEYS``' form, ``app=KEY,app2=KEY2``
        (:func:`tunegate.config.parse_caller_keys`)."""
        return cls.of(parse_caller_keys(text))

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def apps(self) -> frozenset[str]:
        return frozenset(app for _, app in self._keys)

    def app_of(self, given: str | None) -> str | None:
        """The application whose key ``given`` is; None when it is no configured key."""
        if not given:
            return None
        raw = _digest(given.strip())
        found = None
        for key, app in self._keys:  # no early exit: the time says nothing of the match
            if hmac.compare_digest(raw, key):  # equal lengths: the time says nothing of it
                found = app
        return found

    def __repr__(self) -> str:  # the keys never appear in a repr, a log or a traceback
        return f"CallerKeys({len(self._keys)} keys)"


def _digest(key: str) -> bytes:
    # Compared as fixed-length digests, so a key's length leaks through no timing, and the
    # raw keys are not kept in memory.
    return hashlib.sha256(key.encode()).digest()


def key_in(headers: Mapping[str, str]) -> str | None:
    """The key a request carries in ``X-API-Key`` or ``Authorization: Bearer``."""
    given = headers.get("x-api-key")
    if given:
        return given
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def running_as(app: str | None) -> contextlib.AbstractContextManager[None]:
    """The limiter's caller context for ``app`` (none without keys configured)."""
    return caller(app) if app is not None else contextlib.nullcontext()


def guarded(keys: CallerKeys, fn: Endpoint) -> Endpoint:
    """``fn`` for a caller-facing ``/v1`` route: with keys configured, a request without a
    known key is a 401 problem, and one with a key runs as its application."""
    if not keys:
        return fn

    async def run(request: Request) -> Response:
        app = keys.app_of(key_in(request.headers))
        if app is None:
            u = UNAUTHORIZED
            detail = "a known API key is required (X-API-Key or Authorization: Bearer)"
            response = problem(u.status, u.kind, detail, u.title)
            response.headers["WWW-Authenticate"] = 'Bearer realm="tunegate"'
            return response
        with caller(app):
            return await fn(request)

    return run
