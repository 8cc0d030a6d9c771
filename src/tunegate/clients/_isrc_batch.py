"""Batched MusicBrainz ISRC lookups: one recording search for up to N ISRCs.

MusicBrainz's recording search accepts ``isrc:A OR isrc:B OR ...`` and returns each
recording with its ``isrcs``, so one request at 1 request/s can answer 50 ISRCs instead of
one (``docs/enrich.md``). Two ways in, one implementation, written as flows that the sync
and async clients drive (:mod:`tunegate.clients._base`):

- :func:`lookup_many` (``lookup_isrcs``): a caller's list, cache first, then one search per
  chunk of ``size`` ISRCs.
- :class:`Coalescer` + :func:`coalesced_lookup` (``lookup_isrc``): single lookups made at
  the same time by many threads or tasks. The first caller leads: it waits while the
  MusicBrainz token refills (and at least ``linger`` after the first ISRC arrived, unless
  the batch is full), takes up to ``size`` waiting ISRCs, sends them as one search, hands
  every caller its answer and passes the lead to the first caller still waiting.

Either way each ISRC's answer is cached under the key a single ``lookup_isrc`` uses (so a
later single call hits): the recordings found, or a negative entry when the answer was
complete. An ISRC missing from an answer cut at the page limit goes to a single
``/ws/2/isrc`` lookup. A failed search serves each ISRC's stale entry when it has one, else
raises the search's error.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tunegate._drive import AwaitFlight, FlightTimeout, Poll
from tunegate.cache import CacheManager
from tunegate.clients._base import Effect, Flow, fetch
from tunegate.exceptions import (
    ConfigurationError,
    InvalidInput,
    ProviderUnavailable,
    TunegateError,
)
from tunegate.observability import record_source
from tunegate.pipeline import Pipeline
from tunegate.providers import ApiRequest, musicbrainz, validate
from tunegate.providers.types import MusicBrainzRecording
from tunegate.ratelimit import TokenBucket

__all__ = [
    "DEFAULT_LINGER",
    "Coalescer",
    "TokenWait",
    "coalesced_lookup",
    "coalescer_for",
    "lookup_isrc",
    "lookup_isrcs",
    "lookup_many",
]

Recordings = list[MusicBrainzRecording]

DEFAULT_LINGER = 0.02
"""Seconds a batch waits for company after its first ISRC, when a token is ready at once."""
_POLL = 0.05  # seconds between looks at the bucket and the queue while gathering
_TOKEN_GATHER = 5.0  # past linger, the longest a batch waits for the token before going
_FOLLOW_TIMEOUT = 600.0  # a waiting caller's backstop; every path resolves its future

_LEAD: Any = object()  # a waiter's future set to this: the waiter leads the next batch


class _Client(Protocol):
    """What the flows use of a MusicBrainz client (``clients/musicbrainz.py``)."""

    _pipeline: Pipeline
    _cache: CacheManager
    _bucket: TokenBucket

    def _lookup_isrc(
        self, isrc: str, inc: str | Iterable[str], use_cache: bool
    ) -> Flow[MusicBrainzRecording | None]: ...

    def _identified(self, request: ApiRequest) -> ApiRequest: ...

    def _from_cache(
        self, request: ApiRequest, error: TunegateError | None = None
    ) -> Flow[tuple[bool, Any]]: ...

    def _lookup_isrc_recordings(
        self, isrc: str, inc: str | Iterable[str], use_cache: bool
    ) -> Flow[Recordings]: ...


@dataclass(slots=True)
class TokenWait(Effect):
    """Seconds until ``bucket`` has a token (0 when it has one now); reads, takes nothing."""

    bucket: TokenBucket

    def run(self) -> float:
        return _token_wait(self.bucket.stats())

    async def arun(self) -> float:
        return _token_wait(await self.bucket.astats())


def _token_wait(stats: Any) -> float:
    wait = max(0.0, (1.0 - float(stats["available_tokens"])) / float(stats["rate"]))
    paused = stats.get("paused_until")
    if paused is not None:
        wait = max(wait, float(paused) - time.time())
    return wait


def _single(client: _Client, code: str) -> ApiRequest:
    """The single lookup's request: its cache key is where a batched answer is stored."""
    return client._identified(musicbrainz.lookup_isrc_request(code))


