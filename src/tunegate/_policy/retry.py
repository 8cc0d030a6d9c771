"""Retry decisions, sans-IO: the backoff schedule, jitter, which errors are worth another
attempt, ``Retry-After`` and the overall deadline, and a per-provider retry budget.

Written by hand rather than on tenacity or stamina: the request pipeline drives one pure
decision per failed attempt, and neither library offers decorrelated jitter, retry budgets
or a deadline-aware ``Retry-After`` give-up.

Nothing here reads a clock or sleeps: callers pass ``elapsed``/``now`` and a ``rand``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tunegate._policy.errors import TRANSIENT_STATUSES, TRUNCATED, meaning
from tunegate.exceptions import ConfigurationError

__all__ = [
    "TRANSIENT_STATUSES",
    "TRUNCATED",
    "GiveUp",
    "Retry",
    "RetryBudget",
    "RetryPolicy",
    "is_transient",
    "retry_after_of",
    "transient_reason",
]

Jitter = Literal["full", "decorrelated", "none"]
_JITTERS = ("full", "decorrelated", "none")
# Above this many doublings every schedule is at its cap; avoids float overflow.
_MAX_DOUBLINGS = 63


@dataclass(frozen=True)
class Retry:
    """Try again after ``delay`` seconds. ``reason``: ``rate_limited``, ``unavailable``,
    ``timeout``, ``connection`` or ``truncated``; ``retry_after`` is the provider's ask, if any."""

    delay: float
    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class GiveUp:
    """Stop and raise the last error. ``reason``: ``permanent``, ``attempts``, ``deadline``,
    ``retry_after_beyond_deadline`` or ``budget``."""

    reason: str
    retry_after: float | None = None


def transient_reason(error: BaseException) -> str | None:
    """Why ``error`` is worth another attempt, or None when it is not: the ``reason`` of
    :func:`tunegate._policy.errors.meaning` (its module holds the table).

    - never: :class:`NotFound`, :class:`AuthenticationError`, :class:`InvalidInput`,
      :class:`ConfigurationError`, :class:`CircuitBreakerOpenError`, :class:`RateLimitTimeout`;
    - :class:`RateLimited` -> ``rate_limited``; :class:`ProviderUnavailable` -> ``unavailable``
      (``timeout``/``connection`` when raised from a builtin TimeoutError/ConnectionError);
    - :class:`MalformedResponse` only when the body was cut short (``code == "truncated"``, or
      raised from a builtin ConnectionError/TimeoutError) or came with a 5xx status: invalid
      JSON from a healthy server will be just as invalid next time;
    - any other :class:`ProviderError` by status (429, 500, 502, 503, 504); a provider's own
      codes are mapped to the error tree by its classify hook, before this is asked;
    - builtin ``TimeoutError`` -> ``timeout``, ``ConnectionError`` -> ``connection``;
    - anything else: not transient.
    """
    return meaning(error).reason


def is_transient(error: BaseException) -> bool:
    """True when another attempt may succeed (see :func:`transient_reason` for the table)."""
    return transient_reason(error) is not None


