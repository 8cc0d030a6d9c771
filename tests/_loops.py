"""Counting the request path's driver loops in a block, with a profile hook."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from tunegate import _drive


@dataclass
class Loops:
    """Driver loops entered in the block, and the deepest nesting seen."""

    entered: int = 0
    deepest: int = 0


@contextmanager
def driver_loops() -> Iterator[Loops]:
    """Count every ``drive``/``adrive`` entered inside the block (``(1, 1)``: one loop, no
    loop nested in it)."""
    codes = {_drive.drive.__code__, _drive.adrive.__code__}
    seen = Loops()
    depth = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal depth
        if frame.f_code in codes:
            if event == "call":
                depth += 1
                seen.entered += 1
                seen.deepest = max(seen.deepest, depth)
            elif event == "return":
                depth -= 1

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)
