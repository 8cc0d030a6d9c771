"""Spotify Web API clients: :class:`SpotifyClient` (threads) and :class:`AsyncSpotifyClient`
(asyncio), one implementation.

::

    spotify = SpotifyClient(client_id="...", client_secret="...")
    track = spotify.search_track("Deadmau5", "Strobe")   # the best match, or None
    print(track["name"], track["artists"][0]["name"])
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from tunegate._clock import Clock
from tunegate._http import HttpConfig, HttpPool
from tunegate._policy.classify import ProviderHook
from tunegate._policy.retry import RetryBudget, RetryPolicy
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.clients._base import (
    AsyncClientMixin,
    ClientBase,
    Flow,
    Profile,
    RedisLike,
    SyncClientMixin,
    Together,
    adrive,
    drive,
    not_found_value,
    strip_suffix,
)
from tunegate.clients._token import TokenSource
from tunegate.exceptions import (
    AuthenticationError,
    ConfigurationError,
    NotFound,
    ProviderError,
    TunegateError,
)
from tunegate.pipeline import MISS, Pipeline
from tunegate.providers import ApiRequest, spotify, validate
from tunegate.providers.spotify import SpotifyToken
from tunegate.providers.types import SpotifyArtist, SpotifyTrack
from tunegate.ratelimit import RateLimiter

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["AUTH_URL_ENV", "SPOTIFY", "AsyncSpotifyClient", "SpotifyClient"]

log = logging.getLogger("tunegate.clients")

_HIT_KEYS = 4096  # search keys remembered per client (started over when full)

SPOTIFY = Profile(
    name="spotify",
    rate=10.0,
    capacity=10,
    failure_threshold=5,
    timeout=60.0,
    official_url=spotify.API_BASE_URL,
    url_env="TUNEGATE_SPOTIFY_API_URL",
    suffix="/v1",
)

AUTH_URL_ENV = "TUNEGATE_SPOTIFY_AUTH_URL"
#: The accounts service has its own breaker: its outage must not stop calls made with a
#: token still valid, nor an API outage stop token refreshes.
ACCOUNTS_BREAKER = "spotify:accounts"


def auth_url_for(given: str | None, api_url: str) -> str:
    """``given``, else ``$TUNEGATE_SPOTIFY_AUTH_URL``, else the official accounts host when the
    API is the official one, else the API's own origin (emulators and proxies serve both)."""
    url = given or os.environ.get(AUTH_URL_ENV)
    if url is None:
        url = spotify.AUTH_BASE_URL if api_url == spotify.API_BASE_URL else api_url
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError("spotify: auth_url must start with http:// or https://")
    return strip_suffix(url, spotify.TOKEN_ENDPOINT)


def _authorized(request: ApiRequest, token: SpotifyToken) -> ApiRequest:
    return dataclasses.replace(
        request,
        headers=(*request.headers, ("Authorization", token.authorization)),
        secret_params=request.secret_params | {"Authorization"},
    )


def _no_match(endpoint: str) -> NotFound:
    return NotFound("no hit matches", provider="spotify", endpoint=endpoint)


