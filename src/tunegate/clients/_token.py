"""The Spotify client-credentials token: fetched lazily, refreshed ahead of expiry, one
refresh at a time for every thread and task of the process, and shared by every worker
through Redis when there is one.

In Redis the token lives under ``tunegate:spotify:token:{<digest>}``, the digest a SHA-256
of the accounts URL and the client id (never the secret, never the token): workers of one
app share it, apps and environments do not collide. One refresh at a time is the request
path's own single-flight (:class:`tunegate._coalesce.SingleFlight`, keyed by the digest):
one caller of the process leads while the others wait for its result, and its Redis lease
(``tunegate:sf:{<digest>}``) makes one worker fetch while the others wait for the token it
leaves in Redis. Redis being down only means each process fetches its own token. The token
is never logged and never part of a message or a stat (nor published by single-flight:
only an outage-like failure is shared, as an error marker without text).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from typing import Any, cast

import orjson

from tunegate._attempts import NO_ANSWER, Call, Failed
from tunegate._clock import Clock
from tunegate._coalesce import SingleFlight
from tunegate._drive import Flow
from tunegate._redis import DOWN, RedisCall, RedisLink
from tunegate.exceptions import AuthenticationError
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
_WHAT = "the shared Spotify token"


def _digest(client_id: str, auth_url: str) -> str:
    return hashlib.sha256(f"{auth_url}\n{client_id}".encode()).hexdigest()[:32]


def token_key(client_id: str, auth_url: str) -> str:
    """The Redis key of the shared token (a digest: no credential appears in it)."""
    # Braces: the token and single-flight's lease (tunegate:sf:{digest}) share a cluster slot.
    return f"{KEY_PREFIX}{{{_digest(client_id, auth_url)}}}"


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
        self._flight_key = _digest(client_id.strip(), pipeline.base_url)
        self._hold = hold
        self._lock = threading.Lock()
        self._token: SpotifyToken | None = None
        self._hold_until = 0.0  # after a failed early refresh, keep the old token till then
        self._refusal_hold = refusal_hold
        self._refused: AuthenticationError | None = None  # the last refusal, until:
        self._refused_until = 0.0
        deadline = pipeline.retry.deadline or 60.0
        self._wait_timeout = deadline + pipeline.http.config.total_timeout + 5.0
        self._counts = dict.fromkeys(("fetched", "from_shared", "rejected"), 0)
        # The request path's single-flight; a follower waits for the refresh at most
        # ``_wait_timeout`` (the call's deadline, no slack). The token itself is never
        # published: followers elsewhere read it from Redis (``_recheck``).
        self._single = SingleFlight(
            "spotify",
            clock=clock,
            recorder=pipeline.recorder,  # counted with the accounts pipeline's own calls
            link=link,
            lease_ms=int(lease * 1000),
            follow_slack=0.0,
            share_values=False,
        )

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

    def fresh(self) -> SpotifyToken | None:
        """This process's token when :meth:`get` would return it at once (no flow made,
        the common case of every call), else None: then :meth:`get`."""
        with self._lock:
            token = self._token
        return token if self._usable(token, None) else None

    # -- the flow ---------------------------------------------------------------------------

    def get(self, rejected: str | None = None) -> Flow[SpotifyToken]:
        """A token that is not ``rejected`` and not due for refresh: ours, else the one in
        Redis, else a refresh, led by one caller of this process (threads and tasks alike)
        and one worker of all (the single-flight lease) while the others wait for it."""
        if rejected is not None:
            self._count("rejected")
        flights = self._single.flights
        for _ in range(3):  # bounded: a refresh that brought the refused token back
            looked_at = flights.generation  # before the looks: see Flights
            with self._lock:
                token = self._token
            if self._usable(token, rejected):
                assert token is not None
                return token
            link = self._link
            if link is not None and link.available:
                found = yield from self._read_shared(link, rejected)
                if found is not None:
                    return found
            now = self._clock.monotonic()
            call = Call(
                request=self._request,
                key=self._key,
                parse=None,
                expect="json",
                ttl=None,
                span=None,
                looked_at=looked_at,
                started=now,
                deadline=now + self._wait_timeout,  # how long a follower waits for the refresh
            )
            lead = functools.partial(self._refresh, rejected, token)
            recheck = functools.partial(self._recheck, rejected)
            outcome = yield from self._single.run(call, self._flight_key, lead, recheck)
            if isinstance(outcome, Failed):
                raise outcome.error
            if outcome.access_token != rejected:
                return cast(SpotifyToken, outcome)
            # That refresh started before our 401 and brought the refused token back.
        return (yield from self._refresh(rejected, None))

    def _recheck(self, rejected: str | None) -> Flow[Any]:
        """The token another worker left in Redis while we waited for its lease."""
        link = self._link
        found = None if link is None else (yield from self._read_shared(link, rejected))
        return NO_ANSWER if found is None else found

    def _refresh(self, rejected: str | None, previous: SpotifyToken | None) -> Flow[SpotifyToken]:
        """The single-flight leader's refresh: Redis once more (another worker may have
        published just before we took the lease), else the accounts service."""
        try:
            link = self._link
            token = None
            if link is not None and link.available:
                token = yield from self._read_shared(link, rejected)
            if token is None:
                token = yield from self._fetch(link)
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
        return token

    def _read_shared(self, link: RedisLink, rejected: str | None) -> Flow[SpotifyToken | None]:
        key = self._key
        raw = yield RedisCall(link, _WHAT, command=("GET", key), down=DOWN)
        token = None if raw is DOWN else _decode(raw)
        if token is not None and self._usable(token, rejected):
            self._count("from_shared")
            self._keep(token)
            return token
        return None

    def _keep(self, token: SpotifyToken) -> None:
        with self._lock:
            self._token = token

    def _fetch(self, link: RedisLink | None) -> Flow[SpotifyToken]:
        """Ask the accounts service; publish the token in Redis."""
        clock = self._clock
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
        self._keep(token)
        ttl_ms = int((token.expires_at - clock.time()) * 1000)
        if link is not None and ttl_ms > 0:
            command = ("SET", self._key, _encode(token), "PX", ttl_ms)
            yield RedisCall(link, _WHAT, command=command, down=DOWN)
        return token
