"""Effects and their two drivers: how every flow in tunegate runs sync and async alike.

A flow is a generator that yields :class:`Effect` objects (a cache lookup, a script call, a
sleep, an HTTP exchange ...) and receives their results. Its decisions are written once;
:func:`drive` runs it from a thread with each effect's blocking ``run()``, :func:`adrive`
from an asyncio task with each effect's ``arun()``. Written by hand: no library offers
sans-IO flows with both drivers, and the two loops are ten lines each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator
from typing import Any, TypeAlias, TypeVar

__all__ = ["Effect", "Flow", "adrive", "drive"]

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
