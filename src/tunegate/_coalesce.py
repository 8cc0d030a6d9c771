"""Single-flight: concurrent identical misses share one upstream call, in this process
(threads and tasks) and across processes (a Redis lease).

:class:`SingleFlight` is one of the three parts :class:`tunegate.pipeline.Pipeline` holds.
:meth:`SingleFlight.run` takes the flow that makes the call (the pipeline's attempts and
cache write) and decides who runs it: the first caller of a key leads, later ones wait for
its outcome, and a leader in another process publishes its outcome in Redis for a few
seconds. Outcomes travel as values (the value, or an :class:`~tunegate._attempts.Failed`),
so followers apply their own stale-if-error to a shared failure. Waiting counts against the
caller's deadline, read from the pipeline's clock. The mechanisms (in-process flights, the
lease scripts, the error markers) are in :mod:`tunegate._flight`.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from tunegate._attempts import NO_ANSWER, Call, Failed
from tunegate._clock import Clock
from tunegate._drive import BACKLOG, AwaitFlight, FlightTimeout, Flow, Poll
from tunegate._flight import (
    FINISH,
    LEAD,
    PUBLISHED,
    RENEW,
    Flight,
    Flights,
    LeaderGone,
    lease_keys,
    publish_error,
    publish_not_found,
    publish_value,
    read_published,
)
from tunegate._redis import RedisLink, ScriptCall, lua
from tunegate.exceptions import NotFound, ProviderError, ProviderUnavailable, TunegateError
from tunegate.observability import Recorder

__all__ = ["AFTER_DEADLINE", "ERROR_TTL", "HIT", "LOOKUP_CLAIM", "SingleFlight"]

#: Seconds a leader may legitimately need after its deadline: its last Redis writes (cache,
#: breaker record, published outcome; 0.5 s socket timeouts each) and ``parse``.
AFTER_DEADLINE: Final = 2.0
#: Seconds an error marker stays published: followers share a failure, later callers retry.
ERROR_TTL: Final = 1.0
_WHAT = "request coalescing"

# The claim, folded with the cache lookup when the cache lives in the same Redis: one round
# trip answers a hit, or claims the lease on a miss. KEYS: the cache entry, the lease, the
# published outcome. ARGV: now (the cache's wall clock, or '' to skip the lookup), our
# token, lease ms. Replies: {3, entry} fresh (nothing claimed); {2, outcome, entry}
# published; {1, entry} lead (the lease is ours, also when this SingleFlight already held
# it); {0, entry} follow. ``entry`` is the stored string or false. The freshness test is
# the manager's (now < fresh_until, the header's first stamp); the manager judges the
# entry again with the same ``now``, so both agree.
LOOKUP_CLAIM: Final = lua("singleflight_lookup_claim.lua")
HIT = 3
# FINISH with the cache write of the answer in the same script. KEYS: the lease, the
# published outcome, the cache entry. ARGV: token, outcome ('' for none), outcome ms,
# entry ('' for none), entry ms. Publish, write, then drop our lease.
FINISH_STORE: Final = lua("singleflight_finish_store.lua")


def _finish(
    link: RedisLink,
    keys: tuple[str, str],
    key: str,
    token: str,
    payload: bytes,
    ttl_ms: int,
    write: tuple[bytes, int, Callable[[], None]] | None,
) -> Flow[None]:
    """Publish the outcome and drop the lease, with the cache write when the leader left one."""
    if write is None:
        yield ScriptCall(link, FINISH, keys, (token, payload, ttl_ms), _WHAT)
        return
    args = (token, payload, ttl_ms, write[0], write[1])
    done = yield ScriptCall(link, FINISH_STORE, (*keys, key), args, _WHAT)
    if done is None:
        write[2]()  # counted as a dropped write


@dataclass(frozen=True, slots=True)
class _RedisLease:
    """The lease this process holds on one key; the attempts extend it (``Lease``)."""

    link: RedisLink
    keys: tuple[str, str]
    token: str
    lease_ms: int

    def renew(self, extra_ms: int = 0) -> ScriptCall:
        args = (self.token, self.lease_ms + extra_ms)
        return ScriptCall(self.link, RENEW, self.keys, args, _WHAT)


class SingleFlight:
    """Who leads a call, who waits for it, and for how long (see the module).

    Args:
        provider: for the errors a follower makes when its wait runs out.
        clock: the pipeline's clock; every wait is measured on it.
        recorder: counts ``coalesced``.
        link: Redis for the cross-process lease; None: this process only.
        lease_ms: how long a lease lasts before another process may take over.
        publish_ms / error_ms: how long a value / an error marker stays published.
        attempts_bound: without a deadline, the longest a leader's attempts may take.
        follow_slack: what a leader may need after its deadline (:data:`AFTER_DEADLINE`).
        share_values: publish a leader's value for the other processes (False: they find it
            where the leader left it, through ``recheck``; failures are shared either way).
    """

    def __init__(
        self,
        provider: str,
        *,
        clock: Clock,
        recorder: Recorder,
        link: RedisLink | None = None,
        lease_ms: int = 5000,
        publish_ms: int = 2000,
        error_ms: int = 1000,
        attempts_bound: float = 60.0,
        follow_slack: float = AFTER_DEADLINE,
        share_values: bool = True,
    ) -> None:
        self.provider = provider
        self.clock = clock
        self.link = link
        self.flights = Flights(clock=clock)
        self.follow_slack = follow_slack
        self._rec = recorder
        self._lease_ms = lease_ms
        self._publish_ms = publish_ms
        self._error_ms = error_ms
        self._attempts_bound = attempts_bound
        self._share_values = share_values
        # One token per SingleFlight: a lease it claimed at a lookup is its own whichever
        # of its callers leads in this process (the others follow that one here).
        self._token = secrets.token_hex(8)

    def claim(self, key: str, now: float | None = None) -> ScriptCall | None:
        """The claim of ``key``'s lease, with the lookup of cache key ``key`` in the same
        script when ``now`` (the cache's clock) is given; None without a usable Redis."""
        link = self.link
        if link is None or not link.available:
            return None
        keys = (key, *lease_keys(key))
        args = ("" if now is None else repr(now), self._token, self._lease_ms)
        return ScriptCall(link, LOOKUP_CLAIM, keys, args, _WHAT)

    def run(
        self,
        call: Call,
        key: str,
        lead: Callable[[], Flow[Any]],
        recheck: Callable[[], Flow[Any]] | None = None,
    ) -> Flow[Any]:
        """The outcome of ``call``: led here (``lead()``), or another caller's. ``recheck``
        looks for an answer a leader in another process left before we took its lease
        over (:data:`NO_ANSWER` when there is none)."""
        flight: Flight | None = None
        for _ in range(3):  # a cancelled leader hands over to a follower; bounded
            joined = self.flights.join(key, call.looked_at)
            if isinstance(joined, Flight):  # we lead: no future unless someone follows
                flight = joined
                break
            self._rec.count("coalesced")
            try:
                outcome = yield AwaitFlight(joined, self._follow_timeout(call))
            except LeaderGone:
                continue
            except FlightTimeout:
                return self._timed_out(call, "timed out waiting for the same call in flight")
            except TunegateError as exc:  # the leader raised it: ours to handle too
                return self._shared(exc)
            if isinstance(outcome, Failed):
                return self._shared(outcome.error)
            call.cache_state = "coalesced"
            return outcome
        try:
            outcome = yield from self._lead_across_processes(call, key, lead, recheck)
        except Exception as exc:
            if flight is not None:
                self.flights.finish(key, flight, error=exc)
            raise
        except BaseException:
            if flight is not None:
                self.flights.finish(key, flight, error=LeaderGone())
            raise
        if flight is not None:
            self.flights.finish(key, flight, outcome)
        return outcome

    def _lead_across_processes(
        self,
        call: Call,
        key: str,
        lead: Callable[[], Flow[Any]],
        recheck: Callable[[], Flow[Any]] | None,
    ) -> Flow[Any]:
        link = self.link
        if link is None or not link.available:
            return (yield from lead())
        token, keys = self._token, lease_keys(key)
        pause = 0.01
        waited = False
        reply = call.claimed  # the claim its lookup made, if any
        if BACKLOG.pending(key) is not None:
            # This process's publish of ``key`` still waits in the backlog: the lease is
            # still ours (the claim hands it back to its holder), so claiming now would
            # lead the same call again. Once it ran, the claim finds the published answer
            # or error marker, as a caller in another process does.
            yield from BACKLOG.settled(key, self.follow_slack)
            reply = None  # a claim made before that is stale
        while True:
            if reply is None:
                claim = self.claim(key)
                reply = None if claim is None else (yield claim)
            if reply is None:  # Redis cannot serve us: lead alone
                return (yield from lead())
            state = int(reply[0])
            if state == LEAD:
                break
            if not waited:
                waited = True
                self._rec.count("coalesced")
            if state == PUBLISHED:
                return self._published(call, reply[1])
            left = self._wait_left(call)
            if left <= 0:
                if call.deadline is None:  # a leader that never ends: go ourselves
                    return (yield from lead())
                return self._timed_out(
                    call, "timed out waiting for another process making the same call"
                )
            # Real time: the other process's progress is not measured by our clock.
            yield Poll(min(pause, left))
            pause = min(pause * 2, 0.2)
            reply = None
        call.lease = _RedisLease(link, keys, token, self._lease_ms)
        payload: bytes | None = b""  # b"": publish nothing; None: run no effect at all
        ttl_ms = self._publish_ms
        try:
            outcome = NO_ANSWER
            if waited and recheck is not None:  # the old leader may have cached it
                outcome = yield from recheck()
            if outcome is NO_ANSWER:
                outcome = yield from lead()
            if not isinstance(outcome, Failed):
                payload = publish_value(outcome) if self._share_values else b""
            elif isinstance(outcome.error, NotFound):
                payload = publish_not_found()
            else:
                payload, ttl_ms = publish_error(outcome.error), self._error_ms
            return outcome
        except GeneratorExit:  # abandoned: no effect can run now; the lease will expire
            payload = None
            raise
        except TunegateError as exc:
            payload, ttl_ms = publish_error(exc), self._error_ms
            raise
        finally:
            if payload is not None:
                # After the answer: the caller needs its value, not the publish. Left to the
                # backlog (run here when it is full); a lookup or a lead of ``key`` in this
                # process waits for it first (Pipeline._lookup, above).
                write = call.write  # the cache write the leader left for this script
                finish = _finish(link, keys, key, token, payload, ttl_ms, write)
                if not BACKLOG.put(finish, key):  # keyed: the next lead of key waits
                    yield from finish

    # -- followers -------------------------------------------------------------------------

    def _published(self, call: Call, payload: bytes | str) -> Any:
        call.cache_state = "coalesced"
        endpoint = call.request.endpoint_template
        value, error = read_published(payload, self.provider, endpoint, self.clock.time())
        if error is None:
            return value
        return Failed(error, "not_found" if isinstance(error, NotFound) else "shared_failure", 0)

    @staticmethod
    def _shared(error: TunegateError) -> Failed:
        """Another caller's failure of this very call, as ours (a copy: each caller raises
        its own exception object, with its own traceback)."""
        mine = copy.copy(error)
        if isinstance(error, NotFound):
            return Failed(mine, "not_found", 0)
        attempts = error.attempts if isinstance(error, ProviderError) else 0
        return Failed(mine, "shared_failure", attempts)

    def _timed_out(self, call: Call, message: str) -> Failed:
        error = ProviderUnavailable(
            message, provider=self.provider, endpoint=call.request.endpoint_template, attempts=0
        )
        return Failed(error, "flight_timeout", 0)

    def _wait_left(self, call: Call) -> float:
        """Seconds this call may still wait for another caller's identical call."""
        now = self.clock.monotonic()
        if call.deadline is not None:
            return call.deadline - now
        return self._attempts_bound - (now - call.started)

    def _follow_timeout(self, call: Call) -> float:
        """How long to wait for this process's leader of the same call. The leader started
        no later than we did, and its whole path (waiting for another process, then its
        attempts) fits in its deadline, plus what it does after it. Without a deadline its
        wait and its attempts are each bounded by ``max_attempts x (total timeout + cap)``."""
        extra = self._attempts_bound if call.deadline is None else 0.0
        return max(0.0, self._wait_left(call)) + extra + self.follow_slack