class _Spotify(ClientBase):
    """Construction and every method's flow, shared by the sync and async classes."""

    profile = SPOTIFY
    _classifier: ClassVar[ProviderHook] = spotify.hook

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        cache_manager: CacheManager | None = None,
        rate_limiter: RateLimiter | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        base_url: str | None = None,
        auth_url: str | None = None,
        *,
        redis: RedisLike | None = None,
        http: HttpConfig | HttpPool | None = None,
        retry: RetryPolicy | None = None,
        retry_budget: RetryBudget | Literal[False] | None = None,
        rate: float | None = None,
        capacity: int | None = None,
        stale_if_error: bool = True,
        batch_tracks: bool | None = None,
        accounts_breaker: CircuitBreaker | None = None,
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
        clock: Clock | None = None,
    ) -> None:
        cid, secret = validate.spotify_credentials(client_id, client_secret)
        self._batch = batch_tracks
        self._hit_keys: dict[tuple[str, str, str | None], str] = {}

        def token_pipeline() -> None:
            # Built before the API pipeline: both report gauges as "spotify", the last wins.
            breaker = self._accounts_breaker = accounts_breaker or CircuitBreaker(
                ACCOUNTS_BREAKER,
                failure_threshold=SPOTIFY.failure_threshold,
                timeout=SPOTIFY.timeout,
                success_threshold=SPOTIFY.success_threshold,
                redis=self._link,
                clock=clock,
            )
            pipeline = Pipeline(
                "spotify",
                auth_url_for(auth_url, self._base_url),
                circuit_breaker=breaker,
                retry=retry,
                http=http,
                classifier=spotify.hook,
                registry=registry,
                metrics=metrics,
                stale_if_error=False,
                clock=clock,
            )
            self._tokens = TokenSource(cid, secret, pipeline, self._clock, self._link)

        super().__init__(
            cache_manager=cache_manager,
            rate_limiter=rate_limiter,
            circuit_breaker=circuit_breaker,
            base_url=base_url,
            redis=redis,
            http=http,
            retry=retry,
            retry_budget=retry_budget,
            rate=rate,
            capacity=capacity,
            stale_if_error=stale_if_error,
            registry=registry,
            metrics=metrics,
            clock=clock,
            before_pipeline=token_pipeline,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._base_url}>"  # never the credentials

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

    def _authorized_call(
        self, request: ApiRequest, parse: Callable[[Any], Any] | None, use_cache: bool
    ) -> Flow[Any]:
        """The call with a bearer token; a 401 refreshes the token and retries once. When
        no token can be had, a cached answer is still served (stale only for outages)."""
        request = self._scoped(request)
        pipeline = self._pipeline
        try:
            token = yield from self._tokens.get()
        except TunegateError as exc:
            if use_cache:
                served, value = yield from self._from_cache(request, exc)
                if served:
                    return value
            raise  # bare: the token path's traceback, not a second copy of this frame
        try:
            return (
                yield from pipeline.flow(
                    _authorized(request, token), parse=parse, use_cache=use_cache
                )
            )
        except AuthenticationError as exc:
            if not spotify.should_refresh_token(exc):
                raise
        token = yield from self._tokens.get(rejected=token.access_token)
        return (
            yield from pipeline.flow(_authorized(request, token), parse=parse, use_cache=use_cache)
        )

    def _call(
        self, request: ApiRequest, parse: Callable[[Any], Any] | None, use_cache: bool
    ) -> Flow[Any]:
        try:
            return (yield from self._authorized_call(request, parse, use_cache))
        except NotFound:
            return not_found_value(request)

    # -- the key-first hit -----------------------------------------------------------------

    def _search_key(self, artist: str, title: str, market: str | None) -> str | None:
        """The cache key of a search, remembered by its raw arguments once they validated:
        a warm hit then costs a dict look here and one in the cache, no request building."""
        memo = (artist, title, market)
        try:
            key = self._hit_keys.get(memo)
        except TypeError:  # unhashable input: the full path refuses it
            return None
        if key is None:
            key = self._pipeline.key(
                self._scoped(spotify.search_track_request(artist, title, market=market))
            )
            if key is None:
                return None
            if len(self._hit_keys) >= _HIT_KEYS:
                self._hit_keys.clear()
            self._hit_keys[memo] = key
        return key

    def _warm_search(self, artist: str, title: str, market: str | None) -> Any:
        key = self._search_key(artist, title, market)
        if key is None:
            return MISS
        return self._pipeline.warm(key, spotify.SEARCH_ENDPOINT, None)

    # -- methods ------------------------------------------------------------------------

    def _search_track(
        self, artist: str, title: str, use_cache: bool, market: str | None
    ) -> Flow[SpotifyTrack | None]:
        request = spotify.search_track_request(artist, title, market=market)

        def best(body: Any) -> SpotifyTrack:
            found = spotify.best_match(spotify.parse_search_tracks(body), artist, title)
            if found is None:
                raise _no_match(request.endpoint_template)
            return found

        found: SpotifyTrack | None = yield from self._call(request, best, use_cache)
        return found

    def _search_by_isrc(
        self, isrc: str, use_cache: bool, market: str | None
    ) -> Flow[SpotifyTrack | None]:
        request = spotify.search_isrc_request(isrc, market=market)

        def pick(body: Any) -> SpotifyTrack:
            found = spotify.pick_isrc_match(spotify.parse_search_tracks(body), isrc)
            if found is None:
                raise _no_match(request.endpoint_template)
            return found

        found: SpotifyTrack | None = yield from self._call(request, pick, use_cache)
        return found

    def _get_track(
        self, track_id: str, use_cache: bool, market: str | None
    ) -> Flow[SpotifyTrack | None]:
        request = spotify.track_request(track_id, market=market)
        found: SpotifyTrack | None = yield from self._call(request, spotify.parse_track, use_cache)
        return found

    def _get_artist(self, artist_id: str, use_cache: bool) -> Flow[SpotifyArtist | None]:
        request = spotify.artist_request(artist_id)
        found: SpotifyArtist | None = yield from self._call(
            request, spotify.parse_artist, use_cache
        )
        return found

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
                    request = self._scoped(spotify.track_request(tid, market))
                    hit, value = yield from self._from_cache(request)
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
            values = yield Together(
                [
                    self._call(spotify.track_request(t, market), spotify.parse_track, use)
                    for t in rest
                ]
            )
            found.update(zip(rest, values, strict=True))
        return [found[t] for t in wanted]

    def _batch_fetch(
        self, ids: list[str], market: str | None
    ) -> Flow[dict[str, SpotifyTrack | None]]:
        """``GET /v1/tracks?ids=`` in chunks; every answer (a track, or None for an unknown
        id) is cached under ``spotify:track:{id}``."""
        chunks = []
        for request in spotify.tracks_requests(ids, market):
            chunks.append((yield from self._authorized_call(request, spotify.parse_tracks, False)))
        self._batch = True
        out: dict[str, SpotifyTrack | None] = {}
        for tid, track in zip(ids, spotify.assemble_tracks(ids, chunks), strict=True):
            request = self._scoped(spotify.track_request(tid, market))
            stored = yield from self._pipeline.store(request, track, not_found=track is None)
            out[tid] = None if track is None else stored
        return out


