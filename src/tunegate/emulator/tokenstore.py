"""Spotify bearer tokens the emulator has issued: which app each belongs to and when it
expires, with bounded memory however many tokens clients ask for.

Each app's tokens are kept in issue order; with a fixed lifetime that is also expiry
order, so expired tokens are dropped from the front in O(1) each time the app gets a new
one. An app holds at most ``per_app`` live tokens: past that its oldest is revoked (the
real service has no such cap that we know of, but a client asking for a token per call
would otherwise grow the store for a whole token lifetime).

Pure: callers pass ``now``.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

__all__ = ["MAX_TOKENS_PER_APP", "TokenStore"]

MAX_TOKENS_PER_APP = 1000


class TokenStore:
    def __init__(self, per_app: int = MAX_TOKENS_PER_APP) -> None:
        self.per_app = per_app
        self._apps: dict[str, OrderedDict[str, float]] = {}  # app -> token -> expiry
        self._owner: dict[str, str] = {}  # token -> app

    def issue(self, app: str, now: float, lifetime: float) -> str:
        """A new token for ``app``, valid until ``now + lifetime``."""
        tokens = self._apps.setdefault(app, OrderedDict())
        # OrderedDict rather than deque: a revoked token leaves from anywhere in O(1).
        while tokens:
            oldest, expiry = next(iter(tokens.items()))
            if expiry > now and len(tokens) < self.per_app:
                break
            del tokens[oldest]
            del self._owner[oldest]
        token = "BQ" + secrets.token_urlsafe(84)
        tokens[token] = now + lifetime
        self._owner[token] = app
        return token

    def get(self, token: str) -> tuple[str, float] | None:
        """(app, expiry) of a token this store issued and still holds, else None."""
        app = self._owner.get(token)
        if app is None:
            return None
        return app, self._apps[app][token]

    def expire_all(self, now: float) -> None:
        """Every token held expires at ``now`` (still known, so it answers "expired")."""
        for tokens in self._apps.values():
            for token in tokens:
                tokens[token] = now

    def clear(self) -> None:
        self._apps.clear()
        self._owner.clear()

    def __len__(self) -> int:
        return len(self._owner)
