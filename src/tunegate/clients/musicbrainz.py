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
from dataclasses import dataclass
from typing import Any, ClassVar, Self, Unpack

from tunegate._clock import Clock, SystemClock
from tunegate._drive import adrive, drive
from tunegate._http import HttpConfig
from tunegate._http import user_agent as agent_header
from tunegate._policy.classify import Expect, ProviderHook
from tunegate.clients import _isrc_batch
from tunegate.clients._base import (
    AsyncClientMixin,
    Changes,
    ClientBase,
    ClientOptions,
    Flow,
    Op,
    Prepared,
    SyncClientMixin,
    base_url_for,
    link_for,
    options_of,
    spec_http,
)
from tunegate.clients._extra import pick_inc
from tunegate.exceptions import NotFound
from tunegate.pipeline import MISS
from tunegate.providers import ApiRequest, musicbrainz, validate
from tunegate.providers.spec import MUSICBRAINZ
from tunegate.providers.types import MusicBrainzRecording, MusicBrainzRelease
from tunegate.ratelimit import RateLimiter

__all__ = [
    "MUSICBRAINZ",
    "AsyncMusicBrainzClient",
    "MusicBrainzClient",
    "MusicBrainzOptions",
    "official_limiter",
    "takes_official_limiter",
]


Inc = str | Iterable[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class MusicBrainzOptions(ClientOptions):
    """:class:`ClientOptions` and MusicBrainz's own.

    Attributes:
        allow_fast: permit more than 1 request/s, or a burst above 1, against
            musicbrainz.org (an arrangement with MetaBrainz).
    """

    allow_fast: bool = False


class MusicBrainzChanges(Changes, total=False):
    allow_fast: bool


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


def _best(args: tuple[Any, ...], body: Any) -> MusicBrainzRecording:
    artist, title = args
    found = musicbrainz.best_recording(musicbrainz.parse_search_recordings(body), artist, title)
    if found is None:
        raise NotFound("no hit matches", provider="musicbrainz")
    return found


def _recordings(found: Any) -> list[MusicBrainzRecording]:
    return list(found) if found is not None else []


_ISRC_RECORDINGS: Op[list[MusicBrainzRecording]] = Op(
    lambda c, isrc, inc: musicbrainz.lookup_isrc_request(isrc, inc),
    lambda args, body: musicbrainz.parse_isrc(body),
    _recordings,
)
_ISRC: Op[MusicBrainzRecording | None] = Op(
    _ISRC_RECORDINGS.build,
    _ISRC_RECORDINGS.parse,
    lambda found: musicbrainz.pick_isrc_recording(_recordings(found)),
)
_SEARCH: Op[MusicBrainzRecording | None] = Op(
    lambda c, artist, title: musicbrainz.search_recording_request(artist, title), _best
)
_RECORDING: Op[MusicBrainzRecording | None] = Op(
    lambda c, mbid, inc: musicbrainz.get_recording_request(mbid, inc),
    lambda args, body: musicbrainz.parse_recording(body),
)


class _MusicBrainz(ClientBase):
    """Construction and every method's flow, shared by the sync and async classes."""

    spec = MUSICBRAINZ
    _classifier: ClassVar[ProviderHook] = musicbrainz.hook

    def __init__(
        self,
        user_agent: str,
        *,
        options: ClientOptions | None = None,
        **changes: Unpack[MusicBrainzChanges],
    ) -> None:
        agent = validate.musicbrainz_user_agent(user_agent)
        self.user_agent = agent
        # Sent on every request, whatever pool is in use ("App/1.0 ( contact ) tunegate/x").
        self._headers = (("User-Agent", agent_header(agent)),)
        o = options_of(MusicBrainzOptions, options, changes)
        if o.http is None or (isinstance(o.http, HttpConfig) and o.http.app is None):
            o = dataclasses.replace(
                o, http=dataclasses.replace(o.http or spec_http(MUSICBRAINZ), app=agent)
            )
        shared = o.redis is not None or link_for(None, o.cache_manager)[0] is not None
        if o.rate_limiter is None and takes_official_limiter(
            o.base_url, allow_fast=o.allow_fast, shared=shared, clock=o.clock
        ):
            o = dataclasses.replace(o, rate_limiter=official_limiter())
        self._allow_fast = o.allow_fast
        super().__init__(o, self._check_rate)
        self._bucket = self._limiter.buckets[MUSICBRAINZ.name]
        self._limits = (self._bucket.rate, self._bucket.capacity)

    def _check_rate(self, rate: float, capacity: int) -> None:
        musicbrainz.check_rate(self._base_url, rate, self._allow_fast, capacity=capacity)

    def _credentials(self) -> tuple[str, ...]:
        return (self.user_agent,)

    def with_options(self, **changes: Unpack[MusicBrainzChanges]) -> Self:
        """A new client with these options changed (see :class:`MusicBrainzOptions`),
        sharing this one's cache, limiter, breaker, Redis and connection pool."""
        return self._with(changes)

    @property
    def options(self) -> MusicBrainzOptions:
        assert isinstance(self._options, MusicBrainzOptions)
        return self._options

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._base_url}>"

    def _check_limits(self) -> None:
        bucket = self._bucket
        if (bucket.rate, bucket.capacity) != self._limits:
            self._check_rate(bucket.rate, bucket.capacity)
            self._limits = (bucket.rate, bucket.capacity)

    def _prepare(self, op: Op[Any], args: tuple[Any, ...]) -> Prepared:
        # Before any answer, cached or not: a shared limiter may have been sped up since.
        self._check_limits()
        return super()._prepare(op, args)

    def _raw(self, request: ApiRequest, expect: Expect, use_cache: bool) -> Flow[Any]:
        self._check_limits()  # a request of the caller's own is held to the 1/s rule too
        return (yield from super()._raw(request, expect, use_cache))

    def _identified(self, request: ApiRequest) -> ApiRequest:
        """``request`` as this client sends it (User-Agent, cache scope), once the limits
        still hold: for requests built outside an :class:`Op`."""
        self._check_limits()
        return self._as_sent(request).request

    # The ISRC lookups as flows, for the ISRC batching (clients/_isrc_batch.py).
    def _lookup_isrc_recordings(
        self, isrc: str, inc: Inc, use_cache: bool
    ) -> Flow[list[MusicBrainzRecording]]:
        return (yield from self._flow(_ISRC_RECORDINGS, (isrc, inc), use_cache))

    def _lookup_isrc(
        self, isrc: str, inc: Inc, use_cache: bool
    ) -> Flow[MusicBrainzRecording | None]:
        return (yield from self._flow(_ISRC, (isrc, inc), use_cache))


