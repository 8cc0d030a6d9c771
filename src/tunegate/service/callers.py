"""Callers' API keys: which application a request comes from, so the limiter can give
each one a fair share of a provider's quota (:func:`tunegate.caller`: contending callers
are granted round-robin by application instead of in arrival order).

Keys are optional. None configured: the service is open and every request queues in
arrival order, as before. Keys configured: every caller-facing request (``/v1``, the
pass-through) must carry a known key, else 401; operations (``/healthz``, ``/readyz``,
``/metrics``, the status page, the OpenAPI document) stay open for probes and scrapers,
and admin calls take the admin token. A key is carried as ``X-API-Key: KEY`` or
``Authorization: Bearer KEY``, or in the provider's own credential slot on the
pass-through (Spotify's client secret at ``/spotify/api/token``, Last.fm's ``api_key``).

Keys are compared in constant time (every configured key is compared, so the time does
not say which one matched) and never logged, echoed or used as a label: only the
application's name goes further."""

from __future__ import annotations

import contextlib
import hmac
import re
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tunegate.exceptions import ConfigurationError
from tunegate.ratelimit import caller
from tunegate.service.errors import UNAUTHORIZED, problem

__all__ = [
    "API_KEYS_ENV",
    "SERVICE_FILE_ENV",
    "CallerKeys",
    "guarded",
    "key_in",
    "read_service_file",
    "running_as",
]

API_KEYS_ENV = "TUNEGATE_API_KEYS"
SERVICE_FILE_ENV = "TUNEGATE_SERVICE_FILE"
Endpoint = Callable[[Request], Awaitable[Response]]
_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True)
class CallerKeys:
    """The configured keys, each naming its application."""

    _keys: tuple[tuple[bytes, str], ...] = ()

    @classmethod
    def of(cls, apps: Mapping[str, str]) -> CallerKeys:
        """From ``application name -> key``. Raises ConfigurationError for a name that is
        not plain, an empty key or one key given to two applications; the message names
        the entry by its position only (a name and key written the wrong way round must
        not put the key in a log line)."""
        seen: dict[bytes, tuple[int, str]] = {}
        for n, (app, key) in enumerate(apps.items(), 1):
            if not isinstance(app, str) or not _APP_NAME.fullmatch(app):
                raise ConfigurationError(f"caller key entry {n}: the name is not a plain name")
            if not isinstance(key, str) or not key.strip():
                raise ConfigurationError(f"caller key entry {n}: the key is empty")
            raw = key.strip().encode()
            if raw in seen:
                raise ConfigurationError(f"caller key entries {seen[raw][0]} and {n} share one key")
            seen[raw] = (n, app)
        return cls(tuple((raw, app) for raw, (_, app) in seen.items()))

    @classmethod
    def parse(cls, text: str) -> CallerKeys:
        """``TUNEGATE_API_KEYS``: comma-separated ``app=KEY`` entries (split at the first
        ``=``, so a key may hold ``=``, base64 padding for one). An entry without ``=`` is
        refused: a bare key would be taken for a name."""
        apps: dict[str, str] = {}
        entries = [e.strip() for e in text.split(",") if e.strip()]
        for n, entry in enumerate(entries, 1):
            app, sep, key = entry.partition("=")
            if not sep:
                raise ConfigurationError(f"{API_KEYS_ENV} entry {n} is not app=KEY")
            if app.strip() in apps:
                raise ConfigurationError(f"{API_KEYS_ENV} entry {n}: that name is given twice")
            apps[app.strip()] = key
        return cls.of(apps)

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
        raw = given.strip().encode()
        found = None
        for key, app in self._keys:  # no early exit: the time says nothing of the match
            if hmac.compare_digest(raw, key):
                found = app
        return found

    def __repr__(self) -> str:  # the keys never appear in a repr, a log or a traceback
        return f"CallerKeys({len(self._keys)} keys)"


def key_in(headers: Mapping[str, str]) -> str | None:
    """The key a request carries in ``X-API-Key`` or ``Authorization: Bearer``."""
    given = headers.get("x-api-key")
    if given:
        return given
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def read_service_file(path: str | Path) -> dict[str, Any]:
    """The service's own TOML file (``TUNEGATE_SERVICE_FILE``): ``admin_token``,
    ``token_key`` and an ``[api_keys]`` table of ``application = "KEY"``. Its secrets stay
    out of the CLI's file, which ``tunegate config show`` prints."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{p}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{p}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"admin_token", "token_key", "api_keys"})
    if unknown:
        raise ConfigurationError(f"{p}: unknown key {unknown[0]!r}")
    for name in ("admin_token", "token_key"):
        if name in data and not isinstance(data[name], str):
            raise ConfigurationError(f"{p}: {name} must be a string")
    apps = data.get("api_keys", {})
    if not isinstance(apps, dict):
        raise ConfigurationError(f"{p}: api_keys must be a table of application = key")
    return data


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