def retry_after_of(error: BaseException) -> float | None:
    """The wait the error carries (``.retry_after``, seconds), or None; negatives become 0."""
    value = getattr(error, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return max(0.0, float(value))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one call. Immutable; share it freely.

    ``max_attempts`` counts the first attempt. ``deadline`` bounds the whole call (attempts
    and sleeps); None means no overall bound. A ``Retry-After`` longer than
    ``max_retry_after`` or than the deadline left is not waited for: the call gives up at
    once and the caller sees the error carrying ``retry_after``.
    """

    max_attempts: int = 4
    base: float = 0.5
    cap: float = 30.0
    jitter: Jitter = "full"
    deadline: float | None = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigurationError("max_attempts must be an int")
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if not self.base >= 0 or not math.isfinite(self.base):
            raise ConfigurationError("base must be a finite number >= 0")
        if not self.cap >= self.base:
            raise ConfigurationError("cap must be >= base")
        if self.jitter not in _JITTERS:
            raise ConfigurationError(f"jitter must be one of {', '.join(_JITTERS)}")
        if self.deadline is not None and not self.deadline > 0:
            raise ConfigurationError("deadline must be > 0 or None")
        if not self.max_retry_after >= 0:
            raise ConfigurationError("max_retry_after must be >= 0")

    def backoff(self, attempt: int, previous: float, rand: Callable[[], float]) -> float:
        """The delay after failed attempt number ``attempt`` (1 = the first).

        - ``none``: ``min(cap, base * 2**(attempt-1))``;
        - ``full`` (AWS "full jitter"): uniform in ``[0, min(cap, base * 2**(attempt-1))]``;
        - ``decorrelated`` (AWS): uniform in ``[base, 3 * previous]``, capped at ``cap``;
          ``previous`` is the last delay (below ``base``, e.g. 0 on the first retry, it counts
          as ``base``).

        ``rand()`` returns a float in ``[0, 1)``.
        """
        if self.jitter == "decorrelated":
            prev = max(previous, self.base)
            return min(self.cap, self.base + rand() * (3.0 * prev - self.base))
        doublings = max(0, attempt - 1)
        if doublings > _MAX_DOUBLINGS:
            ceiling = self.cap
        else:
            ceiling = min(self.cap, self.base * 2.0**doublings)
        return ceiling if self.jitter == "none" else rand() * ceiling

    def decide(
        self,
        *,
        attempt: int,
        error: BaseException,
        elapsed: float,
        previous_delay: float,
        rand: Callable[[], float],
        budget_ok: bool | Callable[[], bool] = True,
    ) -> Retry | GiveUp:
        """What to do after attempt number ``attempt`` failed with ``error``.

        ``elapsed``: seconds since the call began (attempts and sleeps). ``previous_delay``:
        the delay slept before this attempt (0 after the first). ``budget_ok`` is a bool, or
        a callable such as ``lambda: budget.try_spend(now)`` that is called only when every
        other rule allows a retry, so the budget is spent only on retries that happen.

        Checked in order: permanent error, attempts used up, deadline passed, Retry-After
        beyond ``max_retry_after`` or the deadline left, backoff overshooting the deadline,
        budget. The delay is ``max(retry_after, backoff)``.
        """
        reason = transient_reason(error)
        if reason is None:
            return GiveUp("permanent")
        if attempt >= self.max_attempts:
            return GiveUp("attempts")
        left = math.inf if self.deadline is None else self.deadline - elapsed
        if left <= 0:
            return GiveUp("deadline")
        retry_after = retry_after_of(error)
        if retry_after is not None and (retry_after > self.max_retry_after or retry_after > left):
            return GiveUp("retry_after_beyond_deadline", retry_after)
        delay = self.backoff(attempt, previous_delay, rand)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if delay > left:
            return GiveUp("deadline", retry_after)
        if not (budget_ok() if callable(budget_ok) else budget_ok):
            return GiveUp("budget", retry_after)
        return Retry(delay, reason, retry_after)


class RetryBudget:
    """Per-provider retry budget, Finagle/Envoy style: over any ``window`` seconds, retries
    stay within ``ratio`` of the calls plus a floor of ``min_per_second * window`` (so a
    quiet client can still retry). An outage then adds at most ``ratio`` to the load
    instead of multiplying it by ``max_attempts``.

    Counts live in ``slices`` time buckets (constant memory at any call rate). Calls are
    counted only from buckets wholly inside the window and retries from every bucket that
    touches it, so the bound holds exactly for the window ending at each granted retry.

    Not thread-safe: drivers hold ``tunegate.retry.budget_lock(budget)`` around each method.
    ``now`` is a monotonic time in seconds.
    """

    def __init__(
        self,
        ratio: float = 0.2,
        window: float = 10.0,
        min_per_second: float = 1.0,
        *,
        slices: int = 10,
    ) -> None:
        if not ratio >= 0 or not math.isfinite(ratio):
            raise ConfigurationError("ratio must be a finite number >= 0")
        if not window > 0 or not math.isfinite(window):
            raise ConfigurationError("window must be a finite number > 0")
        if not min_per_second >= 0 or not math.isfinite(min_per_second):
            raise ConfigurationError("min_per_second must be a finite number >= 0")
        if slices < 1:
            raise ConfigurationError("slices must be at least 1")
        self.ratio = ratio
        self.window = window
        self.min_per_second = min_per_second
        self._slice = window / slices
        self._floor = min_per_second * window
        # [slice index, calls, retries], oldest first; at most slices + 1 entries.
        self._buckets: deque[list[int]] = deque()
        self._spent_total = 0
        self._denied_total = 0

    def _bucket(self, now: float) -> list[int]:
        self._prune(now)
        index = math.floor(now / self._slice)
        if self._buckets and index <= self._buckets[-1][0]:
            return self._buckets[-1]  # same slice (or a clock read a hair behind a newer one)
        bucket = [index, 0, 0]
        self._buckets.append(bucket)
        return bucket

    def _prune(self, now: float) -> None:
        start = now - self.window
        while self._buckets and (self._buckets[0][0] + 1) * self._slice <= start:
            self._buckets.popleft()

    def _counts(self, now: float) -> tuple[int, int]:
        start = now - self.window
        calls = retries = 0
        for index, c, r in self._buckets:  # after _prune every bucket touches the window
            retries += r
            if index * self._slice >= start:
                calls += c
        return calls, retries

    def record_call(self, now: float) -> None:
        """Count one call (its first attempt; retries are counted by :meth:`try_spend`)."""
        self._bucket(now)[1] += 1

    def try_spend(self, now: float) -> bool:
        """Count one retry and return True, or return False when the budget is exhausted."""
        self._prune(now)
        calls, retries = self._counts(now)
        # The epsilon keeps 0.2 * 15 = 3.0000000000000004 from refusing the 3rd retry.
        if retries + 1 > self.ratio * calls + self._floor + 1e-9:
            self._denied_total += 1
            return False
        self._bucket(now)[2] += 1
        self._spent_total += 1
        return True

    def stats(self, now: float) -> dict[str, float | int]:
        """Calls and retries in the window, retries still available, lifetime totals."""
        self._prune(now)
        calls, retries = self._counts(now)
        allowed = math.floor(self.ratio * calls + self._floor + 1e-9)
        return {
            "calls": calls,
            "retries": retries,
            "available": max(0, allowed - retries),
            "ratio": self.ratio,
            "window": self.window,
            "min_per_second": self.min_per_second,
            "spent_total": self._spent_total,
            "denied_total": self._denied_total,
        }
