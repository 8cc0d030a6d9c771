"""Last.fm API 2.0 clients: :class:`LastFmClient` (threads) and :class:`AsyncLastFmClient`
(asyncio), one implementation.

::

    lastfm = LastFmClient(api_key="...")
    tags = lastfm.get_track_tags("Deadmau5", "Strobe")   # names, highest count first
    print(", ".join(tags[:5]))
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, Unpack

from tunegate._policy.classify import ProviderHook
from tunegate.clients._base import (
    AsyncClientMixin,
    Changes,
    ClientBase,
    ClientOptions,
    Op,
    SyncClientMixin,
    options_of,
)
from tunegate.providers import lastfm, validate
from tunegate.providers.lastfm import LastFmSimilarArtist
from tunegate.providers.spec import LASTFM
from tunegate.providers.types import (
    LastFmArtistInfo,
    LastFmCorrection,
    LastFmTrackInfo,
    LastFmTrackMatch,
)

__all__ = ["LASTFM", "AsyncLastFmClient", "LastFmClient"]


def _artist_tags(args: tuple[Any, ...], body: Any) -> list[str]:
    return lastfm.parse_top_tags(body, "artist.getTopTags")


def _correction(args: tuple[Any, ...], body: Any) -> LastFmCorrection | None:
    found = lastfm.parse_correction(body)
    # For input it does not know, Last.fm echoes the names back with empty URLs.
    return None if found is None or found["url"] is None else found


def _pairs(pairs: Any) -> list[tuple[str, int]]:
    return [(str(name), int(count)) for name, count in pairs]


# ``c._api_key``: a secret parameter, never part of a cache key.
_TRACK_TAGS: Op[list[str]] = Op(
    lambda c, artist, track, autocorrect: lastfm.track_top_tags_request(
        artist, track, api_key=c._api_key, autocorrect=autocorrect
    ),
    lambda args, body: lastfm.parse_top_tags(body),
    list,
)
_TRACK_TAG_COUNTS: Op[list[tuple[str, int]]] = Op(
    lambda c, artist, track, autocorrect: lastfm.track_top_tags_request(
        artist, track, api_key=c._api_key, autocorrect=autocorrect, counts=True
    ),
    lambda args, body: lastfm.parse_top_tag_counts(body),
    _pairs,
)
_ARTIST_TAGS: Op[list[str]] = Op(
    lambda c, artist, autocorrect: lastfm.artist_top_tags_request(
        artist, api_key=c._api_key, autocorrect=autocorrect
    ),
    _artist_tags,
    list,
)
_TRACK_INFO: Op[LastFmTrackInfo | None] = Op(
    lambda c, artist, track, autocorrect: lastfm.track_info_request(
        artist, track, api_key=c._api_key, autocorrect=autocorrect
    ),
    lambda args, body: lastfm.parse_track_info(body),
)
_CORRECTION: Op[LastFmCorrection | None] = Op(
    lambda c, artist, track: lastfm.track_correction_request(artist, track, api_key=c._api_key),
    _correction,
)
_ARTIST_INFO: Op[LastFmArtistInfo | None] = Op(
    lambda c, artist, autocorrect: lastfm.artist_info_request(
        artist, api_key=c._api_key, autocorrect=autocorrect
    ),
    lambda args, body: lastfm.parse_artist_info(body),
)
_SEARCH: Op[list[LastFmTrackMatch]] = Op(
    lambda c, track, artist, limit: lastfm.track_search_request(
        track, artist, api_key=c._api_key, limit=limit
    ),
    lambda args, body: lastfm.parse_track_search(body),
    list,
)


class _LastFm(ClientBase):
    """Construction, shared by the sync and async classes (the methods are :class:`Op`s)."""

    spec = LASTFM
    _classifier: ClassVar[ProviderHook] = lastfm.hook

    def __init__(
        self, api_key: str, *, options: ClientOptions | None = None, **changes: Unpack[Changes]
    ) -> None:
        self._api_key = validate.lastfm_api_key(api_key)
        super().__init__(options_of(ClientOptions, options, changes))

    def _credentials(self) -> tuple[str, ...]:
        return (self._api_key,)

    def with_options(self, **changes: Unpack[Changes]) -> Self:
        """A new client with these options changed (see :class:`ClientOptions`), sharing
        this one's cache, limiter, breaker, Redis and connection pool."""
        return self._with(changes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._base_url}>"  # never the key


