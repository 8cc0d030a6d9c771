"""Last.fm API 2.0 clients: :class:`LastFmClient` (threads) and :class:`AsyncLastFmClient`
(asyncio), one implementation.

::

    lastfm = LastFmClient(api_key="...")
    tags = lastfm.get_track_tags("Deadmau5", "Strobe")   # names, highest count first
    print(", ".join(tags[:5]))
"""

from __future__ import annotations

from collections.abc import Callable
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
    adrive,
    drive,
    fetch,
)
from tunegate.providers import ApiRequest, lastfm, validate
from tunegate.providers.lastfm import LastFmSimilarArtist
from tunegate.providers.types import (
    LastFmArtistInfo,
    LastFmCorrection,
    LastFmTrackInfo,
    LastFmTrackMatch,
)
from tunegate.ratelimit import RateLimiter

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["LASTFM", "AsyncLastFmClient", "LastFmClient"]

LASTFM = Profile(
    name="lastfm",
    rate=5.0,
    capacity=5,
    failure_threshold=5,
    timeout=60.0,
    official_url=lastfm.BASE_URL,
    url_env="TUNEGATE_LASTFM_URL",
    suffix="/2.0",
)


class _LastFm(ClientBase):
    """Construction and every method's flow, shared by the sync and async classes."""

    profile = LASTFM
    _classifier: ClassVar[ProviderHook] = lastfm.hook

    def __init__(
        self,
        api_key: str,
        cache_manager: CacheManager | None = None,
        rate_limiter: RateLimiter | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        base_url: str | None = None,
        *,
        redis: RedisLike | None = None,
        http: HttpConfig | HttpPool | None = None,
        retry: RetryPolicy | None = None,
        retry_budget: RetryBudget | Literal[False] | None = None,
        rate: float | None = None,
        capacity: int | None = None,
        stale_if_error: bool = True,
        registry: CollectorRegistry | None = None,
        metrics: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self._api_key = validate.lastfm_api_key(api_key)
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
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._base_url}>"  # never the key

    def _get(self, request: ApiRequest, parse: Callable[[Any], Any], use_cache: bool) -> Flow[Any]:
        return (yield from fetch(self._pipeline, self._scoped(request), parse, use_cache))

    # -- methods ------------------------------------------------------------------------

    def _get_track_tags(
        self, artist: str, track: str, autocorrect: bool, use_cache: bool
    ) -> Flow[list[str]]:
        request = lastfm.track_top_tags_request(
            artist, track, api_key=self._api_key, autocorrect=autocorrect
        )
        tags: list[str] = yield from self._get(request, lastfm.parse_top_tags, use_cache)
        return list(tags)

    def _get_track_tag_counts(
        self, artist: str, track: str, autocorrect: bool, use_cache: bool
    ) -> Flow[list[tuple[str, int]]]:
        request = lastfm.track_top_tags_request(
            artist, track, api_key=self._api_key, autocorrect=autocorrect, counts=True
        )
        pairs: list[Any] = yield from self._get(request, lastfm.parse_top_tag_counts, use_cache)
        return [(str(name), int(count)) for name, count in pairs]

    def _get_artist_tags(self, artist: str, autocorrect: bool, use_cache: bool) -> Flow[list[str]]:
        request = lastfm.artist_top_tags_request(
            artist, api_key=self._api_key, autocorrect=autocorrect
        )
        tags: list[str] = yield from self._get(request, _artist_tags, use_cache)
        return list(tags)

    def _get_track_info(
        self, artist: str, track: str, autocorrect: bool, use_cache: bool
    ) -> Flow[LastFmTrackInfo | None]:
        request = lastfm.track_info_request(
            artist, track, api_key=self._api_key, autocorrect=autocorrect
        )
        info: LastFmTrackInfo | None = yield from self._get(
            request, lastfm.parse_track_info, use_cache
        )
        return info

    def _get_correction(
        self, artist: str, track: str, use_cache: bool
    ) -> Flow[LastFmCorrection | None]:
        request = lastfm.track_correction_request(artist, track, api_key=self._api_key)
        found: LastFmCorrection | None = yield from self._get(request, _correction, use_cache)
        return found

    def _get_artist_info(
        self, artist: str, autocorrect: bool, use_cache: bool
    ) -> Flow[LastFmArtistInfo | None]:
        request = lastfm.artist_info_request(artist, api_key=self._api_key, autocorrect=autocorrect)
        info: LastFmArtistInfo | None = yield from self._get(
            request, lastfm.parse_artist_info, use_cache
        )
        return info

    def _search_tracks(
        self, track: str, artist: str | None, limit: int, use_cache: bool
    ) -> Flow[list[LastFmTrackMatch]]:
        request = lastfm.track_search_request(track, artist, api_key=self._api_key, limit=limit)
        hits: list[LastFmTrackMatch] = yield from self._get(
            request, lastfm.parse_track_search, use_cache
        )
        return list(hits)

    def _get_similar_artists(
        self, artist: str, limit: int, autocorrect: bool, use_cache: bool
    ) -> Flow[list[LastFmSimilarArtist]]:
        request = lastfm.artist_similar_request(
            artist, api_key=self._api_key, limit=limit, autocorrect=autocorrect
        )
        similar: list[LastFmSimilarArtist] = yield from self._get(
            request, lastfm.parse_similar_artists, use_cache
        )
        return list(similar)


def _artist_tags(body: Any) -> list[str]:
    return lastfm.parse_top_tags(body, "artist.getTopTags")


def _correction(body: Any) -> LastFmCorrection | None:
    found = lastfm.parse_correction(body)
    # For input it does not know, Last.fm echoes the names back with empty URLs.
    return None if found is None or found["url"] is None else found


