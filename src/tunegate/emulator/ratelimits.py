"""Each provider's quota as the emulator enforces it: a rolling window per client.

A client may make ``requests`` calls in any ``window`` seconds; the next one is refused
until the oldest leaves the window. Refused calls are not counted, so a client that backs
off recovers as soon as the window frees (the real services may punish persistence
harder; see docs/emulator.md). A small jitter allowance (5 % of the window, at most 50 ms)
keeps a client pacing itself exactly at the limit from being refused because of network
jitter between its clock and ours.

Pure: callers pass ``now``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from tunegate.emulator.config import RateLimit

__all__ = ["Decision", "WindowLimiter"]


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
    """Rolling-window counters keyed by client."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._calls: dict[str, deque[float]] = {}

    def check(self, client: str, now: float) -> Decision:
        """Admit (and count) one call by ``client`` at ``now``, or refuse it."""
        limit = self.limit
        slack = min(0.05 * limit.window, 0.05)
        calls = self._calls.get(client)
        if calls is None:
            calls = self._calls[client] = deque()
        horizon = now - limit.window + slack
        while calls and calls[0] <= horizon:
            calls.popleft()
        if len(calls) >= limit.requests:
            wait = calls[len(calls) - limit.requests] - horizon
            return Decision(False, limit.requests, 0, max(wait, 0.0))
        calls.append(now)
        return Decision(True, limit.requests, limit.requests - len(calls), 0.0)

    def reset(self) -> None:
        self._calls.clear()