class LastFmClient(SyncClientMixin, _LastFm):
    """Last.fm for threads, through the cache, rate limiter, circuit breaker and retry.

    Args:
        api_key: the API key (sent as a parameter marked secret: never in a key, a log, a
            message or a stat).
        options: a :class:`ClientOptions`; its fields may also be given as keywords,
            which win. Omitted components are embedded from
            :data:`~tunegate.providers.spec.LASTFM` (in-memory cache; 5 requests/s, burst
            5; breaker opening after 5 failures for 60 s, closing after 2 probes).

    Last.fm's errors inside HTTP 200 answers are read: 6 (not found) gives None or [],
    10 and 26 raise AuthenticationError, 11 and 16 are retried as transient, 29 as
    RateLimited.
    """

    def get_track_tags(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[str]:
        """The track's top tag names, highest count first ([] for an unknown track)."""
        return self._run(_TRACK_TAGS, (artist, track, autocorrect), use_cache)

    def get_track_tag_counts(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[tuple[str, int]]:
        """The track's top tags as ``(name, count)`` pairs, highest count first (Last.fm's
        count is a weight from 0 to 100, handy for weighting genres); [] when unknown."""
        return self._run(_TRACK_TAG_COUNTS, (artist, track, autocorrect), use_cache)

    def get_artist_tags(
        self, artist: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[str]:
        """The artist's top tag names, highest count first ([] for an unknown artist)."""
        return self._run(_ARTIST_TAGS, (artist, autocorrect), use_cache)

    def get_artist_info(
        self, artist: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> LastFmArtistInfo | None:
        """Listeners, play count, tags, similar artists and biography of an artist, or None."""
        return self._run(_ARTIST_INFO, (artist, autocorrect), use_cache)

    def search_tracks(
        self, track: str, artist: str | None = None, *, limit: int = 10, use_cache: bool = True
    ) -> list[LastFmTrackMatch]:
        """``track.search``: up to ``limit`` (1 to 50) hits in Last.fm's order, each with its
        artist, listeners and MBID when known; [] when none. Unranked: Last.fm's own order."""
        return self._run(_SEARCH, (track, artist, limit), use_cache)

    def get_track_info(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> LastFmTrackInfo | None:
        """Listeners, play count, duration, album, tags and wiki of a track, or None."""
        return self._run(_TRACK_INFO, (artist, track, autocorrect), use_cache)

    def get_correction(
        self, artist: str, track: str, *, use_cache: bool = True
    ) -> LastFmCorrection | None:
        """The canonical artist and track names Last.fm knows, or None."""
        return self._run(_CORRECTION, (artist, track), use_cache)

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
        return self._run(_SIMILAR, (artist, limit, autocorrect), use_cache)


class AsyncLastFmClient(AsyncClientMixin, _LastFm):
    """:class:`LastFmClient` for asyncio: the same constructor and methods, awaited."""

    async def get_track_tags(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[str]:
        """See :meth:`LastFmClient.get_track_tags`."""
        return await self._run(_TRACK_TAGS, (artist, track, autocorrect), use_cache)

    async def get_track_tag_counts(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[tuple[str, int]]:
        """See :meth:`LastFmClient.get_track_tag_counts`."""
        return await self._run(_TRACK_TAG_COUNTS, (artist, track, autocorrect), use_cache)

    async def get_artist_tags(
        self, artist: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> list[str]:
        """See :meth:`LastFmClient.get_artist_tags`."""
        return await self._run(_ARTIST_TAGS, (artist, autocorrect), use_cache)

    async def get_artist_info(
        self, artist: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> LastFmArtistInfo | None:
        """See :meth:`LastFmClient.get_artist_info`."""
        return await self._run(_ARTIST_INFO, (artist, autocorrect), use_cache)

    async def search_tracks(
        self, track: str, artist: str | None = None, *, limit: int = 10, use_cache: bool = True
    ) -> list[LastFmTrackMatch]:
        """See :meth:`LastFmClient.search_tracks`."""
        return await self._run(_SEARCH, (track, artist, limit), use_cache)

    async def get_track_info(
        self, artist: str, track: str, *, autocorrect: bool = True, use_cache: bool = True
    ) -> LastFmTrackInfo | None:
        """See :meth:`LastFmClient.get_track_info`."""
        return await self._run(_TRACK_INFO, (artist, track, autocorrect), use_cache)

    async def get_correction(
        self, artist: str, track: str, *, use_cache: bool = True
    ) -> LastFmCorrection | None:
        """See :meth:`LastFmClient.get_correction`."""
        return await self._run(_CORRECTION, (artist, track), use_cache)

    async def get_similar_artists(
        self,
        artist: str,
        *,
        limit: int = lastfm.SIMILAR_LIMIT_DEFAULT,
        autocorrect: bool = True,
        use_cache: bool = True,
    ) -> list[LastFmSimilarArtist]:
        """See :meth:`LastFmClient.get_similar_artists`."""
        return await self._run(_SIMILAR, (artist, limit, autocorrect), use_cache)


# The design's get_similar_artists (issue 11), an Op like the others.
_SIMILAR: Op[list[LastFmSimilarArtist]] = Op(
    lambda c, artist, limit, autocorrect: lastfm.artist_similar_request(
        artist, api_key=c._api_key, limit=limit, autocorrect=autocorrect
    ),
    lambda args, body: lastfm.parse_similar_artists(body),
    list,
)
