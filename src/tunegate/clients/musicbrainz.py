"""MusicBrainz WS/2 clients: :class:`MusicBrainzClient` (threads) and
:class:`AsyncMusicBrainzClient` (asyncio), one implementation.

::

    mb = MusicBrainzClient(user_agent="MyApp/1.0 ( me@example.com )")
    recording = mb.lookup_isrc("USIR20400500")
    print(recording["title"], recording["id"])
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from tunegate._clock import Clock, SystemClock
from tunegate._http import HttpConfig, HttpPool
from tunegate._http import user_agent as agent_header
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
    base_url_for,
    drive,
    fetch,
    link_for,
)
from tunegate.clients._extra import pick_inc
from tunegate.exceptions import NotFound
from tunegate.providers import ApiRequest, musicbrainz, validate
from tunegate.providers.types import MusicBrainzRecording, MusicBrainzRelease
from tunegate.ratelimit import RateLimiter

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "MUSICBRAINZ",
    "AsyncMusicBrainzClient",
    "MusicBrainzClient",
    "official_limiter",
    "takes_official_limiter",
]

MUSICBRAINZ = Profile(
    name="musicbrainz",
    rate=1.0,
    capacity=1,
    failure_threshold=3,
    timeout=30.0,
    official_url=musicbrainz.BASE_URL,
    url_env="TUNEGATE_MUSICBRAINZ_URL",
    suffix="/ws/2",
)


Inc = str | Iterable[str]


class _OfficialLimiter:
    """The process's one limiter for musicbrainz.org. Its 1 request/s rule is per source IP,
    so every client built without a limiter of its own (and without Redis, which shares
    buckets between processes anyway) takes its turn in this one bucket."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limiter: RateLimiter | None = None

    def get(self) -> RateLimiter:
        with self._lock:
            if self._limiter is None:
                self._limiter = RateLimiter()
            return self._limiter

    def forget(self) -> None:
        # A forked child must not inherit a lock another thread may hold: start over.
        self._lock = threading.Lock()
        self._limiter = None


_official = _OfficialLimiter()
os.register_at_fork(after_in_child=_official.forget)


def official_limiter() -> RateLimiter:
    """The limiter every default :class:`MusicBrainzClient` of this process shares when it
    talks to musicbrainz.org without Redis (see ``docs/clients.md``)."""
    return _official.get()


def takes_official_limiter(
    base_url: str | None, *, allow_fast: bool, shared: bool, clock: Clock | None
) -> bool:
    """Whether a client built without a limiter of its own takes :func:`official_limiter`:
    against musicbrainz.org (base URL or ``$TUNEGATE_MUSICBRAINZ_URL``), without
    ``allow_fast``, without Redis (``shared``: Redis buckets are shared already), on the
    system clock (a test's fake clock keeps a bucket of its own)."""
    return (
        not allow_fast
        and not shared
        and (clock is None or type(clock) is SystemClock)
        and musicbrainz.is_official_host(base_url_for(base_url, MUSICBRAINZ))
    )


