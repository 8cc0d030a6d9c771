"""The clocks drivers read; policies never read one themselves, they are handed ``now``."""

from __future__ import annotations

import asyncio
import time as _time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """What a driver needs of time. ``tunegate.testing.FakeClock`` implements it for tests."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clocks: ``time.monotonic`` for intervals, ``time.time`` for wall-clock stamps."""

    monotonic = staticmethod(_time.monotonic)
    time = staticmethod(_time.time)
    sleep = staticmethod(_time.sleep)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
