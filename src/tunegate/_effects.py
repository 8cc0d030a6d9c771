"""The effects the request flow asks for.

The flow (``Pipeline._miss`` and what it calls) is a generator: it yields an effect, and is
sent the effect's result back or has its exception thrown in. Each effect is one blocking
call (``run``) and its awaitable twin (``arun``) on one component, and nothing else, so
every decision stays in the flow, written once. ``tunegate._redis.drive`` and ``adrive``
(the same loops the limiter and the breaker use) run them; single-flight's scripts are
``tunegate._redis.ScriptCall`` effects, failing open as every shared piece does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from tunegate._clock import Clock
from tunegate._http import HttpPool, HttpRequest, HttpResponse
from tunegate._policy.breaker import Permit
from tunegate._policy.freshness import CacheEntry
from tunegate._redis import Effect
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.ratelimit import RateLimiter

__all__ = [
    "Acquire",
    "Adjust",
    "Allow",
    "AwaitFlight",
    "CacheGet",
    "CacheStore",
    "FlightTimeout",
    "Poll",
    "Record",
    "Send",
    "Sleep",
]


@dataclass(slots=True)
class CacheGet(Effect):
    cache: CacheManager
    key: str

    def run(self) -> CacheEntry | None:
        return self.cache.lookup(self.key)

    async def arun(self) -> CacheEntry | None:
        return await self.cache.alookup(self.key)


@dataclass(slots=True)
class CacheStore(Effect):
    cache: CacheManager
    key: str
    value: Any
    ttl: float | None
    negative: bool

    def run(self) -> Any:
        return self.cache.store(self.key, self.value, ttl=self.ttl, negative=self.negative)

    async def arun(self) -> Any:
        return await self.cache.astore(self.key, self.value, ttl=self.ttl, negative=self.negative)


@dataclass(slots=True)
class Allow(Effect):
    breaker: CircuitBreaker

    def run(self) -> Permit:
        return self.breaker.allow()

    async def arun(self) -> Permit:
        return await self.breaker.aallow()


@dataclass(slots=True)
class Record(Effect):
    breaker: CircuitBreaker
    permit: Permit
    verdict: str  # "success", "failure", "ignored"

    def run(self) -> None:
        getattr(self.breaker, f"record_{self.verdict}")(self.permit)

    async def arun(self) -> None:
        await getattr(self.breaker, f"arecord_{self.verdict}")(self.permit)


@dataclass(slots=True)
class Acquire(Effect):
    limiter: RateLimiter
    provider: str
    timeout: float | None

    def run(self) -> float:
        return self.limiter.acquire(self.provider, timeout=self.timeout)

    async def arun(self) -> float:
        return await self.limiter.aacquire(self.provider, timeout=self.timeout)


@dataclass(slots=True)
class Adjust(Effect):
    limiter: RateLimiter
    provider: str
    response: HttpResponse

    def run(self) -> None:
        self.limiter.adjust_from_headers(self.provider, self.response.headers, self.response.status)

    async def arun(self) -> None:
        headers, status = self.response.headers, self.response.status
        await self.limiter.aadjust_from_headers(self.provider, headers, status)


@dataclass(slots=True)
class Send(Effect):
    http: HttpPool
    request: HttpRequest
    timeout: float | None

    def run(self) -> HttpResponse:
        return self.http.send(self.request, timeout=self.timeout)

    async def arun(self) -> HttpResponse:
        return await self.http.asend(self.request, timeout=self.timeout)


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
