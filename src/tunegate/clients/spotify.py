"""Spotify Web API clients: :class:`SpotifyClient` (threads) and :class:`AsyncSpotifyClient`
(asyncio), one implementation.

::

    spotify = SpotifyClient(client_id="...", client_secret="...")
    track = spotify.search_track("Deadmau5", "Strobe")   # the best match, or None
    print(track["name"], track["artists"][0]["name"])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Self, Unpack, cast

from tunegate._policy.classify import Expect, ProviderHook
from tunegate.breaker import CircuitBreaker
from tunegate.cache.frozen import adopt
from tunegate.clients._base import (
    AsyncClientMixin,
    Changes,
    ClientBase,
    ClientOptions,
    Flow,
    Op,
    Prepared,
    SyncClientMixin,
    adrive,
    drive,
    not_found_value,
    options_of,
    spec_breaker,
    strip_suffix,
    together,
)
from tunegate.clients._token import TokenSource
from tunegate.exceptions import (
    AuthenticationError,
    ConfigurationError,
    NotFound,
    ProviderError,
    TunegateError,
)
from tunegate.pipeline import Miss, Pipeline
from tunegate.providers import ApiRequest, spotify, validate
from tunegate.providers._request import amended
from tunegate.providers.spec import SPOTIFY
from tunegate.providers.spotify import SpotifyToken
from tunegate.providers.types import SpotifyArtist, SpotifyTrack

__all__ = ["AUTH_URL_ENV", "SPOTIFY", "AsyncSpotifyClient", "SpotifyClient", "SpotifyOptions"]

log = logging.getLogger("tunegate.clients")

AUTH_URL_ENV = SPOTIFY.auth_url_env
#: The accounts service has its own breaker: its outage must not stop calls made with a
#: token still valid, nor an API outage stop token refreshes.
ACCOUNTS_BREAKER = "spotify:accounts"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotifyOptions(ClientOptions):
    """:class:`ClientOptions` and Spotify's own.

    Attributes:
        auth_url: the accounts origin; default ``$TUNEGATE_SPOTIFY_AUTH_URL``, else
            ``https://accounts.spotify.com`` for the official API, else ``base_url``.
        batch_tracks: whether the app may use ``GET /v1/tracks?ids=`` (None: try it once).
        accounts_breaker: the accounts service's breaker (default: the spec's thresholds).
    """

    auth_url: str | None = None
    batch_tracks: bool | None = None
    accounts_breaker: CircuitBreaker | None = None


class SpotifyChanges(Changes, total=False):
    auth_url: str | None
    batch_tracks: bool | None
    accounts_breaker: CircuitBreaker | None


def auth_url_for(given: str | None, api_url: str) -> str:
    """``given``, else ``$TUNEGATE_SPOTIFY_AUTH_URL``, else the official accounts host when the
    API is the official one, else the API's own origin (emulators and proxies serve both)."""
    url = given or os.environ.get(AUTH_URL_ENV)
    if url is None:
        url = SPOTIFY.auth_url if api_url == SPOTIFY.base_url else api_url
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError("spotify: auth_url must start with http:// or https://")
    return strip_suffix(url, spotify.TOKEN_ENDPOINT)


_BEARER_SECRET = frozenset({"Authorization"})


def _authorized(request: ApiRequest, bearer: tuple[str, str]) -> ApiRequest:
    """``request`` with the token's ``Authorization`` header, marked secret (once a call)."""
    secret = request.secret_params
    return amended(
        request,
        cache_parts=request.cache_parts,
        headers=(*request.headers, bearer),
        secret_params=secret | _BEARER_SECRET if secret else _BEARER_SECRET,
    )


def _no_match(endpoint: str) -> NotFound:
    return NotFound("no hit matches", provider="spotify", endpoint=endpoint)


# The parses below build their values from the freshly decoded answer alone (dicts and
# lists), so they hand them over frozen lazily (``adopt``): the cache's write then copies
# nothing, and a miss's value reads as a hit's does.