class _MusicBrainz(ClientBase):
    """Construction and every method's flow, shared by the sync and async classes."""

    profile = MUSICBRAINZ
    _classifier: ClassVar[ProviderHook] = musicbrainz.hook

    def __init__(
        self,
        user_agent: str,
        cache_manager: CacheManager | None = None,
        rate_limiter: RateLimiter | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        base_url: str | None = None,
        *,
        allow_fast: bool = False,
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
        agent = validate.musicbrainz_user_agent(user_agent)
        self.user_agent = agent
        # Sent on every request, whatever pool is in use ("App/1.0 ( contact ) tunegate/x").
        self._headers = (("User-Agent", agent_header(agent)),)
        if http is None or (isinstance(http, HttpConfig) and http.app is None):
            http = dataclasses.replace(http or HttpConfig(), app=agent)

        def check(url: str, rate: float, capacity: int) -> None:
            musicbrainz.check_rate(url, rate, allow_fast, capacity=capacity)

        self._allow_fast = allow_fast
        shared = redis is not None or (
            cache_manager is not None and link_for(None, cache_manager) is not None
        )
        if rate_limiter is None and takes_official_limiter(
            base_url, allow_fast=allow_fast, shared=shared, clock=clock
        ):
            rate_limiter = official_limiter()

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
            check_rate=check,
        )
        self._bucket = self._limiter.buckets[MUSICBRAINZ.name]
        self._limits = (self._bucket.rate, self._bucket.capacity)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._base_url}>"

    def _identified(self, request: ApiRequest) -> ApiRequest:
        """``request`` with the User-Agent and this client's cache scope, once the limits
        still hold (a shared limiter may have been reconfigured since construction)."""
        bucket = self._bucket
        if (bucket.rate, bucket.capacity) != self._limits:
            musicbrainz.check_rate(
                self._base_url, bucket.rate, self._allow_fast, capacity=bucket.capacity
            )
            self._limits = (bucket.rate, bucket.capacity)
        request = dataclasses.replace(request, headers=(*request.headers, *self._headers))
        return self._scoped(request)

    # -- methods ------------------------------------------------------------------------

    def _lookup_isrc_recordings(
        self, isrc: str, inc: Inc, use_cache: bool
    ) -> Flow[list[MusicBrainzRecording]]:
        request = self._identified(musicbrainz.lookup_isrc_request(isrc, inc))
        found = yield from fetch(self._pipeline, request, musicbrainz.parse_isrc, use_cache)
        return list(found) if found is not None else []

    def _lookup_isrc(
        self, isrc: str, inc: Inc, use_cache: bool
    ) -> Flow[MusicBrainzRecording | None]:
        recordings = yield from self._lookup_isrc_recordings(isrc, inc, use_cache)
        return musicbrainz.pick_isrc_recording(recordings)

    def _search_recording(
        self, artist: str, title: str, use_cache: bool
    ) -> Flow[MusicBrainzRecording | None]:
        request = self._identified(musicbrainz.search_recording_request(artist, title))

        def best(body: Any) -> MusicBrainzRecording:
            hits = musicbrainz.parse_search_recordings(body)
            found = musicbrainz.best_recording(hits, artist, title)
            if found is None:
                raise NotFound("no hit matches", provider="musicbrainz")
            return found

        found: MusicBrainzRecording | None = yield from fetch(
            self._pipeline, request, best, use_cache
        )
        return found

    def _get_recording(
        self, mbid: str, inc: Inc, use_cache: bool
    ) -> Flow[MusicBrainzRecording | None]:
        request = self._identified(musicbrainz.get_recording_request(mbid, inc))
        found: MusicBrainzRecording | None = yield from fetch(
            self._pipeline, request, musicbrainz.parse_recording, use_cache
        )
        return found

    def _get_release(self, mbid: str, inc: Inc, use_cache: bool) -> Flow[MusicBrainzRelease | None]:
        request = self._identified(musicbrainz.get_release_request(mbid, inc))
        found: MusicBrainzRelease | None = yield from fetch(
            self._pipeline, request, musicbrainz.parse_release, use_cache
        )
        return found

    def _search_recordings(
        self, artist: str, title: str, limit: int, use_cache: bool
    ) -> Flow[list[MusicBrainzRecording]]:
        request = self._identified(musicbrainz.search_recordings_request(artist, title, limit))
        hits: list[MusicBrainzRecording] | None = yield from fetch(
            self._pipeline, request, musicbrainz.parse_search_recordings, use_cache
        )
        return list(hits) if hits is not None else []


