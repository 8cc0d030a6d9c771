"""Retrying a callable: the thread and asyncio drivers of :mod:`tunegate._policy.retry`.

Both drivers share one per-call state object (:class:`_Run`) that asks the policy what to
do after each failure; the drivers only call, sleep and re-raise. Per-call state means one
:class:`Retrying` (or one decorated function) is safe to use from many threads and
coroutines at once.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast, overload

from tunegate._clock import Clock, SystemClock
from tunegate._policy.retry import (
    GiveUp,
    Retry,
    RetryBudget,
    RetryPolicy,
    is_transient,
    retry_after_of,
)
from tunegate.exceptions import ProviderError

__all__ = [
    "GiveUp",
    "Retry",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "Retrying",
    "budget_lock",
    "is_transient",
    "retry",
    "retry_after_of",
]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("tunegate.retry")

_budget_locks: weakref.WeakKeyDictionary[RetryBudget, threading.Lock] = weakref.WeakKeyDictionary()
_budget_locks_guard = threading.Lock()


def budget_lock(budget: RetryBudget) -> threading.Lock:
    """The one lock guarding ``budget`` in this process. Every driver that touches a budget
    (this module, the request pipeline) holds it around each budget method, and only then."""
    with _budget_locks_guard:
        lock = _budget_locks.get(budget)
        if lock is None:
            lock = _budget_locks[budget] = threading.Lock()
        return lock


@dataclass(frozen=True)
class RetryEvent:
    """One failed attempt and what was decided about it (passed to the hooks).

    ``attempt`` is the attempt that failed (1 = the first); ``elapsed`` the seconds since
    the call began; ``decision.delay`` (for a :class:`Retry`) the sleep that follows.
    """

    attempt: int
    error: BaseException
    decision: Retry | GiveUp
    elapsed: float

    @property
    def retrying(self) -> bool:
        return isinstance(self.decision, Retry)


class _Run:
    """The state of one call after its first failure: attempt count, start time, last
    delay. The only retry loop logic; the sync and async drivers differ only in how they
    call and sleep. A first attempt that succeeds makes none (see :meth:`Retrying._begin`)."""

    __slots__ = ("_owner", "_start", "attempt", "previous_delay")

    def __init__(self, owner: Retrying, start: float) -> None:
        self._owner = owner
        self._start = start
        self.attempt = 1
        self.previous_delay = 0.0

    def after_failure(self, error: Exception) -> float | None:
        """The delay before the next attempt, or None to re-raise ``error`` now."""
        owner = self._owner
        now = owner.clock.monotonic()
        elapsed = now - self._start
        decision = owner.policy.decide(
            attempt=self.attempt,
            error=error,
            elapsed=elapsed,
            previous_delay=self.previous_delay,
            rand=owner.rand,
            budget_ok=True if owner.budget is None else functools.partial(owner._spend, now),
        )
        event = RetryEvent(self.attempt, error, decision, elapsed)
        if isinstance(decision, GiveUp):
            if isinstance(error, ProviderError):
                error.attempts = self.attempt
            logger.debug(
                "giving up after attempt %d: %s (%s)",
                self.attempt,
                decision.reason,
                type(error).__name__,
            )
            if owner.on_give_up is not None:
                owner.on_give_up(event)
            return None
        logger.debug(
            "attempt %d failed (%s, %s); retrying in %.3fs",
            self.attempt,
            decision.reason,
            type(error).__name__,
            decision.delay,
        )
        if owner.on_retry is not None:
            owner.on_retry(event)
        self.attempt += 1
        self.previous_delay = decision.delay
        return decision.delay


class Retrying:
    """Calls a function again on transient failures, as :class:`RetryPolicy` decides.

    ``budget`` is the provider's :class:`RetryBudget` (share one per provider); ``clock``
    defaults to the system clock and ``rand`` to :func:`random.random`. ``on_retry`` is
    called before each sleep, ``on_give_up`` when the last error is about to be raised;
    exceptions from either propagate. On giving up the last error is re-raised unchanged,
    except that a :class:`ProviderError`'s ``attempts`` is set to the attempts made; a
    :class:`RateLimited` whose ``retry_after`` lies beyond the deadline is raised at once.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        *,
        on_give_up: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        self.policy = policy if policy is not None else RetryPolicy()
        self.budget = budget
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.rand: Callable[[], float] = rand if rand is not None else random.random
        self.on_retry = on_retry
        self.on_give_up = on_give_up
        self._budget_lock = budget_lock(budget) if budget is not None else threading.Lock()

    def _spend(self, now: float) -> bool:
        assert self.budget is not None
        with self._budget_lock:
            return self.budget.try_spend(now)

    def _begin(self) -> float:
        """A call starts: its start time, counted in the budget."""
        start = self.clock.monotonic()
        if self.budget is not None:
            with self._budget_lock:
                self.budget.record_call(start)
        return start

    # A call that succeeds at once costs one clock read and no per-call object: its _Run
    # is made at the first failure.

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, retried; sleeps with ``clock.sleep``."""
        start = self.clock.monotonic() if self.budget is None else self._begin()
        run: _Run | None = None
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as error:
                if run is None:
                    run = _Run(self, start)
                delay = run.after_failure(error)
                if delay is None:
                    raise
            self.clock.sleep(delay)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)``, retried; sleeps with ``clock.asleep``."""
        start = self.clock.monotonic() if self.budget is None else self._begin()
        run: _Run | None = None
        while True:
            try:
                return await fn(*args, **kwargs)
            except Exception as error:
                if run is None:
                    run = _Run(self, start)
                delay = run.after_failure(error)
                if delay is None:
                    raise
            await self.clock.asleep(delay)


@overload
def retry(fn: F, /) -> F: ...


@overload
def retry(
    *,
    policy: RetryPolicy | None = ...,
    budget: RetryBudget | None = ...,
    clock: Clock | None = ...,
    rand: Callable[[], float] | None = ...,
    on_retry: Callable[[RetryEvent], None] | None = ...,
    on_give_up: Callable[[RetryEvent], None] | None = ...,
) -> Callable[[F], F]: ...


def retry(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    policy: RetryPolicy | None = None,
    budget: RetryBudget | None = None,
    clock: Clock | None = None,
    rand: Callable[[], float] | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    on_give_up: Callable[[RetryEvent], None] | None = None,
) -> Any:
    """Decorator form of :class:`Retrying` for sync and ``async def`` functions alike:
    ``@retry`` or ``@retry(policy=RetryPolicy(max_attempts=3))``. The signature is kept."""
    retrying = Retrying(policy, budget, clock, rand, on_retry, on_give_up=on_give_up)

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await retrying.acall(func, *args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return retrying.call(func, *args, **kwargs)

        return cast(F, wrapper)

    return decorate if fn is None else decorate(fn)