class MusicBrainzClient(SyncClientMixin, _MusicBrainz):
    """MusicBrainz for threads, through the cache, rate limiter, circuit breaker and retry.

    Args:
        user_agent: required, ``"AppName/1.0 ( contact@example.com )"`` (checked here:
            MusicBrainz throttles or refuses anonymous and generic agents).
        options: a :class:`MusicBrainzOptions` (or plain :class:`ClientOptions`); its
            fields may also be given as keywords, which win. Omitted components are
            embedded from :data:`~tunegate.providers.spec.MUSICBRAINZ` (in-memory cache;
            1 request/s, burst 1, in one bucket shared by every such client of the process
            when it talks to musicbrainz.org without Redis; breaker opening after 3
            failures for 30 s, closing after 2 probes). More than 1/s or a burst above 1
            against musicbrainz.org (given here, held by the limiter given, or set on it
            later) raises ConfigurationError unless ``allow_fast=True`` (an arrangement
            with MetaBrainz); a mirror at another ``base_url`` may go faster.
    """

    def lookup_isrc(
        self,
        isrc: str,
        *,
        inc: Inc = musicbrainz.DEFAULT_ISRC_INC,
        includes: Inc | None = None,
        use_cache: bool = True,
    ) -> MusicBrainzRecording | None:
        """The recording with this ISRC (of several, the earliest released non-video one),
        or None when MusicBrainz knows no recording with it. Calls made at the same time
        from several threads are answered by batch searches (see :meth:`lookup_isrcs`)."""
        inc = pick_inc(inc, includes, musicbrainz.DEFAULT_ISRC_INC)  # the design's name
        found = self._warm(_ISRC, (isrc, inc)) if use_cache else MISS
        if found is not MISS:
            return found
        return drive(_isrc_batch.lookup_isrc(self, isrc, inc, use_cache))

    def lookup_isrc_recordings(
        self,
        isrc: str,
        *,
        inc: Inc = musicbrainz.DEFAULT_ISRC_INC,
        includes: Inc | None = None,
        use_cache: bool = True,
    ) -> list[MusicBrainzRecording]:
        """Every recording carrying this ISRC, in MusicBrainz's order ([] when none)."""
        inc = pick_inc(inc, includes, musicbrainz.DEFAULT_ISRC_INC)  # the design's name
        return self._run(_ISRC_RECORDINGS, (isrc, inc), use_cache)

    def search_recording(
        self, artist: str, title: str, *, use_cache: bool = True
    ) -> MusicBrainzRecording | None:
        """The search hit that best matches ``artist`` and ``title`` (same ranking rule as
        Spotify's), or None. User text is escaped: Lucene syntax in it is only text."""
        return self._run(_SEARCH, (artist, title), use_cache)

    def get_recording(
        self,
        mbid: str,
        *,
        inc: Inc = musicbrainz.DEFAULT_RECORDING_INC,
        includes: Inc | None = None,
        use_cache: bool = True,
    ) -> MusicBrainzRecording | None:
        """The recording with this MBID (any UUID spelling), or None."""
        inc = pick_inc(inc, includes, musicbrainz.DEFAULT_RECORDING_INC)  # the design's name
        return self._run(_RECORDING, (mbid, inc), use_cache)

    def lookup_isrcs(
        self, isrcs: Iterable[str], *, use_cache: bool = True, batch_size: int | None = None
    ) -> list[MusicBrainzRecording | None]:
        """What :meth:`lookup_isrc` gives for each ISRC, in order, asking MusicBrainz one
        recording search (``isrc:A OR isrc:B ...``) per ``batch_size`` ISRCs (default 50,
        at most 200) instead of one request each. Each answer is cached under the key
        :meth:`lookup_isrc` uses; an ISRC the search did not return is cached as not found,
        unless the answer was cut at its page limit (then it is looked up alone). Every
        ISRC is checked before any call (InvalidInput names the bad one)."""
        return drive(_isrc_batch.lookup_isrcs(self, isrcs, use_cache, batch_size))

    def configure_isrc_batching(
        self, *, size: int | None = None, linger: float | None = None, enabled: bool | None = None
    ) -> None:
        """How concurrent :meth:`lookup_isrc` calls are batched: ``size`` ISRCs a search
        (default 50), ``linger`` seconds a batch waits for company once a token is ready
        (default 0.02), ``enabled=False`` for one ``/ws/2/isrc`` request per call."""
        _isrc_batch.coalescer_for(self).configure(size=size, linger=linger, enabled=enabled)

    def flush_isrc_batch(self, on: bool = True) -> None:
        """From now on send each ISRC batch as soon as a token is ready, without lingering
        (nothing more is coming soon); ``on=False`` lingers again."""
        _isrc_batch.coalescer_for(self).flush(on)

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
        inc = pick_inc(inc, includes, musicbrainz.DEFAULT_RELEASE_INC)
        return self._run(_RELEASE, (mbid, inc), use_cache)

    def search_recordings(
        self, artist: str, title: str, *, limit: int = 10, use_cache: bool = True
    ) -> list[MusicBrainzRecording]:
        """Every hit of the search :meth:`search_recording` makes (up to ``limit``, 1 to
        100), in MusicBrainz's order, each with its ``score`` (0 to 100); [] when none."""
        return self._run(_SEARCH_HITS, (artist, title, limit), use_cache)