class MusicBrainzClient(SyncClientMixin, _MusicBrainz):
    """MusicBrainz for threads, through the cache, rate limiter, circuit breaker and retry.

    Args:
        user_agent: required, ``"AppName/1.0 ( contact@example.com )"`` (checked here:
            MusicBrainz throttles or refuses anonymous and generic agents).
        cache_manager, rate_limiter, circuit_breaker: shared components; omitted ones are
            embedded (in-memory cache; 1 request/s, burst 1, in one bucket shared by every
            such client of the process when it talks to musicbrainz.org without Redis;
            breaker opening after 3 failures for 30 s, closing after 2 successful probes).
        base_url: the service origin; default ``$TUNEGATE_MUSICBRAINZ_URL`` or
            ``https://musicbrainz.org`` (a trailing ``/ws/2`` is accepted).
        rate, capacity: this provider's bucket in the limiter. More than 1/s or a burst
            above 1 against musicbrainz.org (given here, held by the limiter given, or set
            on it later) raises ConfigurationError unless ``allow_fast=True`` (an
            arrangement with MetaBrainz); a mirror at another ``base_url`` may go faster.
        redis, http, retry, retry_budget, stale_if_error, registry, metrics, clock: as for
            :class:`~tunegate.clients.spotify.SpotifyClient`.
    """

    def lookup_isrc(
        self, isrc: str, *, inc: Inc = musicbrainz.DEFAULT_ISRC_INC, use_cache: bool = True
    ) -> MusicBrainzRecording | None:
        """The recording with this ISRC (of several, the earliest released non-video one),
        or None when MusicBrainz knows no recording with it."""
        return drive(self._lookup_isrc(isrc, inc, use_cache))

    def lookup_isrc_recordings(
        self, isrc: str, *, inc: Inc = musicbrainz.DEFAULT_ISRC_INC, use_cache: bool = True
    ) -> list[MusicBrainzRecording]:
        """Every recording carrying this ISRC, in MusicBrainz's order ([] when none)."""
        return drive(self._lookup_isrc_recordings(isrc, inc, use_cache))

    def search_recording(
        self, artist: str, title: str, *, use_cache: bool = True
    ) -> MusicBrainzRecording | None:
        """The search hit that best matches ``artist`` and ``title`` (same ranking rule as
        Spotify's), or None. User text is escaped: Lucene syntax in it is only text."""
        return drive(self._search_recording(artist, title, use_cache))

    def get_recording(
        self, mbid: str, *, inc: Inc = musicbrainz.DEFAULT_RECORDING_INC, use_cache: bool = True
    ) -> MusicBrainzRecording | None:
        """The recording with this MBID (any UUID spelling), or None."""
        return drive(self._get_recording(mbid, inc, use_cache))

    def get_release(
        self,
        mbid: str,
        *,
        inc: Inc = musicbrainz.DEFAULT_RELEASE_INC,
        includes: Inc | None = None,
        use_cache: bool = True,
    ) -> MusicBrainzRelease | None:
        """The release with this MBID, or None: by default with its artist credit, labels,
        release group and media with their tracks (``inc`` or its other name ``includes``
        chooses; an inc the release resource does not know is an InvalidInput before any
        request)."""
        chosen = pick_inc(inc, includes, musicbrainz.DEFAULT_RELEASE_INC)
        return drive(self._get_release(mbid, chosen, use_cache))

    def search_recordings(
        self, artist: str, title: str, *, limit: int = 10, use_cache: bool = True
    ) -> list[MusicBrainzRecording]:
        """Every hit of the search :meth:`search_recording` makes (up to ``limit``, 1 to
        100), in MusicBrainz's order, each with its ``score`` (0 to 100); [] when none."""
        return drive(self._search_recordings(artist, title, limit, use_cache))


class AsyncMusicBrainzClient(AsyncClientMixin, _MusicBrainz):
    """:class:`MusicBrainzClient` for asyncio: the same constructor and methods, awaited."""

    async def lookup_isrc(
        self, isrc: str, *, inc: Inc = musicbrainz.DEFAULT_ISRC_INC, use_cache: bool = True
    ) -> MusicBrainzRecording | None:
        """See :meth:`MusicBrainzClient.lookup_isrc`."""
        return await adrive(self._lookup_isrc(isrc, inc, use_cache))

    async def lookup_isrc_recordings(
        self, isrc: str, *, inc: Inc = musicbrainz.DEFAULT_ISRC_INC, use_cache: bool = True
    ) -> list[MusicBrainzRecording]:
        """See :meth:`MusicBrainzClient.lookup_isrc_recordings`."""
        return await adrive(self._lookup_isrc_recordings(isrc, inc, use_cache))

    async def search_recording(
        self, artist: str, title: str, *, use_cache: bool = True
    ) -> MusicBrainzRecording | None:
        """See :meth:`MusicBrainzClient.search_recording`."""
        return await adrive(self._search_recording(artist, title, use_cache))

    async def get_recording(
        self, mbid: str, *, inc: Inc = musicbrainz.DEFAULT_RECORDING_INC, use_cache: bool = True
    ) -> MusicBrainzRecording | None:
        """See :meth:`MusicBrainzClient.get_recording`."""
        return await adrive(self._get_recording(mbid, inc, use_cache))

    async def get_release(
        self,
        mbid: str,
        *,
        inc: Inc = musicbrainz.DEFAULT_RELEASE_INC,
        includes: Inc | None = None,
        use_cache: bool = True,
    ) -> MusicBrainzRelease | None:
        """See :meth:`MusicBrainzClient.get_release`."""
        chosen = pick_inc(inc, includes, musicbrainz.DEFAULT_RELEASE_INC)
        return await adrive(self._get_release(mbid, chosen, use_cache))

    async def search_recordings(
        self, artist: str, title: str, *, limit: int = 10, use_cache: bool = True
    ) -> list[MusicBrainzRecording]:
        """See :meth:`MusicBrainzClient.search_recordings`."""
        return await adrive(self._search_recordings(artist, title, limit, use_cache))