def _best(args: tuple[Any, ...], body: Any) -> SpotifyTrack:
    artist, title, _ = args
    found = spotify.best_match(spotify.parse_search_tracks(body), artist, title)
    if found is None:
        raise _no_match(spotify.SEARCH_ENDPOINT)
    return cast(SpotifyTrack, adopt(found))


def _pick(args: tuple[Any, ...], body: Any) -> SpotifyTrack:
    found = spotify.pick_isrc_match(spotify.parse_search_tracks(body), args[0])
    if found is None:
        raise _no_match(spotify.SEARCH_ENDPOINT)
    return cast(SpotifyTrack, adopt(found))


_SEARCH: Op[SpotifyTrack | None] = Op(
    lambda c, artist, title, market: spotify.search_track_request(artist, title, market=market),
    _best,
)
_ISRC: Op[SpotifyTrack | None] = Op(
    lambda c, isrc, market: spotify.search_isrc_request(isrc, market=market), _pick
)
_TRACK: Op[SpotifyTrack | None] = Op(
    lambda c, track_id, market: spotify.track_request(track_id, market=market),
    lambda args, body: adopt(spotify.parse_track(body)),
)
_ARTIST: Op[SpotifyArtist | None] = Op(
    lambda c, artist_id: spotify.artist_request(artist_id),
    lambda args, body: adopt(spotify.parse_artist(body)),
)