class AsyncMusicBrainzClient(AsyncClientMixin, _MusicBrainz):
    """:class:`MusicBrainzClient` for asyncio: the same constructor and methods, awaited."""

    async def lookup_isrc(
        self,
        isrc: str,
        *,
        inc: Inc = musicbrainz.DEFAULT_ISRC_INC,
        includes: Inc | None = None,
        use_cache: bool = True,
    ) -> MusicBrainzRecording | None:
        """See :meth:`MusicBrainzClient.lookup_isrc`."""
        inc = pick_inc(inc, includes, musicbrainz.DEFAULT_ISRC_INC)  # the design's name
        found = self._warm(_ISRC, (isrc, inc)) if use_cache else MISS
        if found is not MISS:
            return found
        return await adrive(_isrc_batch.lookup_isrc(self, isrc, inc, use_cache))

    async def lookup_isrc_recordings(
        self,
        isrc: str,
        *,
        inc: Inc = musicbrainz.DEFAULT_ISRC_INC,
        includes: Inc | None = None,
        use_cache: bool = True,
    ) -> list[MusicBrainzRecording]:
        """See :meth:`MusicBrainzClient.lookup_isrc_recordings`."""
        inc = pick_inc(inc, includes, musicbrainz.DEFAULT_ISRC_INC)  # the design's name
        return await self._run(_ISRC_RECORDINGS, (isrc, inc), use_cache)

    async def search_recording(
        self, artist: str, title: str, *, use_cache: bool = True
    ) -> MusicBrainzRecording | None:
        """See :meth:`MusicBrainzClient.search_recording`."""
        return await self._run(_SEARCH, (artist, title), use_cache)

    async def get_recording(
        self,
        mbid: str,
        *,
        inc: Inc = musicbrainz.DEFAULT_RECORDING_INC,
        includes: Inc | None = None,
        use_cache: bool = True,
    ) -> MusicBrainzRecording | None:
        """See :meth:`MusicBrainzClient.get_recording`."""
        inc = pick_inc(inc, includes, musicbrainz.DEFAULT_RECORDING_INC)  # the design's name
        return await self._run(_RECORDING, (mbid, inc), use_cache)

    async def lookup_isrcs(
        self, isrcs: Iterable[str], *, use_cache: bool = True, batch_size: int | None = None
    ) -> list[MusicBrainzRecording | None]:
        """See :meth:`MusicBrainzClient.lookup_isrcs`."""
        return await adrive(_isrc_batch.lookup_isrcs(self, isrcs, use_cache, batch_size))

    def configure_isrc_batching(
        self, *, size: int | None = None, linger: float | None = None, enabled: bool | None = None
    ) -> None:
        """See :meth:`MusicBrainzClient.configure_isrc_batching`."""
        _isrc_batch.coalescer_for(self).configure(size=size, linger=linger, enabled=enabled)

    def flush_isrc_batch(self, on: bool = True) -> None:
        """See :meth:`MusicBrainzClient.flush_isrc_batch`."""
        _isrc_batch.coalescer_for(self).flush(on)

    async def get_release(
        self,
        mbid: str,
        *,
        inc: Inc = musicbrainz.DEFAULT_RELEASE_INC,
        includes: Inc | None = None,
        use_cache: bool = True,
    ) -> MusicBrainzRelease | None:
        """See :meth:`MusicBrainzClient.get_release`."""
        inc = pick_inc(inc, includes, musicbrainz.DEFAULT_RELEASE_INC)
        return await self._run(_RELEASE, (mbid, inc), use_cache)

    async def search_recordings(
        self, artist: str, title: str, *, limit: int = 10, use_cache: bool = True
    ) -> list[MusicBrainzRecording]:
        """See :meth:`MusicBrainzClient.search_recordings`."""
        return await self._run(_SEARCH_HITS, (artist, title, limit), use_cache)


# The design's get_release and every search hit (issue 11), Ops like the others.
_RELEASE: Op[MusicBrainzRelease | None] = Op(
    lambda c, mbid, inc: musicbrainz.get_release_request(mbid, inc),
    lambda args, body: musicbrainz.parse_release(body),
)
_SEARCH_HITS: Op[list[MusicBrainzRecording]] = Op(
    lambda c, artist, title, limit: musicbrainz.search_recordings_request(artist, title, limit),
    lambda args, body: musicbrainz.parse_search_recordings(body),
    _recordings,
)
