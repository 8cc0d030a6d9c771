"""Bits every provider module needs: the shared state, JSON and XML responses, the
provider interface the server drives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import orjson
from aiohttp import web

from tunegate._clock import Clock, SystemClock
from tunegate.emulator.catalog import Catalog
from tunegate.emulator.config import EmulatorConfig, RateLimit
from tunegate.emulator.faults import FaultInjector
from tunegate.emulator.ratelimits import Blocker, WindowLimiter
from tunegate.emulator.stats import Stats
from tunegate.emulator.tokenstore import TokenStore

__all__ = [
    "HOLD",
    "Handler",
    "Provider",
    "Route",
    "State",
    "json_response",
    "origin",
    "text",
    "xml_element",
    "xml_response",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Seconds the pipeline holds the answer (served or refused) before sending it: set by admit.
HOLD = web.RequestKey("emulator_hold", float)


@dataclass
class State:
    """Everything one emulator serves from; touched only on its event loop's thread."""

    catalog: Catalog
    config: EmulatorConfig
    stats: Stats = field(default_factory=Stats)
    faults: FaultInjector = field(default_factory=FaultInjector)
    # Every time the emulator reads or waits on (windows, tokens, holds, latency); a test
    # hands in tunegate.testing.FakeClock to move it instead of sleeping.
    clock: Clock = field(default_factory=SystemClock)
    tokens: TokenStore = field(default_factory=TokenStore)  # Spotify bearer tokens
    closing: bool = False
    _limiters: dict[str, WindowLimiter] = field(default_factory=dict)
    _blockers: dict[str, Blocker] = field(default_factory=dict)

    def limiter(self, provider: str) -> WindowLimiter:
        limit: RateLimit = getattr(self.config, f"{provider}_rate")
        limiter = self._limiters.get(provider)
        if limiter is None or limiter.limit != limit:
            limiter = self._limiters[provider] = WindowLimiter(limit)
        return limiter

    def blocker(self, provider: str) -> Blocker:
        """The block list of ``provider`` (``{provider}_block_rate``/``_block_seconds``)."""
        limit: RateLimit = getattr(self.config, f"{provider}_block_rate")
        seconds: float = getattr(self.config, f"{provider}_block_seconds")
        blocker = self._blockers.get(provider)
        if blocker is None or blocker.limit != limit or blocker.seconds != seconds:
            blocker = self._blockers[provider] = Blocker(limit, seconds)
        return blocker

    def reset_limits(self) -> None:
        self._limiters.clear()
        self._blockers.clear()


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    endpoint: str  # the name stats and fault rules use


class Provider(ABC):
    """One imitated service: its routes, its gatekeeping, its error shape."""

    name: str = ""

    def __init__(self, state: State) -> None:
        self.state = state

    @abstractmethod
    def routes(self) -> list[Route]:
        """Every (method, path) this service answers."""

    async def endpoint_of(self, request: web.Request, endpoint: str) -> str:
        """The stats/fault name of this call (Last.fm's depends on the ``method`` param)."""
        return endpoint

    @abstractmethod
    async def admit(
        self, request: web.Request, endpoint: str, now: float
    ) -> tuple[str, web.Response | None]:
        """(client as the quota sees it, refusal or None): credentials, identity, quota."""

    @abstractmethod
    def error(self, request: web.Request, status: int, *, retry_after: float = 1.0) -> web.Response:
        """The provider's answer for an injected or internal ``status``."""


def origin(request: web.Request) -> str:
    """``scheme://host:port`` as the client addressed us, for hrefs it can follow."""
    return f"{request.scheme}://{request.host}"


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def xml_response(
    body: str, status: int = 200, headers: dict[str, str] | None = None, content_type: str = ""
) -> web.Response:
    return web.Response(
        body=body.encode("utf-8"),
        status=status,
        headers=headers,
        content_type=content_type or "application/xml",
        charset="utf-8",
    )


def xml_element(tag: str, children: str | None = None, /, **attrs: Any) -> str:
    """``<tag a="1">children</tag>`` (escaped); ``children=None`` gives ``<tag a="1"/>``.

    Attribute names use ``_`` for ``-`` and ``__`` for ``:`` (``ext__score`` -> ``ext:score``).
    """
    attr = "".join(
        f" {k.replace('__', ':').replace('_', '-')}={quoteattr(str(v))}"
        for k, v in attrs.items()
        if v is not None
    )
    if children is None:
        return f"<{tag}{attr}/>"
    return f"<{tag}{attr}>{children}</{tag}>"


def text(value: Any) -> str:
    """Escaped element text."""
    return escape(str(value))