class _Spotify(ClientBase):
    """Construction and every method's flow, shared by the sync and async classes."""

    spec = SPOTIFY
    _classifier: ClassVar[ProviderHook] = spotify.hook

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        options: ClientOptions | None = None,
        **changes: Unpack[SpotifyChanges],
    ) -> None:
        self._id, self._secret = validate.spotify_credentials(client_id, client_secret)
        options = options_of(SpotifyOptions, options, changes)
        self._batch = options.batch_tracks
        # The last token's header, made once per token rather than once per call.
        self._bearer: tuple[SpotifyToken | None, tuple[str, str]] = (None, ("", ""))
        super().__init__(options)

    def _before_pipeline(self, options: ClientOptions) -> None:
        # Built before the API pipeline: both report gauges as "spotify", the last wins.
        assert isinstance(options, SpotifyOptions)
        o = options
        self._accounts_breaker = o.accounts_breaker or spec_breaker(
            ACCOUNTS_BREAKER, SPOTIFY, self._link, o.clock
        )
        pipeline = Pipeline(
            SPOTIFY.name,
            auth_url_for(o.auth_url, self._base_url),
            circuit_breaker=self._accounts_breaker,
            retry=o.retry,
            http=o.http,
            classifier=spotify.hook,
            registry=o.registry,
            metrics=o.metrics,
            stale_if_error=False,
            clock=o.clock,
        )
        self._tokens = TokenSource(self._id, self._secret, pipeline, self._clock, self._link)

    def _built(self, options: ClientOptions) -> dict[str, Any]:
        return super()._built(options) | {
            "auth_url": self.auth_url,
            "accounts_breaker": self._accounts_breaker,
        }

    def _credentials(self) -> tuple[str, ...]:
        return self._id, self._secret

    def with_options(self, **changes: Unpack[SpotifyChanges]) -> Self:
        """A new client with these options changed (see :class:`SpotifyOptions`), sharing
        this one's cache, limiter, breakers, Redis, connection pool and, for the same
        accounts origin, its token."""
        copy = self._with(changes)
        if copy.auth_url == self.auth_url:
            copy._tokens = self._tokens
        return copy

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._base_url}>"  # never the credentials

    @property
    def options(self) -> SpotifyOptions:
        assert isinstance(self._options, SpotifyOptions)
        return self._options

    @property
    def auth_url(self) -> str:
        """Where client-credentials tokens come from."""
        return self._tokens.pipeline.base_url

    @property
    def accounts_breaker(self) -> CircuitBreaker:
        """The accounts service's own breaker (``spotify:accounts``): while it is open, calls
        that need a new token fail with CircuitBreakerOpenError naming it."""
        return self._accounts_breaker

    def get_stats(self) -> dict[str, Any]:
        """The common figures (see :meth:`ClientBase.get_stats`), plus ``token`` (fetched,
        from_shared, rejected, shared, expires_in, credentials_refused, and the accounts
        service's ``circuit_breaker``) and ``batch_tracks`` (True, False, or None while
        unknown)."""
        stats = super().get_stats()
        token = self._tokens.stats()
        token["circuit_breaker"] = dict(self._accounts_breaker.get_stats())
        stats["token"] = token
        stats["batch_tracks"] = self._batch
        return stats

    def _close_sync(self) -> None:
        super()._close_sync()
        self._tokens.pipeline.close()

    async def _close_async(self) -> None:
        await super()._close_async()
        await self._tokens.pipeline.aclose()

    # -- the one path for Web API calls -------------------------------------------------

    def _send(
        self,
        prepared: Prepared,
        parse: Callable[[Any], Any] | None,
        use_cache: bool,
        looked: Miss | None = None,
        batch: bool = False,
        expect: Expect = "json",
    ) -> Flow[Any]:
        """The call with a bearer token; a 401 refreshes the token and retries once; "not
        found" becomes None (``batch``: raised). When no token can be had, a cached answer
        is still served (stale only for an outage), else the token's error is raised."""
        request, pipeline = prepared.request, self._pipeline
        try:
            token = self._tokens.fresh() or (yield from self._tokens.get())
        except TunegateError as exc:
            if use_cache:
                served, value = yield from self._from_cache(prepared, exc)
                if served:
                    return value
            raise  # bare: the token path's traceback, not a second copy of this frame
        try:
            try:
                return (
                    yield from pipeline.flow(
                        _authorized(request, self._bearer_of(token)),
                        parse=parse,
                        expect=expect,
                        use_cache=use_cache,
                        looked=looked,
                    )
                )
            except AuthenticationError as exc:
                if not spotify.should_refresh_token(exc):
                    raise
            token = yield from self._tokens.get(rejected=token.access_token)
            return (
                yield from pipeline.flow(
                    _authorized(request, self._bearer_of(token)),
                    parse=parse,
                    expect=expect,
                    use_cache=use_cache,
                )
            )
        except NotFound:
            if batch:
                raise
            return not_found_value(request)

    def _bearer_of(self, token: SpotifyToken) -> tuple[str, str]:
        last, bearer = self._bearer
        if last is not token:  # a tuple swapped whole: threads see one pair or the other
            bearer = ("Authorization", token.authorization)
            self._bearer = (token, bearer)
        return bearer

    def _raw(self, request: ApiRequest, expect: Expect, use_cache: bool) -> Flow[Any]:
        """``send_raw``: the Web API call with this client's token, "not found" raised."""
        sent = self._as_sent(request)
        return (yield from self._send(sent, None, use_cache, batch=True, expect=expect))

    # -- methods ------------------------------------------------------------------------

    def _get_tracks(
        self, ids: Iterable[str], use_cache: bool, market: str | None
    ) -> Flow[list[SpotifyTrack | None]]:
        wanted = validate.spotify_ids(ids, "ids", "track")
        market = None if market is None else validate.market(market)
        unique = list(dict.fromkeys(wanted))
        found: dict[str, SpotifyTrack | None] = {}
        rest, looked = unique, False
        if self._batch is not False and unique:
            if use_cache:
                rest, looked = [], True
                for tid in unique:
                    hit, value = yield from self._from_cache(self._prepare(_TRACK, (tid, market)))
                    if hit:
                        found[tid] = value
                    else:
                        rest.append(tid)
            if rest:
                try:
                    found.update((yield from self._batch_fetch(rest, market)))
                    rest = []
                except ProviderError as exc:
                    if exc.status not in (403, 404):
                        raise
                    # Development-Mode apps lost GET /v1/tracks in 2026: one call per id.
                    log.info(
                        "spotify: batch track lookup refused (%s); one call per id", exc.status
                    )
                    self._batch = False
        if rest:
            use = use_cache and not looked  # ids looked up above would only miss again
            values = yield from together([self._flow(_TRACK, (t, market), use) for t in rest])
            found.update(zip(rest, values, strict=True))
        return [found[t] for t in wanted]

    def _batch_fetch(
        self, ids: list[str], market: str | None
    ) -> Flow[dict[str, SpotifyTrack | None]]:
        """``GET /v1/tracks?ids=`` in chunks; every answer (a track, or None for an unknown
        id) is cached under ``spotify:track:{id}``."""
        chunks = []
        for request in spotify.tracks_requests(ids, market):
            sent = Prepared(request, None)
            chunks.append((yield from self._send(sent, spotify.parse_tracks, False, batch=True)))
        self._batch = True
        out: dict[str, SpotifyTrack | None] = {}
        for tid, track in zip(ids, spotify.assemble_tracks(ids, chunks), strict=True):
            request = self._prepare(_TRACK, (tid, market)).request
            stored = yield from self._pipeline.store(request, track, not_found=track is None)
            out[tid] = None if track is None else stored
        return out