class LastFmClient(SyncClientMixin, _LastFm):
    """Last.fm for threads, through the cache, rate limiter, circuit breaker and retry.

    Args:
        api_key: the API key (sent as a parameter marked secret: never in a key, a log, a
            message or a stat).
        cache_manager, rate_limiter, circuit_breaker: shared components; omitted ones are
            embedded (in-memory cache; 5 requests/s, burst 5; breaker opening after 5
            failures for 60 s, closing after 2 successful probes).
        base_url: the service origin; default ``$TUNEGATE_LASTFM_URL`` or
            ``https://ws.audioscrobbler.com`` (a trailing ``/2.0/`` is accepted).
        redis, http, retry, retry_budget, rate, capacity, stale_if_error, registry,
            metrics, clock: as for :class:`~tunegate.clients.spotify.SpotifyClient`.

    Last.fm's errors inside HTTP 200 answers are read: 6 (not found) gives None or [],
    10 and 26 raise AuthenticationError, 11 and 16 are retried as transient, 29 as
    RateLimited.
    """

    def get_track_tags(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[str]:
        """The track's top tag names, highest count first ([] for an unknown track)."""
        return drive(self._get_track_tags(artist, track, autocorrect, use_cache))

    def get_track_tag_counts(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[tuple[str, int]]:
        """The track's top tags as ``(name, count)`` pairs, highest count first (Last.fm's
        count is a weight from 0 to 100, handy for weighting genres); [] when unknown."""
        return drive(self._get_track_tag_counts(artist, track, autocorrect, use_cache))

    def get_artist_tags(
        self, artist: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[str]:
        """The artist's top tag names, highest count first ([] for an unknown artist)."""
        return drive(self._get_artist_tags(artist, autocorrect, use_cache))

    def get_artist_info(
        self, artist: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> LastFmArtistInfo | None:
        """Listeners, play count, tags, similar artists and biography of an artist, or None."""
        return drive(self._get_artist_info(artist, autocorrect, use_cache))

    def search_tracks(
        self, track: str, artist: str | None = None, *, limit: int = 10, use_cache: bool = True
    ) -> list[LastFmTrackMatch]:
        """``track.search``: up to ``limit`` (1 to 50) hits in Last.fm's order, each with its
        artist, listeners and MBID when known; [] when none. Unranked: Last.fm's own order."""
        return drive(self._search_tracks(track, artist, limit, use_cache))

    def get_track_info(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> LastFmTrackInfo | None:
        """Listeners, play count, duration, album, tags and wiki of a track, or None."""
        return drive(self._get_track_info(artist, track, autocorrect, use_cache))

    def get_correction(
        self, artist: str, track: str, *, use_cache: bool = True
    ) -> LastFmCorrection | None:
        """The canonical artist and track names Last.fm knows, or None."""
        return drive(self._get_correction(artist, track, use_cache))

    def get_similar_artists(
        self,
        artist: str,
        *,
        limit: int = lastfm.SIMILAR_LIMIT_DEFAULT,
        autocorrect: bool = True,
        use_cache: bool = True,
    ) -> list[LastFmSimilarArtist]:
        """``artist.getSimilar``: up to ``limit`` (1 to 250) similar artists, nearest first,
        each with its ``match`` score (0 to 1); [] for an unknown artist."""
        return drive(self._get_similar_artists(artist, limit, autocorrect, use_cache))


class AsyncLastFmClient(AsyncClientMixin, _LastFm):
    """:class:`LastFmClient` for asyncio: the same constructor and methods, awaited."""

    async def get_track_tags(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[str]:
        """See :meth:`LastFmClient.get_track_tags`."""
        return await adrive(self._get_track_tags(artist, track, autocorrect, use_cache))

    async def get_track_tag_counts(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[tuple[str, int]]:
        """See :meth:`LastFmClient.get_track_tag_counts`."""
        return await adrive(self._get_track_tag_counts(artist, track, autocorrect, use_cache))

    async def get_artist_tags(
        self, artist: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[str]:
        """See :meth:`LastFmClient.get_artist_tags`."""
        return await adrive(self._get_artist_tags(artist, autocorrect, use_cache))

    async def get_artist_info(
        self, artist: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> LastFmArtistInfo | None:
        """See :meth:`LastFmClient.get_artist_info`."""
        return await adrive(self._get_artist_info(artist, autocorrect, use_cache))

    async def search_tracks(
        self, track: str, artist: str | None = None, *, limit: int = 10, use_cache: bool = True
    ) -> list[LastFmTrackMatch]:
        """See :meth:`LastFmClient.search_tracks`."""
        return await adrive(self._search_tracks(track, artist, limit, use_cache))

    async def get_track_info(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> LastFmTrackInfo | None:
        """See :meth:`LastFmClient.get_track_info`."""
        return await adrive(self._get_track_info(artist, track, autocorrect, use_cache))

    async def get_correction(
        self, artist: str, track: str, *, use_cache: bool = True
    ) -> LastFmCorrection | None:
        """See :meth:`LastFmClient.get_correction`."""
        return await adrive(self._get_correction(artist, track, use_cache))

    async def get_similar_artists(
        self,
        artist: str,
        *,
        limit: int = lastfm.SIMILAR_LIMIT_DEFAULT,
        autocorrect: bool = True,
        use_cache: bool = True,
    ) -> list[LastFmSimilarArtist]:
        """See :meth:`LastFmClient.get_similar_artists`."""
        return await adrive(self._get_similar_artists(artist, limit, autocorrect, use_cache))
