"""The deadline of one call: the retry policy's, or the caller's own for the calls made
inside :func:`tunegate.deadlines.deadline`. Pure: a context variable and a rule, no clock."""

from __future__ import annotations

import math
from contextvars import ContextVar

from tunegate.exceptions import ConfigurationError

__all__ = ["CALL_DEADLINE", "check_deadline", "deadline_of"]

# Seconds, or None (no bound); unset: the retry policy's deadline holds.
CALL_DEADLINE: ContextVar[float | None] = ContextVar("tunegate_call_deadline")
_UNSET = object()


def check_deadline(seconds: float | None) -> float | None:
    """``seconds`` as a deadline: a finite number > 0, or None; else ConfigurationError."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigurationError("deadline must be a number of seconds or None")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigurationError("deadline must be a finite number > 0, or None")
    return float(seconds)


def deadline_of(policy_deadline: float | None) -> tuple[float | None, bool]:
    """``(seconds, explicit)`` for a call starting now: the caller's deadline when one is
    set (``explicit``: then one attempt may use all of it, not only the HTTP total timeout),
    else the policy's."""
    value = CALL_DEADLINE.get(_UNSET)
    if value is _UNSET:
        return policy_deadline, False
    assert value is None or isinstance(value, float)
    return value, True
