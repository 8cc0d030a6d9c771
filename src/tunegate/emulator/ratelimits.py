"""Each provider's quota as the emulator enforces it: a rolling window per client.

A client may make ``requests`` calls in any ``window`` seconds; the next one is refused
until the oldest leaves the window. Refused calls are not counted, so a client that backs
off recovers as soon as the window frees (the real services may punish persistence
harder; see docs/emulator.md). A small jitter allowance (5 % of the window, at most 50 ms)
keeps a client pacing itself exactly at the limit from being refused because of network
jitter between its clock and ours. The stats count with the same rule, so a client whose
every call was admitted shows ``max_in_window <= limit``.

Pure: callers pass ``now``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from tunegate.emulator.config import RateLimit

__all__ = ["Blocker", "Decision", "RollingWindow", "WindowLimiter", "jitter_allowance"]

# Clients tracked before idle ones are forgotten (then twice as many as remain, and so on).
_SWEEP_AT = 1024


def jitter_allowance(window: float) -> float:
    """How much short of ``window`` a call counts as out of it: 5 % of it, at most 50 ms."""
    return min(0.05 * window, 0.05)


class RollingWindow:
    """The times of one client's calls still inside its window: the single window rule that
    the limiter enforces and ``/_emulator/stats`` reports."""

    __slots__ = ("span", "times")

    def __init__(self, window: float) -> None:
        self.span = window - jitter_allowance(window)
        self.times: deque[float] = deque()

    def expire(self, now: float) -> float:
        """Forget the calls that left the window; returns the horizon (calls at or before it
        are out)."""
        horizon = now - self.span
        times = self.times
        while times and times[0] <= horizon:
            times.popleft()
        return horizon


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until one more call would be admitted (0 when allowed now)

    @property
    def retry_after(self) -> int:
        """Whole seconds, at least 1, as the ``Retry-After`` header carries them."""
        return max(1, math.ceil(self.reset_after))


class WindowLimiter:
    """Rolling-window counters keyed by client. Each holds at most ``limit.requests`` times;
    clients with none left in their window are forgotten once many are tracked."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._calls: dict[str, RollingWindow] = {}
        self._sweep_at = _SWEEP_AT

    def check(self, client: str, now: float) -> Decision:
        """Admit (and count) one call by ``client`` at ``now``, or refuse it."""
        limit = self.limit
        calls = self._calls.get(client)
        if calls is None:
            if len(self._calls) >= self._sweep_at:
                self._forget_idle(now)
            calls = self._calls[client] = RollingWindow(limit.window)
        horizon = calls.expire(now)
        times = calls.times
        if len(times) >= limit.requests:
            wait = times[len(times) - limit.requests] - horizon
            return Decision(False, limit.requests, 0, max(wait, 0.0))
        times.append(now)
        return Decision(True, limit.requests, limit.requests - len(times), 0.0)

    def _forget_idle(self, now: float) -> None:
        for client, calls in list(self._calls.items()):
            calls.expire(now)
            if not calls.times:
                del self._calls[client]
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._calls))

    def __len__(self) -> int:
        return len(self._calls)

    def reset(self) -> None:
        self._calls.clear()


class Blocker:
    """Blocks a client that sends more than ``limit.requests`` calls in ``limit.window``
    seconds, for ``seconds``. Every call counts, blocked ones too, so a client that keeps
    hammering stays blocked until its rate drops (the real rule as the old wiki states it).
    """

    def __init__(self, limit: RateLimit, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        # Per client: its latest calls (no more than needed to see the threshold crossed)
        # and the end of its block.
        self._calls: dict[str, tuple[RollingWindow, list[float]]] = {}
        self._sweep_at = _SWEEP_AT

    def check(self, client: str, now: float) -> tuple[float, bool]:
        """Count one call; (seconds the block still lasts, 0 when not blocked; whether this
        call started the block)."""
        entry = self._calls.get(client)
        if entry is None:
            if len(self._calls) >= self._sweep_at:
                self._forget_idle(now)
            window = RollingWindow(self.limit.window)
            window.times = deque(maxlen=self.limit.requests + 1)
            entry = self._calls[client] = (window, [0.0])
        window, until = entry
        window.expire(now)
        window.times.append(now)
        started = False
        if len(window.times) > self.limit.requests:
            started = until[0] <= now
            until[0] = max(until[0], now + self.seconds)
        return max(until[0] - now, 0.0), started

    def _forget_idle(self, now: float) -> None:
        for client, (window, until) in list(self._calls.items()):
            window.expire(now)
            if not window.times and until[0] <= now:
                del self._calls[client]
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._calls))
