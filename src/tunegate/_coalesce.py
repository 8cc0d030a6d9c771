"""The single-flight stage of the request path: concurrent identical misses share one
upstream call, in this process (threads and tasks) and across processes (a Redis lease).

Waiting for another caller's identical call counts against the caller's deadline. A
follower in this process gets its leader's value, or its failure and then applies its own
stale-if-error; a follower in another process gets the published value, "not found", or an
error marker, with the same result. The mechanisms (in-process flights, the lease scripts,
the markers) are in :mod:`tunegate._flight`; this layer decides who leads, who waits and
for how long.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Final

from tunegate._attempts import AttemptPath, Call, Flow
from tunegate._effects import AwaitFlight, CacheGet, FlightTimeout, Poll
from tunegate._flight import (
    CLAIM,
    FINISH,
    LEAD,
    PUBLISHED,
    Flights,
    LeaderGone,
    lease_keys,
    publish_error,
    publish_not_found,
    publish_value,
    read_published,
)
from tunegate.exceptions import NotFound, ProviderError, ProviderUnavailable, TunegateError

__all__ = ["AFTER_DEADLINE", "ERROR_TTL", "SingleFlight"]

#: Seconds a leader may legitimately need after its deadline: its last Redis writes (cache,
#: breaker record, published outcome; 0.5 s socket timeouts each) and ``parse``.
AFTER_DEADLINE: Final = 2.0
#: Seconds an error marker stays published: followers share a failure, later callers retry.
ERROR_TTL: Final = 1.0


class SingleFlight(AttemptPath):
    """Who leads a call, who waits for it, and for how long (see the module)."""

    _flights: Flights
    _attempts_bound: float
    _follow_slack: float
    _publish_ms: int
    _error_ms: int

    def _wait_left(self, call: Call) -> float:
        """Seconds this call may still wait for another caller's identical call."""
        budget = self.retry.deadline
        if budget is None:
            budget = self._attempts_bound
        return budget - (time.monotonic() - call.started)

    def _follow_timeout(self, call: Call) -> float:
        """How long to wait for this process's leader of the same call. The leader started
        no later than we did, and its whole path (waiting for another process, then its
        attempts) fits in its deadline, plus what it does after it. Without a deadline its
        wait and its attempts are each bounded by ``max_attempts x (total timeout + cap)``."""
        extra = self._attempts_bound if self.retry.deadline is None else 0.0
        return max(0.0, self._wait_left(call)) + extra + self._follow_slack

    def _coalesce(self, call: Call, key: str) -> Flow:
        future = None
        for _ in range(3):  # a cancelled leader hands over to a follower; bounded
            future, leads = self._flights.join(key, call.looked_at)
            if leads:
                break
            self._stats.add("coalesced")
            try:
                value = yield AwaitFlight(future, self._follow_timeout(call))
            except LeaderGone:
                future = None
                continue
            except FlightTimeout:
                error = ProviderUnavailable(
                    "timed out waiting for the same call in flight",
                    provider=self.provider,
                    endpoint=call.request.endpoint_template,
                    attempts=0,
                )
                return self._give_up(call, error, 0, "flight_timeout")
            except TunegateError as exc:  # the leader's failure: our own stale-if-error
                return self._shared_failure(call, exc)
            call.cache_state = "coalesced"
            return value
        try:
            value = yield from self._lead_across_processes(call, key)
        except Exception as exc:
            if future is not None:
                self._flights.finish(key, future, error=exc)
            raise
        except BaseException:
            if future is not None:
                self._flights.finish(key, future, error=LeaderGone())
            raise
        if future is not None:
            # A stale entry we served is ours; followers get the failure and decide.
            outcome = {"value": value} if call.failure is None else {"error": call.failure}
            self._flights.finish(key, future, **outcome)
        return value

    def _lead_across_processes(self, call: Call, key: str) -> Flow:
        link = self.redis_link
        if link is None or not link.available:
            return (yield from self._attempts(call))
        token = secrets.token_hex(8)
        keys = lease_keys(key)
        pause = 0.01
        waited = False
        while True:
            reply = yield self._script(CLAIM, keys, token, self._lease_ms)
            if reply is None:  # Redis cannot serve us: lead alone
                return (yield from self._attempts(call))
            state = int(reply[0])
            if state == LEAD:
                break
            if not waited:
                waited = True
                self._stats.add("coalesced")
            if state == PUBLISHED:
                return self._published(call, reply[1])
            left = self._wait_left(call)
            if left <= 0:
                if self.retry.deadline is None:  # a leader that never ends: go ourselves
                    return (yield from self._attempts(call))
                error = ProviderUnavailable(
                    "timed out waiting for another process making the same call",
                    provider=self.provider,
                    endpoint=call.request.endpoint_template,
                    attempts=0,
                )
                return self._give_up(call, error, 0, "flight_timeout")
            yield Poll(min(pause, left))
            pause = min(pause * 2, 0.2)
        call.lease = (token, keys)
        return (yield from self._lead_with_lease(call, key, waited))

    def _lead_with_lease(self, call: Call, key: str, took_over: bool) -> Flow:
        """Make the call holding the lease, then publish its outcome for the processes that
        follow (the value, "not found", or an outage-like failure) and drop the lease."""
        assert call.lease is not None
        token, keys = call.lease
        cache = self.cache
        payload: bytes | None = b""  # b"": publish nothing; None: run no effect at all
        ttl_ms = self._publish_ms
        try:
            if took_over and cache is not None:  # the old leader may have cached it
                entry = yield CacheGet(cache, key)
                if entry is not None and not entry.stale:
                    return self._value_of(call.request, entry)
            value = yield from self._attempts(call)
            if call.failure is not None:  # we served a stale entry: share the failure, not it
                payload, ttl_ms = publish_error(call.failure), self._error_ms
            else:
                payload = publish_value(value)
            return value
        except GeneratorExit:  # abandoned: no effect can run now; the lease will expire
            payload = None
            raise
        except NotFound:
            payload = publish_not_found()
            raise
        except TunegateError as exc:
            payload, ttl_ms = publish_error(exc), self._error_ms
            raise
        finally:
            if payload is not None:
                yield self._script(FINISH, keys, token, payload, ttl_ms)

    def _published(self, call: Call, payload: bytes | str) -> Any:
        call.cache_state = "coalesced"
        value, error = read_published(
            payload, self.provider, call.request.endpoint_template, self.clock.time()
        )
        if error is None:
            return value
        return self._shared_failure(call, error)

    def _shared_failure(self, call: Call, error: TunegateError) -> Any:
        """Another caller's failure of this very call: raised, or our stale entry served."""
        if isinstance(error, NotFound):
            raise error
        attempts = error.attempts if isinstance(error, ProviderError) else 0
        return self._give_up(call, error, attempts, "shared_failure")
