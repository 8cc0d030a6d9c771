"""Per-call deadlines: ``with deadline(90): client.search_track(...)``.

A call's deadline bounds all of it (attempts, backoffs, waits for a token). By default it
is the client's retry policy's (``RetryPolicy.deadline``, 30 s) and each attempt is also
cut at the HTTP total timeout (``HttpConfig.total_timeout``, 15 s), so a body that drips
for a minute is abandoned. Inside :func:`deadline`, every call of every client (sync or
asyncio: the setting is a context variable, so tasks started inside inherit it) gets that
deadline instead, and one attempt may run for all of it. See ``docs/retry.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tunegate._policy.deadline import CALL_DEADLINE, check_deadline

__all__ = ["deadline"]


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """The calls made inside take up to ``seconds`` each (None: no bound at all), one
    attempt included. ConfigurationError for anything but a finite number > 0 or None."""
    token = CALL_DEADLINE.set(check_deadline(seconds))
    try:
        yield
    finally:
        CALL_DEADLINE.reset(token)
