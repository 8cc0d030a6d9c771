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

:data:`BACKLOG` runs the work a call leaves for after its answer (a shared breaker's success
record, single-flight's publish with the cache write): flows of Redis effects the caller
need not wait for, run in order by one worker thread with the blocking drivers.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import logging
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

if TYPE_CHECKING:
    from tunegate._clock import Clock

__all__ = [
    "BACKLOG",
    "AwaitFlight",
    "Backlog",
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


# -- after the answer -----------------------------------------------------------------------

log = logging.getLogger("tunegate")


class _Job:
    __slots__ = ("done", "flow", "key", "seq")

    def __init__(self, flow: Flow[Any], key: str) -> None:
        self.flow = flow
        self.key = key
        self.seq = 0  # its place in the order given (Backlog.put)
        # Only keyed work is waited for, one job at a time (Backlog.pending).
        self.done: concurrent.futures.Future[None] | None = (
            concurrent.futures.Future() if key else None
        )


class Backlog:
    """Work a call leaves for after its answer: each a flow, run in the order given by one
    worker thread (started on demand, gone after ``idle`` seconds without work) with the
    blocking driver, whichever driver the call ran under. Its effects must be ones whose
    failures are values (``RedisCall`` fails open), never raised into anyone's call.

    Bounded: :meth:`put` refuses work beyond ``limit`` pending jobs, and the caller runs it
    itself. Work on a ``key`` can be looked for (:meth:`pending`) and settled
    (:meth:`settled`): a lookup or a lead of that key first runs, or waits for, what this
    process still owes it. :meth:`flush` waits for all of it
    (pipelines flush on close, the process at exit). Not an ``asyncio`` task on the
    caller's loop: ``asyncio.run`` cancels every task left when its coroutine returns, and
    a client's loop may end right after the answer."""

    def __init__(self, limit: int = 1024, idle: float = 5.0) -> None:
        self.limit = limit
        self.idle = idle
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Job] = collections.deque()
        self._keys: dict[str, concurrent.futures.Future[None]] = {}
        self._busy = 0  # queued or running
        self._given = 0  # jobs taken so far (the last one's seq)
        # The seqs of the jobs not done yet, in the order given: the first is the oldest
        # (a caller may run a later job of its key before the worker reaches older ones).
        self._undone: dict[int, None] = {}
        self._worker: threading.Thread | None = None

    def put(self, flow: Flow[Any], key: str = "") -> bool:
        """Leave ``flow`` to the worker; False (nothing taken) when ``limit`` jobs wait."""
        job = _Job(flow, key)
        with self._cond:
            if len(self._queue) >= self.limit:
                return False
            self._queue.append(job)
            self._busy += 1
            self._given += 1
            job.seq = self._given
            self._undone[job.seq] = None
            if job.done is not None:
                self._keys[key] = job.done  # the latest: the jobs run in order
            self._wake_locked()
        return True

    def _wake_locked(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._work, name="tunegate-after-answer", daemon=True
            )
            self._worker.start()
        else:
            self._cond.notify()

    def pending(self, key: str) -> concurrent.futures.Future[None] | None:
        """The future of the last job on ``key`` not yet done, if any (no lock: one read)."""
        return self._keys.get(key) if self._keys else None

    def settled(self, key: str, timeout: float) -> Flow[None]:
        """Make sure the work on ``key`` given so far is done: the jobs on ``key`` still
        queued are taken out and run here, in their order, under the caller's driver (a
        caller never waits behind other keys' work, nor behind a stalled worker); one the
        worker is running is waited for, at most ``timeout`` seconds. Nothing when none is
        pending: one dict look. The worker never waits for itself."""
        if self.pending(key) is None or threading.current_thread() is self._worker:
            return
        with self._cond:
            mine = collections.deque(job for job in self._queue if job.key == key)
            for job in mine:
                self._queue.remove(job)
        try:
            while mine:
                job = mine.popleft()
                try:
                    yield from job.flow
                except Exception:  # a bug in a flow: logged, as the worker does
                    log.exception("tunegate: work left for after an answer failed")
                finally:
                    self._finished(job)
        finally:
            if mine:  # the caller gave up (cancelled): the worker runs the rest, first
                with self._cond:
                    self._queue.extendleft(reversed(mine))
                    self._wake_locked()
        owed = self.pending(key)  # the worker's, running now
        if owed is not None:
            with contextlib.suppress(FlightTimeout):
                yield AwaitFlight(owed, timeout)

    @property
    def busy(self) -> int:
        """Jobs queued or running."""
        return self._busy

    @property
    def given(self) -> int:
        """How many jobs were given so far (a mark for :meth:`flush`'s ``upto``)."""
        return self._given

    def flush(self, timeout: float | None = 10.0, upto: int | None = None) -> bool:
        """Wait until every job given so far (the first ``upto`` given, when set) is done
        (True), or ``timeout`` seconds (False). From the worker itself (a job flushing):
        False at once, nothing to wait for."""
        if threading.current_thread() is self._worker:
            return False
        with self._cond:
            # Not the jobs given while it waits: under a steady stream it would never end.
            given = self._given if upto is None else upto
            return self._cond.wait_for(
                lambda: not self._undone or next(iter(self._undone)) > given, timeout
            )

    async def aflush(self, bound: float | None = 10.0) -> bool:
        """:meth:`flush` for asyncio: the loop goes on while it waits."""
        if not self._busy:
            return True
        return await asyncio.to_thread(self.flush, bound)

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait_for(lambda: bool(self._queue), self.idle)
                    if not self._queue:  # idle: the next put starts a worker again
                        self._worker = None
                        return
                job = self._queue.popleft()
            try:
                drive(job.flow)
            except BaseException:  # a bug in a flow: logged, and the next job runs
                log.exception("tunegate: work left for after an answer failed")
            finally:
                self._finished(job)

    def _finished(self, job: _Job) -> None:
        with self._cond:
            self._busy -= 1
            del self._undone[job.seq]
            if job.done is not None and self._keys.get(job.key) is job.done:
                del self._keys[job.key]
            self._cond.notify_all()
        if job.done is not None:
            job.done.set_result(None)


#: The process's one backlog (one worker thread for every pipeline).
BACKLOG: Final = Backlog()
atexit.register(BACKLOG.flush, 5.0)


def _in_forked_child() -> None:
    """A forked child has no worker, and owes nothing. A ``multiprocessing`` child (fork,
    forkserver) ends with ``os._exit`` after its target, so no ``atexit`` runs there: its
    exit finalizers flush the backlog instead. Registered once its bootstrap has cleared
    the parent's finalizers (``register_after_fork`` runs after that). Other code that ends
    a process with ``os._exit`` (Celery/billiard workers ...) must call
    ``Pipeline.flush()`` first."""
    BACKLOG._reset()
    mp_util = sys.modules.get("multiprocessing.util")  # loaded when multiprocessing forks
    if mp_util is not None:
        mp_util.register_after_fork(BACKLOG, _flush_when_the_child_ends)


def _flush_when_the_child_ends(backlog: Backlog) -> None:
    mp_util = sys.modules["multiprocessing.util"]
    mp_util.Finalize(None, backlog.flush, args=(5.0,), exitpriority=10)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_forked_child)
