"""Circuit breakers for the providers, each on its own or shared by every process through Redis.

The state machine is :mod:`tunegate._policy.breaker`; this module only drives it. A local
breaker keeps the machine in memory behind a lock held for one policy call; while CLOSED it
admits with the permit the machine says that state grants at any time (``standing()``),
without the clock or the lock, and a success that changes nothing skips it. A shared breaker
(``redis=``) runs the machine's Lua twin in Redis, so one process tripping it opens it for
all, and half-open probe slots are leased there. It remembers the last answer from Redis for
``cache_ttl`` seconds (1 s by default), whichever call brought it (an allow or an outcome):
a CLOSED breaker, or an OPEN one still inside its timeout, then lets a call through (or
refuses it) without a round trip, and another process's trip is seen within that bound.
Every outcome of a call goes to Redis, successes included, so that failures count as
consecutive across all processes; the pipeline's form (:meth:`CircuitBreaker.settle`)
sends a success in CLOSED after the answer instead of before it. When Redis cannot serve
(unreachable, stalled, full, read-only) the breaker carries on with the local machine,
seeded with the last shared state it saw, and goes back to Redis when
:class:`tunegate._redis.RedisLink` says it is worth trying again.

The low-level form, which the request pipeline uses::

    permit = breaker.allow()          # or CircuitBreakerOpenError, at once
    try:
        response = send()
    except Exception as exc:
        if breaker.is_failure(exc):
            breaker.record_failure(permit)
        else:
            breaker.record_ignored(permit)
        raise
    breaker.record_success(permit)

``breaker.call(fn, ...)``, ``with breaker:`` and their ``a``-prefixed async forms do the same.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import itertools
import logging
import os
import secrets
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Final, Literal, ParamSpec, TypedDict, TypeVar, overload

from tunegate._clock import Clock, SystemClock
from tunegate._drive import BACKLOG, AwaitFlight, FlightTimeout, Flow, adrive, drive
from tunegate._policy import breaker as policy
from tunegate._policy.breaker import BreakerConfig, BreakerState, CircuitState, Event, Permit
from tunegate._policy.errors import meaning
from tunegate._redis import LinkOwner, RedisCall, RedisLike, lua
from tunegate.exceptions import CircuitBreakerOpenError, ConfigurationError, TunegateError

__all__ = [
    "DEFAULT_CACHE_TTL",
    "BreakerStats",
    "CircuitBreaker",
    "CircuitBreakerRegistry",
    "CircuitState",
    "Listener",
    "Permit",
    "Verdict",
]

log = logging.getLogger("tunegate.breaker")

P = ParamSpec("P")
R = TypeVar("R")

Listener = Callable[[str, CircuitState, CircuitState], object]
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]

DEFAULT_CACHE_TTL: Final = 1.0  # seconds a shared breaker trusts Redis's last answer
DEFAULT_KEY_PREFIX: Final = "tunegate:cb:"

_CLOSED, _OPEN, _HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
# Module constants: an enum member lookup (Event.SUCCESS) costs ten times a global's.
_SUCCESS, _FAILURE, _IGNORED = Event.SUCCESS, Event.FAILURE, Event.IGNORED
#: How a guarded call ended, as :meth:`CircuitBreaker.record_flow` takes it.
Verdict = Literal["success", "failure", "ignored"]
_VERDICTS: Final[Mapping[str, Event]] = {
    "success": _SUCCESS,
    "failure": _FAILURE,
    "ignored": _IGNORED,
}


class BreakerStats(TypedDict):
    state: str
    failures: int
    successes: int
    opened_at: float | None
    retry_at: float | None
    failure_threshold: int
    success_threshold: int
    timeout: float
    half_open_max_calls: int
    half_open_in_flight: int
    total_calls: int
    total_failures: int
    rejected: int
    shared: bool


@dataclass(frozen=True, slots=True)
class _SharedPermit(Permit):
    """A permit issued by Redis: its outcome goes back to Redis."""


@dataclass(frozen=True, slots=True)
class _View:
    """One answer of the Lua script, and when (on the local monotonic clock) it was asked."""

    old: CircuitState
    state: CircuitState
    epoch: int
    failures: int
    successes: int
    opened_at: float | None  # server UNIX time
    admitted: bool
    retry_at: float | None  # server UNIX time
    in_flight: int
    server_now: float
    fetched: float

    @property
    def retry_mono(self) -> float | None:
        if self.retry_at is None:
            return None
        return self.fetched + (self.retry_at - self.server_now)


_SCRIPT = lua("breaker.lua")
#: How long an outcome waits for an owed success whose script is in flight (one script
#: call, bounded by the link's socket timeout, 0.5 s by default).
_AFTER_SENT: Final = 2.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text else None


def _count_of(counter: itertools.count[int]) -> int:
    """How many times ``next()`` was called on a fresh ``itertools.count()``: its repr is
    ``count(N)``, the only way to read one without advancing it."""
    return int(repr(counter)[6:-1])


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status a foreign exception carries (requests, httpx, aiohttp), if any."""
    try:
        for owner in (exc, getattr(exc, "response", None)):
            for attr in ("status_code", "status"):
                value = getattr(owner, attr, None)
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
    except Exception:  # a property that raises (httpx's .request does) means "no status"
        return None
    return None


