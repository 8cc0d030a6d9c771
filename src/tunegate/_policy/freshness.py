"""Cache entry lifetimes, sans-IO: which TTL applies, jitter, and fresh / stale / expired.

Every entry carries two wall-clock stamps: ``fresh_until`` (served as a hit before it) and
``stale_until`` (kept until it, and served only when the provider fails: stale-if-error).
The drivers read the clock and a random number and hand them in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from tunegate.exceptions import ConfigurationError, InvalidInput

__all__ = [
    "DAY",
    "DEFAULT_NEGATIVE_TTL",
    "DEFAULT_STALE_GRACE",
    "DEFAULT_TTL",
    "CacheEntry",
    "Freshness",
    "TtlPolicy",
    "freshness",
]

DAY = 86_400.0
DEFAULT_TTL = 7 * DAY
DEFAULT_NEGATIVE_TTL = 3_600.0
DEFAULT_STALE_GRACE = 7 * DAY


class Freshness(IntEnum):
    FRESH = 0
    STALE = 1  # past fresh_until, within the grace period: only for stale-if-error
    EXPIRED = 2


def freshness(fresh_until: float, stale_until: float, now: float) -> Freshness:
    """Where ``now`` falls in an entry's life."""
    if now < fresh_until:
        return Freshness.FRESH
    if now < stale_until:
        return Freshness.STALE
    return Freshness.EXPIRED


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached answer. ``value`` is immutable (see ``tunegate.cache.frozen``).

    ``negative``: the provider said "not found" (``value`` is what the caller stored, usually
    None). ``stale``: past its TTL but within the grace period; serve it only when the provider
    fails. ``fresh_until`` and ``stale_until`` are UNIX times.
    """

    value: Any
    negative: bool
    stale: bool
    provider: str
    kind: str
    fresh_until: float
    stale_until: float

    def as_stale(self) -> CacheEntry:
        return replace(self, stale=True)


def _check_seconds(name: str, value: float, *, allow_zero: bool) -> float:
    ok = isinstance(value, int | float) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TtlPolicy:
    """TTLs by kind, the fallbacks, jitter and the stale grace period.

    ``jitter`` is the fraction taken off at random: an entry lives between
    ``ttl * (1 - jitter)`` and ``ttl`` seconds, so a batch written together expires spread
    out, and never later than the configured TTL. Negative entries get no stale grace: a
    stale "not found" is weak evidence, and re-asking is cheap.
    """

    ttls: Mapping[str, float]
    default_ttl: float = DEFAULT_TTL
    negative_ttl: float = DEFAULT_NEGATIVE_TTL
    stale_grace: float = DEFAULT_STALE_GRACE
    jitter: float = 0.1

    @classmethod
    def build(
        cls,
        ttls: Mapping[str, float] | None = None,
        *,
        base: Mapping[str, float] | None = None,
        default_ttl: float = DEFAULT_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        stale_grace: float = DEFAULT_STALE_GRACE,
        jitter: float = 0.1,
    ) -> TtlPolicy:
        """``base`` (the providers' table of kinds) with ``ttls`` laid over it, every number
        checked."""
        table = dict(base or {})
        for kind, seconds in (ttls or {}).items():
            table[kind] = _check_seconds(f"ttls[{kind!r}]", seconds, allow_zero=False)
        if not (isinstance(jitter, int | float) and 0.0 <= jitter < 1.0):
            raise ConfigurationError(f"jitter must be in [0, 1), got {jitter!r}")
        return cls(
            ttls=table,
            default_ttl=_check_seconds("default_ttl", default_ttl, allow_zero=False),
            negative_ttl=_check_seconds("negative_ttl", negative_ttl, allow_zero=False),
            stale_grace=_check_seconds("stale_grace", stale_grace, allow_zero=True),
            jitter=float(jitter),
        )

    def ttl_for(self, kind: str, ttl: float | None, negative: bool) -> float:
        """The explicit ``ttl``, else the kind's (or, when negative, the negative) TTL, else
        the default."""
        if ttl is not None:
            if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
                raise InvalidInput("ttl", f"must be a finite number of seconds > 0, got {ttl!r}")
            return float(ttl)
        if negative:
            return self.negative_ttl
        return self.ttls.get(kind, self.default_ttl)

    def stamps(self, now: float, ttl: float, negative: bool, rand: float) -> tuple[float, float]:
        """``(fresh_until, stale_until)`` for an entry written at ``now``; ``rand`` in [0, 1)."""
        fresh_until = now + ttl * (1.0 - self.jitter * rand)
        if negative:
            return fresh_until, fresh_until
        return fresh_until, fresh_until + self.stale_grace
