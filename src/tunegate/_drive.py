"""Effects and their two drivers: how every flow in tunegate runs sync and async alike.

A flow is a generator that yields :class:`Effect` objects (a cache lookup, a script call, a
sleep, an HTTP exchange ...) and receives their results. Its decisions are written once;
:func:`drive` runs it from a thread with each effect's blocking ``run()``, :func:`adrive`
from an asyncio task with each effect's ``arun()``. Written by hand: no library offers
sans-IO flows with both drivers, and the two loops are ten lines each.

The leaf effects every layer yields (a sleep on the component's clock, a real-time poll, a
wait for this process's leader of the same call) live here too, beside ``Effect``: this
module imports nothing of the policy layer, so the limiter, the breaker, single-flight,
the token source and the clients all use these same classes. ``Send``, the one effect
that reaches the socket, is :class:`tunegate._effects.Send`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

if TYPE_CHECKING:
    from tunegate._clock import Clock

__all__ = [
    "AwaitFlight",
    "Effect",
    "FlightTimeout",
    "Flow",
    "Poll",
    "Sleep",
    "adrive",
    "drive",
]

T = TypeVar("T")


class Effect(ABC):
    """One blocking operation and its awaitable twin, and nothing else."""

    __slots__ = ()

    @abstractmethod
    def run(self) -> Any:
        """Do it from a thread (blocking)."""

    @abstractmethod
    async def arun(self) -> Any:
        """Do it in an asyncio task."""


Flow: TypeAlias = Generator[Effect, Any, T]


def drive(flow: Flow[T]) -> T:
    """Run ``flow`` to its end with blocking effects; its exceptions propagate."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        value = error = None
        try:
            value = effect.run()
        except BaseException as exc:  # the flow decides; it re-raises what it does not handle
            error = exc


async def adrive(flow: Flow[T]) -> T:
    """Run ``flow`` to its end, awaiting each effect."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        value = error = None
        try:
            value = await effect.arun()
        except BaseException as exc:
            error = exc


# -- the leaf effects ---------------------------------------------------------------------


@dataclass(slots=True)
class Sleep(Effect):
    """A backoff or a limiter's wait, on the component's clock (a FakeClock in tests)."""

    clock: Clock
    seconds: float

    def run(self) -> None:
        self.clock.sleep(self.seconds)

    async def arun(self) -> None:
        await self.clock.asleep(self.seconds)


@dataclass(slots=True)
class Poll(Effect):
    """A real-time pause between two looks at another process's progress (a lease, a
    shared token): not the component's clock, since that process's progress is measured in
    real time whatever clock we are given."""

    seconds: float

    def run(self) -> None:
        time.sleep(self.seconds)

    async def arun(self) -> None:
        await asyncio.sleep(self.seconds)


class FlightTimeout(Exception):
    """This process's leader of the same call did not finish within the follower's wait."""


@dataclass(slots=True)
class AwaitFlight(Effect):
    """Wait for this process's leader of the same call (a result another thread or task is
    producing); :class:`FlightTimeout` after ``timeout`` seconds."""

    future: concurrent.futures.Future[Any]
    timeout: float

    def run(self) -> Any:
        try:
            return self.future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            if not self.future.done():
                raise FlightTimeout from None
            return self.future.result(0)  # done meanwhile, or the leader's own TimeoutError

    async def arun(self) -> Any:
        # Not asyncio.wrap_future: cancelling one waiter would cancel the shared future.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()

        def relay(done: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the waiting loop is gone
                loop.call_soon_threadsafe(_settle, done, waiter)

        self.future.add_done_callback(relay)
        limit = asyncio.timeout(self.timeout)
        try:
            async with limit:
                return await waiter
        except TimeoutError:
            if not limit.expired():  # the leader's own error was a TimeoutError
                raise
            raise FlightTimeout from None


def _settle(done: concurrent.futures.Future[Any], waiter: asyncio.Future[Any]) -> None:
    if waiter.done():
        return
    exc = done.exception()
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(done.result())