def _http_transport_error(exc: BaseException) -> bool:
    # An httpx or aiohttp exception exists only once its library is imported, so looking
    # the library up in sys.modules costs no import for users of neither.
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.TransportError):
        return True
    aiohttp = sys.modules.get("aiohttp")
    return aiohttp is not None and isinstance(exc, aiohttp.ClientConnectionError)


class CircuitBreaker(LinkOwner):
    """Fail fast while a provider is down; let a few probes find out when it is back.

    Args:
        name: the provider (or any name); it names the Redis keys and the errors.
        failure_threshold: consecutive failures that open a CLOSED breaker.
        timeout: seconds an OPEN breaker refuses calls before it lets probes through.
        success_threshold: probe successes that close a HALF_OPEN breaker.
        expected_exception: exception types that count as failures on top of the built-in
            ones (see :meth:`is_failure`).
        half_open_max_calls: probes that may run at once in HALF_OPEN (in all processes,
            when shared).
        probe_lease: seconds after which a probe that never reported frees its slot;
            defaults to ``timeout``.
        redis: share the state through this Redis (a client, a URL or a ``RedisLink``).
        clock: the clock to read; ``tunegate.testing.FakeClock`` in tests.
        cache_ttl: seconds a shared breaker trusts its last answer from Redis.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        timeout: float = 60.0,
        success_threshold: int = 2,
        expected_exception: ExceptionTypes | None = None,
        half_open_max_calls: int = 1,
        probe_lease: float | None = None,
        redis: RedisLike | None = None,
        clock: Clock | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a breaker needs a non-empty name, not {name!r}")
        if not cache_ttl >= 0:
            raise ConfigurationError(f"cache_ttl must be >= 0 seconds, not {cache_ttl!r}")
        self.name = name
        self.config = BreakerConfig(
            failure_threshold=failure_threshold,
            success_threshold=success_threshold,
            timeout=timeout,
            half_open_max_calls=half_open_max_calls,
            probe_lease=timeout if probe_lease is None else probe_lease,
        )
        self.expected_exception = expected_exception
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._local = BreakerState()
        # What the local state answers whatever the time (policy.standing), read without
        # the lock on the hot path: CLOSED's permit, and that permit again while a success
        # reported with it would change nothing.
        self._standing: Permit | None = None
        self._idle: Permit | None = None
        self._commit_locked(self._local)
        self._tokens = itertools.count(1)
        self._reported = _CLOSED  # the state listeners last heard of
        self._listeners: list[Listener] = []
        # Admitted calls: next() on a count is one C call, atomic without our lock (the
        # hot path takes none); read back with _count_of().
        self._admitted = itertools.count()
        self._total_failures = 0
        self._rejected = 0
        self._cm_permits: contextvars.ContextVar[tuple[Permit, ...]] = contextvars.ContextVar(
            f"tunegate.breaker.{name}", default=()
        )
        self._adopt(redis)  # shared mode
        self._what = f"circuit breaker {name!r}"
        self._cache_ttl = cache_ttl
        self._view: _View | None = None
        # A success in CLOSED that settle() left to the backlog, not yet sent (the latest
        # one: they collapse while one waits); taken by whoever sends it first.
        self._owed: _SharedPermit | None = None
        self._sending: concurrent.futures.Future[None] | None = None  # owed one, in flight
        _BREAKERS.add(self)  # a forked child forgets what this process owed (_forget_owed)
        self._local_mode = False  # True while Redis is down and the local machine decides
        hashed = f"{key_prefix}{{{name}}}"  # hash tag: both keys live in one cluster slot
        self._keys = (hashed, f"{hashed}:probes")
        cfg = self.config
        key_ttl = max(86_400.0, 2 * (cfg.timeout + cfg.probe_lease))
        self._argv_tail = (
            cfg.failure_threshold,
            cfg.success_threshold,
            repr(float(cfg.timeout)),
            cfg.half_open_max_calls,
            repr(float(cfg.probe_lease)),
            int(key_ttl * 1000),
            "",  # now: the server's TIME
        )
        # False with failure_threshold 1: a non-probe success then changes nothing anywhere.
        self._success_counts = policy.success_counts(cfg)
        self._openings = 0  # transitions into OPEN seen here (the design's circuit_breaker_opens)
        self._listeners.append(self._count_opening)

    def __repr__(self) -> str:
        mode = "shared" if self._link is not None else "local"
        return f"<CircuitBreaker {self.name!r} {mode}>"

    @property
    def shared(self) -> bool:
        """Configured with Redis (whether or not Redis answers right now)."""
        return self._link is not None

    # -- classification --------------------------------------------------------------

    def is_failure(self, exc: BaseException) -> bool:
        """Does this exception say the provider is failing?

        Our own errors: as the error table says (``counts_for_breaker`` of
        :func:`tunegate._policy.errors.meaning`): never RateLimited, NotFound,
        AuthenticationError, InvalidInput or our own refusals; always ProviderUnavailable,
        MalformedResponse and a status of 500 or more. A foreign exception (this adapter):
        never when it carries an HTTP status below 500 (except 408), always with a status of
        500 or more; otherwise the ``expected_exception`` types, timeouts, ``OSError``
        (connection errors) and the transport errors of httpx and aiohttp.
        """
        if isinstance(exc, TunegateError):
            return meaning(exc).counts_for_breaker
        status = _http_status(exc)
        if status is not None:
            return status >= 500 or status == 408
        if self.expected_exception is not None and isinstance(exc, self.expected_exception):
            return True
        return meaning(exc).counts_for_breaker or _http_transport_error(exc)

    # -- listeners ---------------------------------------------------------------------

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(name, old_state, new_state)`` on every transition this process sees.

        In shared mode a process sees its own transitions at once and the others' when it
        next talks to Redis (within ``cache_ttl``). A listener that raises is logged.

        It runs in the thread or task whose call saw the transition, or on the
        ``tunegate-after-answer`` thread (``_drive.BACKLOG``): a pipeline's success in
        CLOSED is sent from there after the answer, and its reply may bring another
        process's transition. So a listener must be thread-safe and quick (it holds up
        the backlog: cache writes and lease releases wait behind it).
        """
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            self._listeners.remove(fn)

    def _observe_locked(
        self, old: CircuitState, new: CircuitState
    ) -> list[tuple[CircuitState, CircuitState]]:
        # What listeners last heard, then what Redis says it was before this step, then now:
        # a transition made elsewhere is reported before the one made here.
        seen, self._reported = self._reported, new
        return [(a, b) for a, b in ((seen, old), (old, new)) if a is not b]

    def _fire(self, transitions: Sequence[tuple[CircuitState, CircuitState]]) -> None:
        for old, new in transitions:
            for fn in tuple(self._listeners):
                try:
                    fn(self.name, old, new)
                except Exception:
                    log.exception("listener %r of circuit breaker %r failed", fn, self.name)

    # -- the local machine -------------------------------------------------------------

    def _commit_locked(self, new: BreakerState) -> None:
        """Make ``new`` the local state (the lock held), with what it answers at any time.

        A reader without the lock may still take the previous permit for a moment: that
        call was admitted just before the transition, and its epoch makes its outcome stale.
        """
        permit, idle = policy.standing(new)
        if permit is not None and permit == self._standing:
            permit = self._standing  # the same epoch: one permit object for all of it
        self._local = new
        self._standing = permit
        self._idle = permit if idle else None

    def _local_allow(self) -> Permit:
        permit = self._standing
        if permit is not None:  # CLOSED: admitted at any time, so no clock, lock or object
            next(self._admitted)
            return permit
        now = self._clock.monotonic()
        transitions: list[tuple[CircuitState, CircuitState]] = []
        with self._lock:
            s = self._local
            # A lease token is needed only outside CLOSED; the hot path makes none.
            token = "" if s.state is _CLOSED else str(next(self._tokens))
            new, decision = policy.allow(s, self.config, now, token)
            if new is not s:
                self._commit_locked(new)
                if new.state is not s.state:
                    transitions = self._observe_locked(s.state, new.state)
            if isinstance(decision, Permit):
                next(self._admitted)
            else:
                self._rejected += 1
        if transitions:
            self._fire(transitions)
        if isinstance(decision, Permit):
            return decision
        wait = max(0.0, decision.retry_at - now)
        raise CircuitBreakerOpenError(self.name, wait, self._clock.time() + wait)

    def _local_record(self, event: Event, permit: Permit) -> None:
        if event is _SUCCESS and not permit.probe:
            s = self._local  # one atomic read: a success in a clean CLOSED state changes nothing
            if s.state is _CLOSED and not s.failures:
                return
        now = self._clock.monotonic()
        transitions: list[tuple[CircuitState, CircuitState]] = []
        with self._lock:
            s = self._local
            if isinstance(permit, _SharedPermit):
                # Issued by Redis before it went away: it counts here only while CLOSED.
                if s.state is not _CLOSED:
                    return
                permit = Permit(s.epoch)
            new = policy.record(s, self.config, now, event, permit)
            if new is not s:
                self._commit_locked(new)
                if new.state is not s.state:
                    transitions = self._observe_locked(s.state, new.state)
        if transitions:
            self._fire(transitions)

    def _local_state(self) -> tuple[BreakerState, float]:
        """The local machine advanced to now (committing a timed transition), and now."""
        now = self._clock.monotonic()
        transitions: list[tuple[CircuitState, CircuitState]] = []
        with self._lock:
            s = self._local
            new = policy.advance(s, self.config, now)
            if new is not s:
                self._commit_locked(new)
                if new.state is not s.state:
                    transitions = self._observe_locked(s.state, new.state)
        if transitions:
            self._fire(transitions)
        return new, now

    def _local_reset(self) -> None:
        now = self._clock.monotonic()
        with self._lock:
            s = self._local
            self._commit_locked(policy.reset(s, now))
            transitions = self._observe_locked(s.state, _CLOSED)
        self._fire(transitions)

    def _enter_local_mode(self) -> None:
        """Redis cannot serve: go on locally from the last shared state this process saw."""
        with self._lock:
            if self._local_mode:
                return
            self._local_mode = True
            view = self._view
            if view is None:
                return
            opened_at = None
            if view.opened_at is not None:  # server time -> our monotonic clock
                opened_at = view.fetched - (view.server_now - view.opened_at)
            self._commit_locked(
                BreakerState(
                    state=view.state,
                    epoch=self._local.epoch + 1,  # no local permit of old matches it
                    failures=view.failures,
                    successes=view.successes,
                    opened_at=opened_at,
                )
            )

    # -- the shared machine ------------------------------------------------------------

    def _argv(self, op: str, epoch: int, token: str) -> tuple[Any, ...]:
        return (op, epoch, token, *self._argv_tail)

    def _parse(self, reply: Sequence[Any], fetched: float) -> _View:
        return _View(
            old=CircuitState(_text(reply[0])),
            state=CircuitState(_text(reply[1])),
            epoch=int(_text(reply[2])),
            failures=int(_text(reply[3])),
            successes=int(_text(reply[4])),
            opened_at=_float(reply[5]),
            admitted=bool(int(reply[6])),
            retry_at=_float(reply[7]),
            in_flight=int(reply[8]),
            server_now=float(_text(reply[9])),
            fetched=fetched,
        )

    def _accept(self, reply: Sequence[Any], fetched: float) -> _View:
        view = self._parse(reply, fetched)
        transitions: list[tuple[CircuitState, CircuitState]] = []
        with self._lock:
            self._local_mode = False
            current = self._view
            # Answers from concurrent calls may land out of order; keep the latest asked.
            if current is None or fetched >= current.fetched:
                self._view = view
                transitions = self._observe_locked(view.old, view.state)
        if transitions:
            self._fire(transitions)
        return view

    def _run(self, op: str, epoch: int = 0, token: str = "") -> Flow[_View | None]:
        """One script call; None when Redis cannot serve it (and the local machine takes over)."""
        link = self._link
        assert link is not None
        if link.available:
            fetched = self._clock.monotonic()
            argv = self._argv(op, epoch, token)
            reply = yield RedisCall(link, self._what, script=_SCRIPT, keys=self._keys, args=argv)
            if reply is not None:
                return self._accept(reply, fetched)
        self._enter_local_mode()
        return None

    def _fresh_view(self, now: float) -> _View | None:
        view = self._view
        if view is None or self._local_mode or now >= view.fetched + self._cache_ttl:
            return None
        retry = view.retry_mono
        if retry is not None and now >= retry:  # time alone may have changed the state
            return None
        return view

    def _allow_from_view(self) -> Permit | None:
        """Decide from the cached answer when it is fresh enough; None means ask Redis."""
        now = self._clock.monotonic()
        view = self._fresh_view(now)
        if view is None:
            return None
        if view.state is _CLOSED:
            next(self._admitted)
            return _SharedPermit(view.epoch)
        retry = view.retry_mono
        if retry is None:  # HALF_OPEN with a free slot: only Redis can lease it
            return None
        with self._lock:
            self._rejected += 1
        assert view.retry_at is not None  # retry_mono is derived from it
        raise CircuitBreakerOpenError(self.name, retry - now, view.retry_at)

    def _allowed(self, view: _View, token: str) -> Permit:
        if view.admitted:
            next(self._admitted)
            return _SharedPermit(view.epoch, token if view.state is _HALF_OPEN else "")
        with self._lock:
            self._rejected += 1
        retry_at = view.retry_at if view.retry_at is not None else view.server_now
        raise CircuitBreakerOpenError(self.name, max(0.0, retry_at - view.server_now), retry_at)

    def _shared_allow(self) -> Flow[Permit]:
        permit = self._allow_from_view()
        if permit is not None:
            return permit
        assert self._link is not None
        # The lease token travels only to Redis; none is made while Redis is down.
        token = secrets.token_hex(8) if self._link.available else ""
        view = yield from self._run(Event.ALLOW, 0, token)
        if view is not None:
            return self._allowed(view, token)
        return self._local_allow()

    def _outcome_flow(self, event: Event, permit: Permit) -> Flow[None] | None:
        """Count the outcome; the flow that reports it to Redis, or None once done locally."""
        if permit is self._idle and event is _SUCCESS:  # changes nothing: skip the machine
            return None
        if event is _FAILURE:
            with self._lock:
                self._total_failures += 1
        if isinstance(permit, _SharedPermit):
            return self._shared_record(event, permit)
        self._local_record(event, permit)
        return None

    def _shared_record(self, event: Event, permit: _SharedPermit) -> Flow[None]:
        # Every success goes to Redis too, not only when this process last saw failures
        # there: another process may have failed since, and a success it never hears of
        # would let failures that were not consecutive open the breaker for everyone. An
        # ignored outcome outside HALF_OPEN changes nothing anywhere, nor does a success
        # there when failure_threshold is 1 (policy.success_counts).
        if not permit.probe and (
            event is _IGNORED or (event is _SUCCESS and not self._success_counts)
        ):
            return
        if self._owed is not None:  # an earlier success of ours goes first: order kept
            yield from self._pay_owed()
        elif (sending := self._sending) is not None:  # taken, its script in flight: after it
            with contextlib.suppress(FlightTimeout):
                yield AwaitFlight(sending, _AFTER_SENT)
        if (yield from self._run(event, permit.epoch, permit.probe)) is None:
            self._local_record(event, permit)

    # -- a success left for after the answer -----------------------------------------------
    # Why not skip it: a clean CLOSED view (no failure counted, under cache_ttl old) says
    # the success changes nothing *as of that view*; another process may have counted
    # failures since, and this success must clear them (failures count as consecutive
    # across processes; tests/test_breaker_redis.py's succeeder trusts a 60 s view). The
    # view cannot tell, so the success is sent, but after the answer: the caller waits for
    # nothing. Kept exact: successes that wait in the backlog collapse into one (all of
    # them would reach Redis after whatever it counted meanwhile, so one clears the same),
    # and any other outcome of ours sends the owed success first (or, once its script is
    # in flight, waits for its reply: ``_sending``). A failure, an ignored
    # outcome and a half-open probe's outcome are reported before the answer, as before.

    def _defer_success(self, permit: _SharedPermit) -> Flow[None] | None:
        if not self._success_counts:  # failure_threshold 1: nothing to clear, anywhere
            return None
        with self._lock:
            waiting = self._owed is not None
            self._owed = permit  # the latest permit: an older epoch's would be stale anyway
        if waiting:  # the job already in the backlog sends this one
            return None
        job = self._pay_owed()
        return None if BACKLOG.put(job) else job  # full: the caller sends it itself

    def _pay_owed(self) -> Flow[None]:
        with self._lock:
            permit, self._owed = self._owed, None
            if permit is None:
                return
            # Until its reply: another outcome of ours waits for it (_shared_record), or
            # it could reach Redis first and this success would clear it there.
            sending = self._sending = concurrent.futures.Future()
        try:
            if (yield from self._run(_SUCCESS, permit.epoch)) is None:
                self._local_record(_SUCCESS, permit)
        finally:
            with self._lock:
                if self._sending is sending:
                    self._sending = None
            sending.set_result(None)

    # -- guarding calls: the flows ----------------------------------------------------------
    # Each operation is written once, as a flow of effects (tunegate._drive.Flow) that a
    # caller composes with ``yield from`` under its own driver loop; the methods below run it
    # with drive()/adrive(). A local breaker needs no I/O: its flow returns at once.

    def allow_flow(self) -> Flow[Permit]:
        """:meth:`allow` as a flow: the permit, or :class:`CircuitBreakerOpenError`."""
        if self._link is None:
            return self._local_allow()
        return (yield from self._shared_allow())

    def record_flow(self, permit: Permit, verdict: Verdict) -> Flow[None]:
        """Report how the call of ``permit`` ended: ``"success"``, ``"failure"`` or
        ``"ignored"`` (neither: a 429, a not-found)."""
        flow = self._outcome_flow(_VERDICTS[verdict], permit)
        if flow is not None:
            yield from flow

    # The same two steps for a caller that composes flows and wants no generator made when
    # none is needed (tunegate._attempts): the answer when it is known here, else the flow.

    def admit(self) -> Permit | None:
        """The permit when it is decided without Redis (a local breaker; a shared one's
        fresh answer), None when only :meth:`allow_flow` can say; or
        :class:`CircuitBreakerOpenError` at once."""
        if self._link is None:
            return self._local_allow()
        return self._allow_from_view()

    def settle(self, permit: Permit, verdict: Verdict) -> Flow[None] | None:
        """Count how the call of ``permit`` ended (as :meth:`record_flow`); the flow that
        still reports it to Redis, or None when it is done. The pipeline's form: a shared
        breaker's success outside a half-open probe is reported after the answer
        (``_drive.BACKLOG``), so the caller waits for no round trip."""
        if verdict == "success" and type(permit) is _SharedPermit and not permit.probe:
            return self._defer_success(permit)
        return self._outcome_flow(_VERDICTS[verdict], permit)

    # -- guarding calls: the low-level form ------------------------------------------------
    # The local machine is called directly (the hot path); a shared one's flow is driven.

    def allow(self) -> Permit:
        """Leave for one call, or :class:`CircuitBreakerOpenError` at once."""
        return self._local_allow() if self._link is None else drive(self._shared_allow())

    async def aallow(self) -> Permit:
        """:meth:`allow` for asyncio: talks to Redis without blocking the loop."""
        return self._local_allow() if self._link is None else await adrive(self._shared_allow())

    def _record(self, event: Event, permit: Permit) -> None:
        flow = self._outcome_flow(event, permit)
        if flow is not None:
            drive(flow)

    async def _arecord(self, event: Event, permit: Permit) -> None:
        flow = self._outcome_flow(event, permit)
        if flow is not None:
            await adrive(flow)

    def record_success(self, permit: Permit) -> None:
        self._record(_SUCCESS, permit)

    def record_failure(self, permit: Permit) -> None:
        self._record(_FAILURE, permit)

    def record_ignored(self, permit: Permit) -> None:
        """The call ended as neither success nor failure (a 429, a not-found)."""
        self._record(_IGNORED, permit)

    async def arecord_success(self, permit: Permit) -> None:
        await self._arecord(_SUCCESS, permit)

    async def arecord_failure(self, permit: Permit) -> None:
        await self._arecord(_FAILURE, permit)

    async def arecord_ignored(self, permit: Permit) -> None:
        await self._arecord(_IGNORED, permit)

    def _outcome(self, exc: BaseException | None) -> Event:
        if exc is None:
            return _SUCCESS
        if isinstance(exc, Exception) and self.is_failure(exc):
            return _FAILURE
        return _IGNORED  # cancellation, KeyboardInterrupt, a 429...

    def record(self, permit: Permit, exc: BaseException | None = None) -> None:
        """Record the outcome a call ended with: ``exc`` classified, or success if None."""
        self._record(self._outcome(exc), permit)

    async def arecord(self, permit: Permit, exc: BaseException | None = None) -> None:
        await self._arecord(self._outcome(exc), permit)

    # -- guarding calls: the convenient forms ----------------------------------------------

    # call() and acall() inline allow() and record_success() (and the idle check that makes
    # a success on a healthy local breaker free): one Python call less each, on every call.

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` if the breaker allows it, and record how it ended."""
        permit = self._local_allow() if self._link is None else drive(self._shared_allow())
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.record(permit, exc)
            raise
        if permit is not self._idle:
            self._record(_SUCCESS, permit)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` if the breaker allows it, and record how it ended."""
        if self._link is None:  # no coroutine of ours on the local path
            permit = self._local_allow()
        else:
            permit = await adrive(self._shared_allow())
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            await self.arecord(permit, exc)
            raise
        if permit is not self._idle:
            await self._arecord(_SUCCESS, permit)
        return result

    def __enter__(self) -> Permit:
        permit = self.allow()
        self._cm_permits.set((*self._cm_permits.get(), permit))
        return permit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.record(self._pop_cm_permit(), exc)

    async def __aenter__(self) -> Permit:
        permit = await self.aallow()
        self._cm_permits.set((*self._cm_permits.get(), permit))
        return permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.arecord(self._pop_cm_permit(), exc)

    def _pop_cm_permit(self) -> Permit:
        # A context variable: each thread and each task has its own stack of open blocks.
        *rest, permit = self._cm_permits.get()
        self._cm_permits.set(tuple(rest))
        return permit

    # -- state, stats, reset ---------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state (in shared mode, at most ``cache_ttl`` old; may ask Redis)."""
        return drive(self._state())

    async def astate(self) -> CircuitState:
        """The asyncio form of :attr:`state`."""
        return await adrive(self._state())

    def get_stats(self) -> BreakerStats:
        """State and counters; the counters of calls are this process's own."""
        return drive(self._get_stats())

    async def aget_stats(self) -> BreakerStats:
        return await adrive(self._get_stats())

    def reset(self) -> None:
        """Back to CLOSED with clean counters, in Redis too when shared."""
        drive(self._reset())

    async def areset(self) -> None:
        await adrive(self._reset())

    def _peek(self) -> Flow[_View | None]:
        """The shared state, from the cached answer while it is fresh; None without Redis."""
        if self._link is None:
            return None
        view = self._fresh_view(self._clock.monotonic())
        if view is None:
            view = yield from self._run("peek")
        return view

    def _state(self) -> Flow[CircuitState]:
        view = yield from self._peek()
        return view.state if view is not None else self._local_state()[0].state

    def _get_stats(self) -> Flow[BreakerStats]:
        view = yield from self._peek()
        return self._stats_from_view(view) if view is not None else self._stats_from_local()

    def _reset(self) -> Flow[None]:
        if self._link is not None and (yield from self._run(Event.RESET)) is not None:
            with self._lock:
                self._commit_locked(policy.reset(self._local, self._clock.monotonic()))
            return
        self._local_reset()

    def _stats(self, **values: Any) -> BreakerStats:
        cfg = self.config
        with self._lock:
            counters = (_count_of(self._admitted), self._total_failures, self._rejected)
        return BreakerStats(
            state=str(values["state"]),
            failures=values["failures"],
            successes=values["successes"],
            opened_at=values["opened_at"],
            retry_at=values["retry_at"],
            failure_threshold=cfg.failure_threshold,
            success_threshold=cfg.success_threshold,
            timeout=cfg.timeout,
            half_open_max_calls=cfg.half_open_max_calls,
            half_open_in_flight=values["in_flight"],
            total_calls=counters[0],
            total_failures=counters[1],
            rejected=counters[2],
            shared=values["shared"],
        )

    def _stats_from_view(self, view: _View) -> BreakerStats:
        return self._stats(
            state=view.state,
            failures=view.failures,
            successes=view.successes,
            opened_at=view.opened_at,
            retry_at=view.retry_at,
            in_flight=view.in_flight,
            shared=True,
        )

    def _stats_from_local(self) -> BreakerStats:
        s, now = self._local_state()
        wall = self._clock.time() - now  # monotonic -> UNIX time

        def to_wall(t: float | None) -> float | None:
            return None if t is None else t + wall

        return self._stats(
            state=s.state,
            failures=s.failures,
            successes=s.successes,
            opened_at=to_wall(s.opened_at),
            retry_at=to_wall(policy.retry_at(s, self.config)),
            in_flight=len(s.probes),
            shared=False,
        )

    # -- the design's decorator --------------------------------------------------------------

    @overload
    def protect(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def protect(self, fn: Callable[P, R], /) -> Callable[P, R]: ...

    def protect(self, fn: Callable[P, Any], /) -> Callable[P, Any]:
        """Decorate ``fn`` (a def or an async def) so that every call goes through this
        breaker, as :meth:`call` or :meth:`acall` would run it::

            @breaker.protect
            def fetch(url: str) -> bytes: ...

        An open breaker raises :class:`CircuitBreakerOpenError` without calling ``fn``; how
        a call ended counts by the breaker's rules (:meth:`is_failure`: a 404 or a 429 does
        not count, a 503 or a connection error does).
        """
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(fn, *args, **kwargs)

            return guarded_async

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.call(fn, *args, **kwargs)

        return guarded

    # -- openings ----------------------------------------------------------------------------

    @property
    def openings(self) -> int:
        """Transitions into OPEN this process has seen since the breaker was built (its own,
        and in shared mode the other processes' it heard of from Redis). Refusals are
        counted apart, in ``get_stats()["rejected"]``."""
        return self._openings

    def _count_opening(self, name: str, old: CircuitState, new: CircuitState) -> None:
        # A listener: called outside the breaker's lock, so it takes the lock itself.
        if new is _OPEN and old is not _OPEN:
            with self._lock:
                self._openings += 1


class CircuitBreakerRegistry(LinkOwner):
    """One breaker per provider, all local or all sharing one Redis.

    ``CircuitBreakerRegistry()`` keeps state in memory; ``CircuitBreakerRegistry(redis=...)``
    (a ``redis.Redis``, a ``redis.asyncio.Redis``, a URL or a ``RedisLink``) shares it with
    every process that uses the same Redis and the same names.
    """

    def __init__(
        self,
        redis: RedisLike | None = None,
        *,
        clock: Clock | None = None,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        key_prefix: str = DEFAULT_KEY_PREFIX,
    ) -> None:
        self._adopt(redis)
        self._clock = clock
        self._cache_ttl = cache_ttl
        self._key_prefix = key_prefix
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def register(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        timeout: float = 60.0,
        success_threshold: int = 2,
        expected_exception: ExceptionTypes | None = None,
        half_open_max_calls: int = 1,
        probe_lease: float | None = None,
    ) -> CircuitBreaker:
        """Create the breaker ``name``; registering the same settings again returns it."""
        # Built (and its settings checked) before looking: the one place a config is made.
        candidate = CircuitBreaker(
            name,
            failure_threshold=failure_threshold,
            timeout=timeout,
            success_threshold=success_threshold,
            expected_exception=expected_exception,
            half_open_max_calls=half_open_max_calls,
            probe_lease=probe_lease,
            redis=self._link,
            clock=self._clock,
            cache_ttl=self._cache_ttl,
            key_prefix=self._key_prefix,
        )
        settings = (candidate.config, expected_exception)
        with self._lock:
            existing = self._breakers.get(name)
            if existing is not None:
                if (existing.config, existing.expected_exception) != settings:
                    raise ConfigurationError(
                        f"circuit breaker {name!r} is already registered with other settings"
                    )
                return existing
            for fn in self._listeners:
                candidate.add_listener(fn)
            self._breakers[name] = candidate
        return candidate

    def get(self, name: str) -> CircuitBreaker | None:
        return self._breakers.get(name)

    def __getitem__(self, name: str) -> CircuitBreaker:
        return self._breakers[name]

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._breakers))

    def __len__(self) -> int:
        return len(self._breakers)

    @property
    def breakers(self) -> Mapping[str, CircuitBreaker]:
        """A read-only view: name -> breaker."""
        return MappingProxyType(self._breakers)

    def add_listener(self, fn: Listener) -> None:
        """Listen to every breaker, the ones registered already and the ones to come."""
        with self._lock:
            self._listeners.append(fn)
            breakers = tuple(self._breakers.values())
        for breaker in breakers:
            breaker.add_listener(fn)

    def get_stats(self) -> dict[str, BreakerStats]:
        return {name: b.get_stats() for name, b in tuple(self._breakers.items())}

    async def aget_stats(self) -> dict[str, BreakerStats]:
        return {name: await b.aget_stats() for name, b in tuple(self._breakers.items())}

    def get_state(self) -> dict[str, CircuitState]:
        """The state of every registered breaker, by name (``CircuitState`` is a ``str``:
        ``"closed"``, ``"open"``, ``"half_open"``). Shared breakers may ask Redis."""
        return {name: b.state for name, b in tuple(self._breakers.items())}

    async def aget_state(self) -> dict[str, CircuitState]:
        """The asyncio form of :meth:`get_state`."""
        return {name: await b.astate() for name, b in tuple(self._breakers.items())}

    def reset_all(self) -> None:
        """Reset every registered breaker to CLOSED with clean counters (in Redis too when
        shared): the design's manual reset, for all providers at once. Use with caution."""
        for breaker in tuple(self._breakers.values()):
            breaker.reset()

    async def areset_all(self) -> None:
        """The asyncio form of :meth:`reset_all`."""
        for breaker in tuple(self._breakers.values()):
            await breaker.areset()


# -- fork -------------------------------------------------------------------------------------
# A forked child starts with an empty backlog (_drive.BACKLOG): the job that would send a
# success the parent owed is not there, so the child must not collapse its own successes
# into it (they would never be sent). The parent still sends its own.

_BREAKERS: Final[weakref.WeakSet[CircuitBreaker]] = weakref.WeakSet()


def _forget_owed() -> None:
    for breaker in list(_BREAKERS):
        breaker._owed = breaker._sending = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_owed)
