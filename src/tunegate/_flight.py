"""Single-flight: concurrent identical misses share one upstream call.

In a process, :class:`Flights` keeps one :class:`Flight` per key in flight, with a
``concurrent.futures.Future`` (made when a first follower joins) shared by threads and by
tasks of any event loop. Across processes, a lease in Redis picks
one leader per key (three Lua scripts below), and the leader publishes the outcome for a
few seconds: the value, "not found", or, for an outage-like failure, an *error marker*
(error type, status, code, retry_after, attempts; never a message, so never a secret).
Followers turn a marker back into the typed error and apply their own stale-if-error.

The single-flight stage (``tunegate._coalesce``) drives all of this; nothing here does I/O.
"""

from __future__ import annotations

import collections
import concurrent.futures
import re
import threading
from typing import Any, Final

import orjson

from tunegate._clock import Clock, SystemClock
from tunegate._policy.errors import meaning
from tunegate._redis import lua
from tunegate.cache.frozen import decode, encode
from tunegate.exceptions import (
    CircuitBreakerOpenError,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RateLimitTimeout,
    TunegateError,
)

__all__ = [
    "CLAIM",
    "FINISH",
    "RENEW",
    "Flight",
    "Flights",
    "LeaderGone",
    "lease_keys",
    "publish_error",
    "publish_not_found",
    "publish_value",
    "read_published",
]


class LeaderGone(Exception):
    """The leader was cancelled or interrupted: a follower should lead instead."""


class Flight:
    """One key's call in flight, as its leader holds it. The future its followers wait on
    is made only when a first follower joins: most calls have none, and a
    ``concurrent.futures.Future`` (a condition, a lock) made and settled costs more than the
    rest of single-flight together."""

    __slots__ = ("_future", "_outcome")

    def __init__(self) -> None:
        self._future: concurrent.futures.Future[Any] | None = None
        self._outcome: tuple[Any, BaseException | None] | None = None  # once finished

    def _followed(self) -> concurrent.futures.Future[Any]:
        """The future to wait on (under :class:`Flights`' lock); settled already when the
        call has finished."""
        future = self._future
        if future is None:
            future = self._future = concurrent.futures.Future()
            if self._outcome is not None:  # a follower that looked before the finish
                _settle(future, *self._outcome)
        return future


def _settle(
    future: concurrent.futures.Future[Any], value: Any, error: BaseException | None
) -> None:
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class Flights:
    """In-flight calls by key, shared by threads and tasks of every event loop.

    A finished call stays visible for ``linger`` seconds to callers whose cache lookup
    happened before it finished (their ``looked_at`` generation is older): they missed the
    cache only because the write came a hair late, and must not make a second upstream call.
    A generation counter, not a clock, orders "looked" and "finished": a caller reads it
    before its cache lookup for the price of an attribute read.
    """

    def __init__(self, linger: float = 1.0, clock: Clock | None = None) -> None:
        self.linger = linger
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.generation = 0  # bumped by every finish; read without the lock (an int)
        self._lock = threading.Lock()
        self._live: dict[str, Flight] = {}
        self._done: collections.OrderedDict[str, tuple[Flight, int, float]] = (
            collections.OrderedDict()
        )

    def join(self, key: str, looked_at: int) -> Flight | concurrent.futures.Future[Any]:
        """A :class:`Flight` when the caller leads (to :meth:`finish`), else the future
        of the leader's outcome to wait on."""
        with self._lock:
            flight = self._live.get(key)
            if flight is not None:
                return flight._followed()
            done = self._done.get(key)
            if done is not None and done[1] > looked_at:
                return done[0]._followed()
            flight = self._live[key] = Flight()
            return flight

    def finish(
        self,
        key: str,
        flight: Flight,
        value: Any = None,
        error: BaseException | None = None,
    ) -> None:
        now = self._clock.monotonic()
        with self._lock:
            if self._live.get(key) is flight:
                del self._live[key]
            self.generation += 1
            flight._outcome = (value, error)
            future = flight._future
            if not isinstance(error, LeaderGone):
                self._done[key] = (flight, self.generation, now)
                self._done.move_to_end(key)
            horizon = now - self.linger
            while self._done and next(iter(self._done.values()))[2] < horizon:
                self._done.popitem(last=False)
        if future is not None:
            _settle(future, value, error)

    def __len__(self) -> int:
        return len(self._live)