class SpotifyClient(SyncClientMixin, _Spotify):
    """The Spotify Web API for threads: client-credentials token handled for you, every
    call through the cache, rate limiter, circuit breaker and retry policy.

    Args:
        client_id, client_secret: the app's credentials (checked at construction).
        cache_manager, rate_limiter, circuit_breaker: shared components; omitted ones are
            embedded (in-memory cache; 10 requests/s, burst 10; breaker opening after 5
            failures for 60 s, closing after 2 successful probes).
        base_url: the Web API origin; default ``$TUNEGATE_SPOTIFY_API_URL`` or
            ``https://api.spotify.com`` (a trailing ``/v1`` is accepted).
        auth_url: the accounts origin; default ``$TUNEGATE_SPOTIFY_AUTH_URL``, else
            ``https://accounts.spotify.com`` for the official API, else ``base_url``.
        redis: share the token (and embedded components) with every worker; default: the
            cache's Redis, when it has one.
        http, retry: pool/timeout settings, retry policy.
        retry_budget: retries at most a share of calls (default ``RetryBudget()``: 20% over
            10 s, at least 1 a second), so an outage does not multiply the load; False: none.
        rate, capacity: this provider's bucket in the limiter (default 10/s, burst 10).
        stale_if_error: serve an expired cached answer when Spotify fails.
        batch_tracks: whether the app may use ``GET /v1/tracks?ids=`` (None: try it once).
        registry, metrics, clock: Prometheus registry, metrics switch, clock for tests.
    """

    def search_track(
        self, artist: str, title: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """The search hit that best matches ``artist`` and ``title`` (ranked by normalised
        similarity, see ``docs/providers.md``), or None when no hit is close enough."""
        if use_cache:
            found = self._warm_search(artist, title, market)
            if found is not MISS:
                return found  # type: ignore[no-any-return]
        return drive(self._search_track(artist, title, use_cache, market))

    def search_by_isrc(
        self, isrc: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """The track carrying ``isrc`` (hyphens and case are normalised), or None."""
        return drive(self._search_by_isrc(isrc, use_cache, market))

    def get_track(
        self, track_id: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """The track with this id (or ``spotify:track:`` URI, or open.spotify.com link)."""
        return drive(self._get_track(track_id, use_cache, market))

    def get_tracks(
        self, ids: Iterable[str], *, use_cache: bool = True, market: str | None = None
    ) -> list[SpotifyTrack | None]:
        """The tracks for ``ids`` in the same order, None for unknown ids; cached ones are
        not asked for, the rest in batches of 50 or one call per id where batches are
        refused."""
        return drive(self._get_tracks(ids, use_cache, market))

    def get_artist(self, artist_id: str, *, use_cache: bool = True) -> SpotifyArtist | None:
        """The artist with this id, or None."""
        return drive(self._get_artist(artist_id, use_cache))


class AsyncSpotifyClient(AsyncClientMixin, _Spotify):
    """:class:`SpotifyClient` for asyncio: the same constructor and methods, awaited.
    Close it with ``await client.aclose()`` or use ``async with``."""

    async def search_track(
        self, artist: str, title: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """See :meth:`SpotifyClient.search_track`."""
        if use_cache:
            found = self._warm_search(artist, title, market)
            if found is not MISS:
                return found  # type: ignore[no-any-return]
        return await adrive(self._search_track(artist, title, use_cache, market))

    async def search_by_isrc(
        self, isrc: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """See :meth:`SpotifyClient.search_by_isrc`."""
        return await adrive(self._search_by_isrc(isrc, use_cache, market))

    async def get_track(
        self, track_id: str, *, use_cache: bool = True, market: str | None = None
    ) -> SpotifyTrack | None:
        """See :meth:`SpotifyClient.get_track`."""
        return await adrive(self._get_track(track_id, use_cache, market))

    async def get_tracks(
        self, ids: Iterable[str], *, use_cache: bool = True, market: str | None = None
    ) -> list[SpotifyTrack | None]:
        """See :meth:`SpotifyClient.get_tracks` (ids fetched one by one run concurrently)."""
        return await adrive(self._get_tracks(ids, use_cache, market))

    async def get_artist(self, artist_id: str, *, use_cache: bool = True) -> SpotifyArtist | None:
        """See :meth:`SpotifyClient.get_artist`."""
        return await adrive(self._get_artist(artist_id, use_cache))