def _chunks(codes: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(codes), size):
        yield list(codes[start : start + size])


def lookup_many(
    client: _Client, codes: Sequence[str], size: int, use_cache: bool
) -> Flow[dict[str, Recordings]]:
    """Every recording of each ISRC in ``codes`` (validated, unique): cached ones from the
    cache, the rest by batch searches of ``size``."""
    out: dict[str, Recordings] = {}
    rest: list[str] = []
    for code in codes:
        if use_cache:
            hit, value = yield from client._from_cache(_single(client, code))
            if hit:
                out[code] = list(value) if value is not None else []
                continue
        rest.append(code)
    for chunk in _chunks(rest, size):
        out.update((yield from _search(client, chunk)))
    return out


def _search(client: _Client, codes: list[str]) -> Flow[dict[str, Recordings]]:
    """One batch search for ``codes``, split back per ISRC and cached per ISRC; one ISRC
    alone takes its own lookup (the exact endpoint, the same price). The cache was read
    already: a failure serves what was stale there, or raises."""
    try:
        if len(codes) == 1:
            alone = yield from client._lookup_isrc_recordings(
                codes[0], musicbrainz.DEFAULT_ISRC_INC, False
            )
            return {codes[0]: alone}
        request = client._identified(musicbrainz.isrc_batch_request(codes))
        reply = yield from fetch(
            client._pipeline, request, lambda body: musicbrainz.parse_isrc_batch(body, codes)
        )
    except TunegateError as exc:
        return (yield from _stale_or_raise(client, codes, exc))
    found, complete = reply if reply is not None else ({}, True)
    out: dict[str, Recordings] = {}
    for code in codes:
        recordings = found.get(code)
        single = _single(client, code)
        if recordings:
            out[code] = list((yield from client._pipeline.store(single, list(recordings))))
        elif complete:
            yield from client._pipeline.store(single, None, not_found=True)  # cached "not found"
            out[code] = []
        else:  # the page was cut: this ISRC's recordings may be past it
            out.update((yield from _search(client, [code])))
    return out


def _stale_or_raise(
    client: _Client, codes: list[str], error: TunegateError
) -> Flow[dict[str, Recordings]]:
    out: dict[str, Recordings] = {}
    for code in codes:
        hit, value = yield from client._from_cache(_single(client, code), error)
        if not hit:
            raise error
        out[code] = list(value) if value is not None else []
    return out


# -- single lookups made at the same time ------------------------------------------------