class SpotifyClient(SyncClientMixin, _Spotify):
    """The Spotify Web API for threads: client-credentials token handled for you, every
    call through the cache, rate limiter, circuit breaker and retry policy.

    Args:
        client_id, client_secret: the app's credentials (checked at construction).
        options: a :class:`SpotifyOptions` (or plain :class:`ClientOptions`); its fields
            may also be given as keywords, which win. Omitted components are embedded
            from :data:`~tunegate.providers.spec.SPOTIFY` (in-memory cache; 10 requests/s,
            burst 1, so a rolling 30 s window sees at most 300; breaker opening after 5
            failures for 60 s, closing after 2 probes).
            ``auth_url``: the accounts origin; ``batch_tracks``: whether the app may use
            ``GET /v1/tracks?ids=`` (None: try it once). See ``docs/clients.md``.
    """

    def search_track(
        self, artist: str, title: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """The search hit that best matches ``artist`` and ``title`` (ranked by normalised
        similarity, see ``docs/providers.md``), or None when no hit is close enough."""
        return self._run(_SEARCH, (artist, title, market), use_cache)

    def search_by_isrc(
        self, isrc: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """The track carrying ``isrc`` (hyphens and case are normalised), or None."""
        return self._run(_ISRC, (isrc, market), use_cache)

    def get_track(
        self, track_id: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """The track with this id (or ``spotify:track:`` URI, or open.spotify.com link)."""
        return self._run(_TRACK, (track_id, market), use_cache)

    def get_tracks(
        self, ids: Iterable[str], *, use_cache: bool = True, market: str | None = None
    ) -> list[SpotifyTrack | None]:
        """The tracks for ``ids`` in the same order, None for unknown ids; cached ones are
        not asked for, the rest in batches of 50 or one call per id where batches are
        refused."""
        return drive(self._get_tracks(ids, use_cache, market))

    def get_artist(self, artist_id: str, *, use_cache: bool = True) -> SpotifyArtist | None:
        """The artist with this id, or None."""
        return self._run(_ARTIST, (artist_id,), use_cache)


class AsyncSpotifyClient(AsyncClientMixin, _Spotify):
    """:class:`SpotifyClient` for asyncio: the same constructor and methods, awaited.
    Close it with ``await client.aclose()`` or use ``async with``."""

    async def search_track(
        self, artist: str, title: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """See :meth:`SpotifyClient.search_track`."""
        return await self._run(_SEARCH, (artist, title, market), use_cache)

    async def search_by_isrc(
        self, isrc: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """See :meth:`SpotifyClient.search_by_isrc`."""
        return await self._run(_ISRC, (isrc, market), use_cache)

    async def get_track(
        self, track_id: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """See :meth:`SpotifyClient.get_track`."""
        return await self._run(_TRACK, (track_id, market), use_cache)

    async def get_tracks(
        self, ids: Iterable[str], *, use_cache: bool = True, market: str | None = None
    ) -> list[SpotifyTrack | None]:
        """See :meth:`SpotifyClient.get_tracks` (ids fetched one by one run concurrently)."""
        return await adrive(self._get_tracks(ids, use_cache, market))

    async def get_artist(self, artist_id: str, *, use_cache: bool = True) -> SpotifyArtist | None:
        """See :meth:`SpotifyClient.get_artist`."""
        return await self._run(_ARTIST, (artist_id,), use_cache)
