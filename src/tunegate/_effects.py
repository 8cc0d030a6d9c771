"""The leaf effects of the request path: each is one blocking call (``run``) and its
awaitable twin (``arun``) on one component, and nothing else.

The flows (:meth:`tunegate.pipeline.Pipeline.flow` and the parts it holds) yield them and
are sent their results, or have their exceptions thrown in, by the one driver loop of the
public call (:func:`tunegate._drive.drive` / ``adrive``). ``Send`` is where a call reaches
the socket (:class:`tunegate._http.HttpPool`). The breaker and the limiter bring their own
flows (composed with ``yield from``); single-flight's scripts are
``tunegate._redis.ScriptCall`` effects, failing open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from tunegate._clock import Clock
from tunegate._drive import Effect
from tunegate._http import HttpPool, HttpRequest, HttpResponse

__all__ = [
    "AwaitFlight",
    "FlightTimeout",
    "Poll",
    "Send",
    "Sleep",
]


@dataclass(slots=True)
class Send(Effect):
    http: HttpPool
    request: HttpRequest
    timeout: float | None
    patient: bool = False  # ``timeout`` replaces the HTTP total timeout instead of capping it

    def run(self) -> HttpResponse:
        return self.http.send(self.request, timeout=self.timeout, patient=self.patient)

    async def arun(self) -> HttpResponse:
        return await self.http.asend(self.request, timeout=self.timeout, patient=self.patient)


@dataclass(slots=True)
class Sleep(Effect):
    """A backoff sleep, on the pipeline's clock (a FakeClock in tests)."""

    clock: Clock
    seconds: float

    def run(self) -> None:
        self.clock.sleep(self.seconds)

    async def arun(self) -> None:
        await self.clock.asleep(self.seconds)


@dataclass(slots=True)
class Poll(Effect):
    """A real-time pause between two looks at another process's lease."""

    seconds: float

    def run(self) -> None:
        time.sleep(self.seconds)

    async def arun(self) -> None:
        await asyncio.sleep(self.seconds)


class FlightTimeout(Exception):
    """This process's leader of the same call did not finish within the follower's wait."""


@dataclass(slots=True)
class AwaitFlight(Effect):
    """Wait for this process's leader of the same call; :class:`FlightTimeout` after
    ``timeout`` seconds."""

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