class Coalescer:
    """The ISRCs single ``lookup_isrc`` calls are waiting for, and who leads the next batch.

    Every change happens under one lock, held only for bookkeeping (futures are settled
    under it too: their callbacks only schedule work), so threads and asyncio tasks of any
    loop may share it.
    """

    def __init__(self, size: int = musicbrainz.ISRC_BATCH_DEFAULT, linger: float = DEFAULT_LINGER):
        self._lock = threading.Lock()
        self._waiting: dict[str, list[concurrent.futures.Future[Any]]] = {}
        self._first: float | None = None  # when the oldest waiting ISRC arrived
        self._leading = False
        self._flush = False
        self.enabled = True
        self.configure(size=size, linger=linger)

    def configure(
        self, *, size: int | None = None, linger: float | None = None, enabled: bool | None = None
    ) -> None:
        """Change the batch size (1 to ``ISRC_BATCH_MAX``), the linger (seconds a batch
        waits for company once a token is ready) or switch coalescing off (each
        ``lookup_isrc`` then asks ``/ws/2/isrc`` alone)."""
        if size is not None:
            self.size = musicbrainz.check_isrc_batch_size(size)
        if linger is not None:
            if isinstance(linger, bool) or not 0 <= linger <= 60:
                raise ConfigurationError(f"linger must be 0 to 60 seconds, got {linger!r}")
            self.linger = float(linger)
        if enabled is not None:
            self.enabled = bool(enabled)

    def flush(self, on: bool = True) -> None:
        """``on``: from now on a batch goes as soon as a token is ready, without lingering
        (nothing more is coming soon); False: linger again."""
        with self._lock:
            self._flush = on

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def join(self, code: str) -> concurrent.futures.Future[Any] | None:
        """Wait for ``code``: a future for its answer, or None when the caller leads."""
        with self._lock:
            futures = self._waiting.setdefault(code, [])
            if self._first is None:
                self._first = time.monotonic()
            if not self._leading:
                self._leading = True
                return None
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            futures.append(future)
            return future

    def ready(self, token_wait: float) -> tuple[bool, float]:
        """Whether the leader should send now, else how long to pause before looking again."""
        with self._lock:
            now = time.monotonic()
            first = now if self._first is None else self._first
            if len(self._waiting) >= self.size:
                return True, 0.0
            lingered = now - first
            if token_wait <= 0 and (self._flush or lingered >= self.linger):
                return True, 0.0
            if lingered >= self.linger + _TOKEN_GATHER:  # a long pause: the pipeline decides
                return True, 0.0
            return False, min(_POLL, max(token_wait, self.linger - lingered, 0.001))

    def take(self) -> list[tuple[str, list[concurrent.futures.Future[Any]]]]:
        """The next batch: up to ``size`` ISRCs in arrival order, with their waiters."""
        with self._lock:
            batch = [(code, self._waiting.pop(code)) for code in list(self._waiting)[: self.size]]
            self._first = time.monotonic() if self._waiting else None
            return batch

    def settle(
        self,
        batch: list[tuple[str, list[concurrent.futures.Future[Any]]]],
        results: dict[str, Recordings] | None,
        error: BaseException | None,
    ) -> None:
        """Answer every waiter of ``batch``, then pass the lead on."""
        with self._lock:
            for code, futures in batch:
                for future in futures:
                    if future.done():
                        continue
                    if error is not None:
                        future.set_exception(error)
                    else:
                        assert results is not None
                        future.set_result(results[code])
            self._hand_on()

    def put_back(self, batch: list[tuple[str, list[concurrent.futures.Future[Any]]]]) -> None:
        """The leader was stopped (a cancelled task): its batch waits again, in front, and
        the lead passes to one of its waiters."""
        with self._lock:
            rest = self._waiting
            self._waiting = {code: futures for code, futures in batch if futures}
            for code, futures in rest.items():
                self._waiting.setdefault(code, []).extend(futures)
            self._hand_on()

    def leave(self, code: str, future: concurrent.futures.Future[Any]) -> None:
        """A waiter gave up (cancelled, timed out): forget it, and if it had just been
        given the lead, pass the lead on."""
        with self._lock:
            futures = self._waiting.get(code)
            if futures is not None and future in futures:
                futures.remove(future)
            led = future.done() and not future.cancelled() and future.exception() is None
            if led and future.result() is _LEAD:
                self._hand_on()

    def _hand_on(self) -> None:  # under the lock
        for code in list(self._waiting):
            futures = self._waiting[code]
            if not futures:  # every caller of this ISRC gave up
                del self._waiting[code]
                continue
            futures.pop(0).set_result(_LEAD)
            self._leading = True
            return
        self._leading = False
        self._first = None


_coalescers: weakref.WeakKeyDictionary[object, Coalescer] = weakref.WeakKeyDictionary()
_coalescers_lock = threading.Lock()


def coalescer_for(client: object) -> Coalescer:
    """The client's coalescer (made on first use)."""
    with _coalescers_lock:
        found = _coalescers.get(client)
        if found is None:
            found = _coalescers[client] = Coalescer()
        return found