# -- across processes: a lease in Redis ---------------------------------------------------------
# The lease scripts (tunegate/_lua/singleflight_*.lua). CLAIM replies {1} lead, {0} follow,
# {2, payload} an outcome published within the last few seconds.
CLAIM: Final = lua("singleflight_claim.lua")
RENEW: Final = lua("singleflight_renew.lua")
FINISH: Final = lua("singleflight_finish.lua")

LEAD, FOLLOW, PUBLISHED = 1, 0, 2
_VALUE = b"V"
_NOT_FOUND = b"N"
_ERROR = b"E"


def lease_keys(key: str) -> tuple[str, str]:
    """The lease and the published outcome of cache key ``key`` (one cluster slot)."""
    return f"tunegate:sf:{{{key}}}", f"tunegate:sf:{{{key}}}:result"


def publish_value(value: Any) -> bytes:
    """The payload for a value; empty (publish nothing) when it is not JSON-like."""
    try:
        return _VALUE + encode(value)
    except TypeError:
        return b""


def publish_not_found() -> bytes:
    return _NOT_FOUND


# Error types a marker may carry: outage-like failures only (what a stale entry may answer).
_SHAREABLE: dict[str, type[TunegateError]] = {
    cls.__name__: cls
    for cls in (
        ProviderUnavailable,
        RateLimited,
        MalformedResponse,
        ProviderError,
        CircuitBreakerOpenError,
        RateLimitTimeout,
    )
}
_SHAREABLE_TYPES = frozenset(_SHAREABLE.values())
_CODE_WORD = re.compile(r"[a-z_]{1,32}\Z")  # our own codes ("truncated", "bad_json")


def publish_error(error: TunegateError) -> bytes:
    """An error marker for an outage-like ``error``, else empty (not shared: "not found" has
    its own mark, and refused credentials or a rejected request may be this process's own).
    Carries no text: the type, status, code (an int, or one of our lower-case code words),
    retry_after and attempts."""
    if not meaning(error).shareable:
        return b""
    shared = next((c for c in type(error).__mro__ if c in _SHAREABLE_TYPES), None)
    if shared is None:
        return b""
    fields: dict[str, Any] = {
        "type": shared.__name__,
        "retry_after": _number(getattr(error, "retry_after", None)),
    }
    if isinstance(error, ProviderError):
        code = error.code
        if not (_int(code) is not None or (isinstance(code, str) and _CODE_WORD.match(code))):
            code = None
        fields.update(status=_int(error.status), code=code, attempts=_int(error.attempts))
    return _ERROR + orjson.dumps(fields)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def read_published(
    payload: bytes | str, provider: str, endpoint: str, now_wall: float
) -> tuple[Any, TunegateError | None]:
    """``(value, None)``, or ``(None, error)`` for "not found" and for an error marker."""
    if isinstance(payload, str):  # a client made with decode_responses=True
        payload = payload.encode("utf-8")
    mark = payload[:1]
    if mark == _VALUE:
        return decode(memoryview(payload)[1:]), None
    if mark == _NOT_FOUND:
        return None, NotFound("not found", provider=provider, endpoint=endpoint)
    try:
        fields = orjson.loads(payload[1:]) if mark == _ERROR else {}
    except orjson.JSONDecodeError:  # not ours: read as an unnamed outage
        fields = {}
    if not isinstance(fields, dict):
        fields = {}
    cls = _SHAREABLE.get(str(fields.get("type")), ProviderUnavailable)
    retry_after = _number(fields.get("retry_after"))
    wait = retry_after or 0.0
    if cls is CircuitBreakerOpenError:
        return None, CircuitBreakerOpenError(provider, wait, now_wall + wait)
    if cls is RateLimitTimeout:
        return None, RateLimitTimeout(provider, wait)
    assert issubclass(cls, ProviderError)
    code = fields.get("code")
    return None, cls(
        "failed in the process that made this call",
        provider=provider,
        endpoint=endpoint,
        status=_int(fields.get("status")),
        code=code if isinstance(code, int | str) else None,
        retry_after=retry_after,
        attempts=_int(fields.get("attempts")) or 0,
    )
