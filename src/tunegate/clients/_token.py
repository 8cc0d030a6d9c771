"""The Spotify client-credentials token: fetched lazily, refreshed ahead of expiry, one
refresh at a time for every thread and task of the process, and shared by every worker
through Redis when there is one.

In Redis the token lives under ``tunegate:spotify:token:{<digest>}``, the digest a SHA-256
of the accounts URL and the client id (never the secret, never the token): workers of one
app share it, apps and environments do not collide. A short lease key makes one worker
fetch while the others wait for its result. Redis being down only means each process
fetches its own token. The token is never logged and never part of a message or a stat.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import secrets
import threading
import time
from typing import Any

import orjson

from tunegate._clock import Clock
from tunegate._redis import DOWN, RedisCall, RedisLink, lua
from tunegate.clients._base import Flow, Pause, Wait
from tunegate.exceptions import AuthenticationError, ProviderUnavailable
from tunegate.pipeline import Pipeline
from tunegate.providers import spotify
from tunegate.providers.spotify import SpotifyToken

__all__ = ["TokenSource", "token_key"]

log = logging.getLogger("tunegate.clients")

KEY_PREFIX = "tunegate:spotify:token:"
#: Seconds a refusal of the credentials (``invalid_client``) is believed: meanwhile every
#: call that needs a token fails at once, without asking. Wrong credentials stay wrong
#: until the client is rebuilt with others; asking again after a while only covers a
#: refusal the accounts service made by mistake.
REFUSAL_HOLD = 300.0
# KEYS[1] the lease, ARGV[1] our owner tag: drop the lease only if it is still ours.
_RELEASE = lua("lease_release.lua")
_POLLS = 100  # at most this many looks at Redis while another worker fetches


def token_key(client_id: str, auth_url: str) -> str:
    """The Redis key of the shared token (a digest: no credential appears in it)."""
    digest = hashlib.sha256(f"{auth_url}\n{client_id}".encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}{{{digest}}}"  # braces: token and lease share one cluster slot


class _LeaderGone(Exception):
    """The refreshing caller was cancelled: a waiting one refreshes instead."""


_WHAT = "the shared Spotify token"


def _redis_op(link: RedisLink, *command: Any) -> RedisCall:
    """One Redis command; its reply, or ``DOWN`` when Redis fails: callers carry on
    without it (fail open)."""
    return RedisCall(link, _WHAT, command=command, down=DOWN)


def _encode(token: SpotifyToken) -> bytes:
    return orjson.dumps({"t": token.access_token, "e": token.expires_at, "r": token.refresh_at})


def _decode(raw: object) -> SpotifyToken | None:
    if not isinstance(raw, bytes | str):
        return None
    try:
        data = orjson.loads(raw)
        return SpotifyToken(
            access_token=str(data["t"]),
            token_type="Bearer",
            expires_at=float(data["e"]),
            refresh_at=float(data["r"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # someone else's value, or a damaged one: fetch our own


class TokenSource:
    """Hands out a usable token; see the module docstring. Thread- and task-safe.

    ``get(rejected=...)`` refuses the token the Web API just answered 401 to, so that a
    refresh happens even if the token looks valid by its expiry time.

    When the accounts service refuses the credentials (``AuthenticationError``), the refusal
    is remembered for ``refusal_hold`` seconds: meanwhile a refresh raises it again at once,
    with no request, so a batch run with a wrong secret costs one token request, not one
    per row.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        pipeline: Pipeline,
        clock: Clock,
        link: RedisLink | None,
        *,
        lease: float = 10.0,
        hold: float = 5.0,
        refusal_hold: float = REFUSAL_HOLD,
    ) -> None:
        self._request = spotify.token_request(client_id, client_secret)  # validates both
        self._pipeline = pipeline
        self._clock = clock
        self._link = link
        self._key = token_key(client_id.strip(), pipeline.base_url)
        self._lease_key = f"{self._key}:lease"
        self._lease_ms = int(lease * 1000)
        self._hold = hold
        self._lock = threading.Lock()
        self._token: SpotifyToken | None = None
        self._hold_until = 0.0  # after a failed early refresh, keep the old token till then
        self._flight: concurrent.futures.Future[SpotifyToken] | None = None
        self._refusal_hold = refusal_hold
        self._refused: AuthenticationError | None = None  # the last refusal, until:
        self._refused_until = 0.0
        deadline = pipeline.retry.deadline or 60.0
        self._wait_timeout = deadline + pipeline.http.config.total_timeout + 5.0
        self._counts = dict.fromkeys(("fetched", "from_shared", "rejected"), 0)

    def __repr__(self) -> str:
        return "<TokenSource spotify>"  # nothing about the credentials or the token

    @property
    def pipeline(self) -> Pipeline:
        """The accounts service's pipeline (its own breaker, no cache)."""
        return self._pipeline

    @property
    def shared(self) -> bool:
        return self._link is not None

    def stats(self) -> dict[str, Any]:
        """Tokens fetched, taken from Redis, refused by a 401; seconds the current one has
        left; whether the credentials were refused (and no request is made for a while)."""
        with self._lock:
            counts: dict[str, Any] = dict(self._counts)
            token = self._token
            refused_until = self._refused_until if self._refused is not None else 0.0
        now = self._clock.time()
        counts["shared"] = self.shared
        counts["expires_in"] = None if token is None else round(max(0.0, token.expires_at - now), 3)
        counts["credentials_refused"] = now < refused_until
        return counts

    def _refusal(self) -> AuthenticationError | None:
        """A fresh copy of the remembered refusal while it holds, else None."""
        with self._lock:
            refused, until = self._refused, self._refused_until
        if refused is None or self._clock.time() >= until:
            return None
        return AuthenticationError(
            f"{refused.args[0] if refused.args else 'client credentials refused'} "
            f"(remembered: no token request for {self._refusal_hold:g}s after a refusal, "
            "or until the client is built again)",
            provider=refused.provider,
            endpoint=refused.endpoint,
            status=refused.status,
            code=refused.code,
            request_id=refused.request_id,
        )

    def _remember(self, refused: AuthenticationError) -> None:
        log.error(
            "spotify: the accounts service refused the client credentials (%s); no token "
            "request for %.0fs",
            refused.code or refused.status,
            self._refusal_hold,
        )
        with self._lock:
            self._refused = refused
            self._refused_until = self._clock.time() + self._refusal_hold

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _usable(self, token: SpotifyToken | None, rejected: str | None) -> bool:
        if token is None or token.access_token == rejected:
            return False
        now = self._clock.time()
        return not token.needs_refresh(now) or now < min(self._hold_until, token.expires_at)

    # -- the flow ---------------------------------------------------------------------------

    def get(self, rejected: str | None = None) -> Flow[SpotifyToken]:
        """A token that is not ``rejected`` and not due for refresh; one caller refreshes
        while the others (threads and tasks alike) wait for its result."""
        if rejected is not None:
            self._count("rejected")
        for _ in range(3):  # bounded: a cancelled refresher hands over to a waiter
            with self._lock:
                token = self._token
                if self._usable(token, rejected):
                    assert token is not None
                    return token
                flight = self._flight
                leads = flight is None
                if flight is None:
                    flight = self._flight = concurrent.futures.Future()
            if leads:
                return (yield from self._lead(flight, rejected, token))
            try:
                waited: SpotifyToken = yield Wait(flight, self._wait_timeout)
            except _LeaderGone:
                continue
            except TimeoutError as exc:
                raise ProviderUnavailable(
                    "timed out waiting for the token refresh in flight",
                    provider="spotify",
                    endpoint=spotify.TOKEN_ENDPOINT,
                ) from exc
            if waited.access_token != rejected:
                return waited
            # That refresh started before our 401 and brought the refused token back.
        return (yield from self._refresh(rejected, None))

    def _lead(
        self,
        flight: concurrent.futures.Future[SpotifyToken],
        rejected: str | None,
        previous: SpotifyToken | None,
    ) -> Flow[SpotifyToken]:
        try:
            token = yield from self._refresh(rejected, previous)
        except Exception as exc:
            self._finish(flight, error=exc)
            raise
        except BaseException:
            self._finish(flight, error=_LeaderGone())
            raise
        self._finish(flight, token=token)
        return token

    def _finish(
        self,
        flight: concurrent.futures.Future[SpotifyToken],
        token: SpotifyToken | None = None,
        error: BaseException | None = None,
    ) -> None:
        with self._lock:
            if token is not None:
                self._token = token
            if self._flight is flight:
                self._flight = None
        if token is not None:
            flight.set_result(token)
        else:
            flight.set_exception(error or _LeaderGone())

    def _refresh(self, rejected: str | None, previous: SpotifyToken | None) -> Flow[SpotifyToken]:
        try:
            return (yield from self._shared_or_fetched(rejected))
        except Exception:
            # An early refresh failed: the current token still works until it expires.
            now = self._clock.time()
            if (
                previous is not None
                and previous.access_token != rejected
                and now < previous.expires_at
            ):
                log.warning("spotify: token refresh failed; the current token is kept")
                with self._lock:
                    self._hold_until = now + self._hold
                return previous
            raise

    def _shared_or_fetched(self, rejected: str | None) -> Flow[SpotifyToken]:
        link = self._link
        if link is None or not link.available:
            return (yield from self._fetch())
        found = yield from self._read_shared(link, rejected)
        if found is not None:
            return found
        owner = secrets.token_hex(8)
        lease_key, lease_ms = self._lease_key, self._lease_ms
        claimed = yield _redis_op(link, "SET", lease_key, owner, "NX", "PX", lease_ms)
        if claimed is DOWN:
            return (yield from self._fetch())
        if claimed:
            # The worker that held the lease may have published just before we took it.
            found = yield from self._read_shared(link, rejected)
            if found is not None:
                yield from self._release(link, owner)
                return found
            return (yield from self._fetch(link, owner))
        # Another worker is fetching: wait for its token, at most for its lease.
        give_up = time.monotonic() + lease_ms / 1000.0
        pause = 0.02
        for _ in range(_POLLS):
            if time.monotonic() >= give_up:
                break
            yield Pause(pause)
            pause = min(pause * 2, 0.25)
            found = yield from self._read_shared(link, rejected)
            if found is not None:
                return found
        return (yield from self._fetch(link))

    def _read_shared(self, link: RedisLink, rejected: str | None) -> Flow[SpotifyToken | None]:
        key = self._key
        raw = yield _redis_op(link, "GET", key)
        token = None if raw is DOWN else _decode(raw)
        if token is not None and self._usable(token, rejected):
            self._count("from_shared")
            return token
        return None

    def _fetch(self, link: RedisLink | None = None, owner: str | None = None) -> Flow[SpotifyToken]:
        """Ask the accounts service; publish the token in Redis; drop our lease."""
        clock = self._clock
        try:
            refused = self._refusal()
            if refused is not None:
                raise refused
            try:
                token: SpotifyToken = yield from self._pipeline.flow(
                    self._request,
                    parse=lambda body: spotify.parse_token(body, clock.time()),
                    use_cache=False,
                )
            except AuthenticationError as exc:
                self._remember(exc)
                raise
            self._count("fetched")
            ttl_ms = int((token.expires_at - clock.time()) * 1000)
            if link is not None and ttl_ms > 0:
                key, value = self._key, _encode(token)
                yield _redis_op(link, "SET", key, value, "PX", ttl_ms)
        finally:
            if link is not None and owner is not None:
                yield from self._release(link, owner)
        return token

    def _release(self, link: RedisLink, owner: str) -> Flow[None]:
        """Drop our lease (only if it is still ours)."""
        keys = (self._lease_key,)
        yield RedisCall(link, _WHAT, script=_RELEASE, keys=keys, args=(owner,), down=DOWN)