def coalesced_lookup(
    client: _Client, coalescer: Coalescer, code: str, bucket: TokenBucket
) -> Flow[Recordings]:
    """Every recording of ``code`` (validated), through the cache, else in a batch with the
    ISRCs other callers are waiting for."""
    request = _single(client, code)
    hit, value = yield from client._from_cache(request)
    if hit:
        return list(value) if value is not None else []
    future = coalescer.join(code)
    if future is not None:
        try:
            got = yield AwaitFlight(future, _FOLLOW_TIMEOUT)
        except TunegateError as exc:
            hit, value = yield from client._from_cache(request, exc)
            if hit:
                return list(value) if value is not None else []
            raise
        except FlightTimeout:
            coalescer.leave(code, future)
            raise ProviderUnavailable(
                f"no ISRC batch answered within {_FOLLOW_TIMEOUT:g} s", provider="musicbrainz"
            ) from None
        except BaseException:
            coalescer.leave(code, future)
            raise
        if got is not _LEAD:
            record_source("musicbrainz", "api")
            return list(got)
    return (yield from _lead(client, coalescer, code, bucket))


def _lead(
    client: _Client, coalescer: Coalescer, code: str, bucket: TokenBucket
) -> Flow[Recordings]:
    batch: list[tuple[str, list[concurrent.futures.Future[Any]]]] = []
    try:
        for _ in range(int((coalescer.linger + _TOKEN_GATHER) / _POLL) + 2):  # bounded
            token_wait = (yield TokenWait(bucket)) if coalescer.waiting() < coalescer.size else 0.0
            go, pause = coalescer.ready(token_wait)
            if go:
                break
            yield Poll(pause)
        batch = coalescer.take()
        codes = [c for c, _ in batch]
        results = yield from _search(client, codes)
    except Exception as exc:
        coalescer.settle(batch, None, exc)
        if isinstance(exc, TunegateError):
            hit, value = yield from client._from_cache(_single(client, code), exc)
            if hit:
                return list(value) if value is not None else []
        raise
    except BaseException:
        coalescer.put_back(batch)
        raise
    coalescer.settle(batch, results, None)
    if code in results:
        return results[code]
    # Not in this batch (it cannot happen while the leader's ISRC is the oldest waiting,
    # but a single lookup keeps the answer right if it ever does).
    return (yield from client._lookup_isrc_recordings(code, musicbrainz.DEFAULT_ISRC_INC, True))


# -- what the clients' public methods run ------------------------------------------------


def lookup_isrc(
    client: _Client, isrc: str, inc: str | Iterable[str], use_cache: bool
) -> Flow[MusicBrainzRecording | None]:
    """``lookup_isrc``: coalesced into batches with the default ``inc`` and the cache on;
    alone otherwise (a batch search cannot take another ``inc``, and ``use_cache=False``
    asks for this ISRC's own fresh answer)."""
    coalescer = coalescer_for(client)
    request = musicbrainz.lookup_isrc_request(isrc, inc)  # validates before any call
    if not (use_cache and coalescer.enabled and len(request.cache_parts) == 1):
        return (yield from client._lookup_isrc(isrc, inc, use_cache))
    code = request.cache_parts[0]
    recordings = yield from coalesced_lookup(client, coalescer, code, client._bucket)
    return musicbrainz.pick_isrc_recording(recordings)


def lookup_isrcs(
    client: _Client, isrcs: Iterable[str], use_cache: bool, batch_size: int | None
) -> Flow[list[MusicBrainzRecording | None]]:
    """``lookup_isrcs``: the recording ``lookup_isrc`` would pick, per ISRC, in order."""
    if isinstance(isrcs, str | bytes):
        raise InvalidInput("isrcs", "must be a list of ISRCs, not one string")
    wanted = [validate.isrc(code, "isrcs") for code in isrcs]
    coalescer = coalescer_for(client)
    size = coalescer.size if batch_size is None else musicbrainz.check_isrc_batch_size(batch_size)
    found = yield from lookup_many(client, list(dict.fromkeys(wanted)), size, use_cache)
    return [musicbrainz.pick_isrc_recording(found[code]) for code in wanted]
