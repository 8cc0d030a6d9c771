"""How fast a token bucket is being drained, and when it would run dry at that pace.

A :class:`ConsumptionMeter` keeps samples of one bucket's cumulative count of tokens taken
in this process (``(monotonic seconds, tokens)``), appended whenever the limiter looks at
the bucket (every ``get_stats()``, every ``acquire()``), and gives the rate between the
newest sample and the oldest one still covering the window. :func:`usage` turns that rate,
the bucket's refill rate and the tokens available now into the figures ``get_stats()``
reports. Pure arithmetic and a lock: no clock of its own, no I/O.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Final, TypedDict

__all__ = ["DEFAULT_WINDOW", "ConsumptionMeter", "Usage", "usage"]

DEFAULT_WINDOW: Final = 60.0
_MAX_SAMPLES: Final = 512  # a bound on memory whatever the caller's pace


class Usage(TypedDict):
    """``consumed``: tokens this process took (cumulative). ``consumption_rate``: tokens per
    second over about the last ``consumption_window`` seconds (None until two looks at the
    bucket are apart in time). ``fill_ratio``: available tokens / capacity, 0..1.
    ``seconds_to_exhaustion``: when the bucket would be empty if consumption went on at
    that rate while it refills at its own (0 when not even one token is there now; None when
    consumption does not outpace the refill, or is not known yet)."""

    consumed: int
    consumption_rate: float | None
    consumption_window: float
    fill_ratio: float
    seconds_to_exhaustion: float | None


class ConsumptionMeter:
    """Samples of a cumulative token count, and the rate over a recent window."""

    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        if not window > 0:
            raise ValueError(f"window must be positive seconds, not {window!r}")
        self.window = window
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int]] = deque(maxlen=_MAX_SAMPLES)
        self.extra = 0  # tokens beyond one per acquisition (multi-token acquires)

    @property
    def empty(self) -> bool:
        return not self._samples

    def add_extra(self, tokens: int) -> None:
        with self._lock:
            self.extra += tokens

    def observe(self, now: float, acquisitions: int) -> int:
        """Record the count at ``now`` (``acquisitions`` plus the extra tokens); return it."""
        with self._lock:
            total = acquisitions + self.extra
            samples = self._samples
            if samples and now < samples[-1][0]:
                now = samples[-1][0]  # a clock never runs back here
            # At most ~128 samples per window: close looks only move the newest one.
            if len(samples) >= 2 and now - samples[-2][0] < self.window / 128:
                samples[-1] = (now, total)
            else:
                samples.append((now, total))
            # Keep one sample at or before the window's start, so the window stays covered.
            while len(samples) > 2 and samples[1][0] <= now - self.window:
                samples.popleft()
            return total

    def rate(self) -> float | None:
        """Tokens per second between the oldest kept sample and the newest, or None."""
        with self._lock:
            if len(self._samples) < 2:
                return None
            (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return max(0.0, (n1 - n0) / (t1 - t0))


def usage(
    *,
    consumed: int,
    consumption_rate: float | None,
    window: float,
    available: float,
    capacity: int,
    refill_rate: float,
) -> Usage:
    """The figures of one bucket: see :class:`Usage`."""
    fill = min(1.0, max(0.0, available / capacity)) if capacity > 0 else 0.0
    exhaustion: float | None
    if available < 1.0:
        exhaustion = 0.0
    elif consumption_rate is None or consumption_rate <= refill_rate:
        exhaustion = None
    else:
        exhaustion = available / (consumption_rate - refill_rate)
    return Usage(
        consumed=consumed,
        consumption_rate=consumption_rate,
        consumption_window=window,
        fill_ratio=fill,
        seconds_to_exhaustion=exhaustion,
    )
