"""Provider-compatible pass-through (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

if TYPE_CHECKING:
    from tunegate.service.ops import State

__all__ = ["routes"]


def routes(state: State) -> list[Route]:
    return []
