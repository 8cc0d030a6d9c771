"""Fair share between callers: waiters of one bucket served round-robin by caller key.

Time stands still (``GateClock``): each waiter's sleeps add up to exactly the slot it was
given, so sorting the callers by the seconds they waited gives the order of the grants,
whatever the thread scheduling.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

import tunegate
from tests.test_ratelimit import GateClock, limiter_with
from tunegate.exceptions import ConfigurationError
from tunegate.ratelimit import RateLimiter, caller, current_caller


def grant_order(waits: list[tuple[str, float]]) -> list[str]:
    """The callers' keys in the order their slots came (ties keep arrival order)."""
    return [key for key, _ in sorted(waits, key=lambda item: item[1])]


def run_threads(limiter: RateLimiter, clock: GateClock, keys: Sequence[str | None]) -> list[str]:
    """One thread per key, each arriving after the one before has its slot; the grants'
    order, by key ('-' for no key)."""
    waits: list[tuple[str, float]] = []
    lock = threading.Lock()

    def worker(key: str | None) -> None:
        if key is None:
            waited = limiter.acquire("spotify")
        else:
            with caller(key):
                waited = limiter.acquire("spotify")
        with lock:
            waits.append((key or "-", waited))

    threads = []
    for i, key in enumerate(keys):
        thread = threading.Thread(target=worker, args=(key,))
        thread.start()
        threads.append(thread)
        clock.wait_for_sleepers(i + 1)
    clock.open()
    for thread in threads:
        thread.join(10)
    assert len(waits) == len(keys)
    return grant_order(waits)


def test_a_light_caller_is_not_starved_by_a_heavy_one() -> None:
    """20 waiters of one key queued, then 2 of another: the 2 go within the first 4 grants."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    limiter.acquire("spotify")  # the only token; everyone after waits
    order = run_threads(limiter, clock, ["heavy"] * 20 + ["light"] * 2)
    assert [i for i, key in enumerate(order) if key == "light"] == [1, 3]
    assert order.count("heavy") == 20
    assert limiter.get_stats()["spotify"]["granted"] == 23
    assert not limiter.buckets["spotify"]._queue.waiters  # everyone left the queue


def test_without_keys_the_order_is_arrival() -> None:
    """The same arrivals with no caller key: first come, first served, as before."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    limiter.acquire("spotify")
    order = run_threads(limiter, clock, [None] * 22)
    assert order == ["-"] * 22
    assert sorted(s for _, s in clock.slept) == pytest.approx([0.1 * i for i in range(1, 23)])


def test_the_slots_are_the_ones_reserved() -> None:
    """Reordering hands out the bucket's own slots: 22 waiters, 22 slots an interval apart."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    limiter.acquire("spotify")
    waits: list[float] = []

    def worker(key: str) -> None:
        with caller(key):
            waits.append(limiter.acquire("spotify"))

    threads = []
    for i, key in enumerate(["a"] * 8 + ["b"] * 3 + ["c"] * 2 + ["a"] * 2):
        thread = threading.Thread(target=worker, args=(key,))
        thread.start()
        threads.append(thread)
        clock.wait_for_sleepers(i + 1)
    clock.open()
    for thread in threads:
        thread.join(10)
    assert sorted(waits) == pytest.approx([0.1 * i for i in range(1, 16)])


async def test_tasks_are_served_round_robin_by_key() -> None:
    """The asyncio form: tasks started inside caller() carry its key."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    await limiter.aacquire("spotify")

    tasks = []
    for i, key in enumerate(["heavy"] * 20 + ["light"] * 2):
        tasks.append(asyncio.create_task(acquire_as(limiter, key)))
        await clock.await_sleepers(i + 1)
    clock.open()
    order = grant_order(list(await asyncio.gather(*tasks)))
    assert [i for i, key in enumerate(order) if key == "light"] == [1, 3]
    assert current_caller() is None


def test_a_waiter_is_never_moved_past_its_timeout() -> None:
    """Waiters whose timeout leaves no room keep their slots; the newcomer goes after them."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    limiter.acquire("spotify")
    waits: list[tuple[str, float]] = []

    def heavy(timeout: float) -> None:
        with caller("heavy"):
            waits.append(("heavy", limiter.acquire("spotify", timeout=timeout)))

    def light() -> None:
        with caller("light"):
            waits.append(("light", limiter.acquire("spotify")))

    # Slots 0.1, 0.2, 0.3, each timeout 0.01 s more: none of them can move one slot later.
    threads = [threading.Thread(target=heavy, args=(0.1 * i + 0.01,)) for i in (1, 2, 3)]
    threads.append(threading.Thread(target=light))
    for i, thread in enumerate(threads):
        thread.start()
        clock.wait_for_sleepers(i + 1)
    clock.open()
    for thread in threads:
        thread.join(10)
    ordered = sorted(waits, key=lambda item: item[1])
    assert [key for key, _ in ordered] == ["heavy", "heavy", "heavy", "light"]
    assert [wait for _, wait in ordered] == pytest.approx([0.1, 0.2, 0.3, 0.4])


async def test_a_cancelled_caller_that_went_ahead_gives_no_slot_back() -> None:
    """The slot a queue-jumper reserved now belongs to the waiter it moved back: when the
    jumper is cancelled that slot stays spent, so the next caller does not share it."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    await limiter.aacquire("spotify")

    async def one(key: str) -> float:
        with caller(key):
            return await limiter.aacquire("spotify")

    heavies = []
    for i in range(3):  # slots 0.1, 0.2, 0.3
        heavies.append(asyncio.create_task(one("heavy")))
        await clock.await_sleepers(i + 1)
    light = asyncio.create_task(one("light"))  # takes 0.2; the last heavy moves to 0.4
    await clock.await_sleepers(4)
    light.cancel()
    with pytest.raises(asyncio.CancelledError):
        await light
    clock.open()
    assert sorted(await asyncio.gather(*heavies)) == pytest.approx([0.1, 0.3, 0.4])
    assert await limiter.aacquire("spotify") == pytest.approx(0.5)


def test_caller_checks_its_key_and_is_exported() -> None:
    """caller() is tunegate.caller; an empty or non-string key is refused."""
    assert tunegate.caller is caller
    for bad in ("", None, 3):
        with pytest.raises(ConfigurationError), caller(bad):  # type: ignore[arg-type]
            pass
    with caller("outer"):
        with caller("inner"):
            assert current_caller() == "inner"
        assert current_caller() == "outer"


async def acquire_as(limiter: RateLimiter, key: str) -> tuple[str, float]:
    """One token for ``key``'s caller: (key, seconds waited)."""
    with caller(key):
        assert current_caller() == key
        return key, await limiter.aacquire("spotify")


async def test_a_cancelled_waiter_costs_its_key_no_turn() -> None:
    """A key's last waiter cancelled: the key's next waiter takes the turn it left, not the
    one after (it would go behind one more heavy waiter per cancellation)."""
    clock = GateClock()
    limiter = limiter_with(clock, rate=10.0, capacity=1)
    await limiter.aacquire("spotify")

    tasks = []
    for i, key in enumerate(["heavy"] * 6 + ["light"] * 2):
        tasks.append(asyncio.create_task(acquire_as(limiter, key)))
        await clock.await_sleepers(i + 1)
    gone = tasks.pop()  # the light key's second waiter
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    tasks.append(asyncio.create_task(acquire_as(limiter, "light")))  # it comes back
    await clock.await_sleepers(8)
    clock.open()
    order = grant_order(list(await asyncio.gather(*tasks)))
    assert [i for i, key in enumerate(order) if key == "light"] == [1, 3]
