"""Damping retries after a quota refusal (a 429) across the calls of one provider.

When a provider refuses for quota, the limiter already pauses it for every caller. Without
more, every refused call then retries on its own once the pause ends, so N concurrent calls
under sustained refusals send N requests per pause. Here the first refused call to want a
retry becomes the probe; the others wait for its answer: refused again, they give up
without sending (their retry would be refused too); answered, they go on. Repeated
refusals so cost about one request per pause.

No I/O and no clock: waiting is the caller's (it gets a ``concurrent.futures.Future``
that both drivers can wait on: ``tunegate._drive.AwaitFlight``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading

__all__ = ["QuotaProbe"]


class QuotaProbe:
    """One provider's probe after a quota refusal (see the module). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probe: concurrent.futures.Future[bool] | None = None

    def join(self) -> tuple[bool, concurrent.futures.Future[bool]]:
        """A refused call wants a retry: ``(True, probe)`` when it is to send the probe and
        settle ``probe`` with its answer, ``(False, probe)`` when another call's probe is
        under way: its result is True if the probe was refused again."""
        with self._lock:
            if self._probe is not None and not self._probe.done():
                return False, self._probe
            self._probe = concurrent.futures.Future()
            return True, self._probe

    @staticmethod
    def settle(probe: concurrent.futures.Future[bool], refused: bool) -> None:
        """The probe's answer (True: refused again); a second answer is ignored."""
        if not probe.done():
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # settled meanwhile
                probe.set_result(refused)
