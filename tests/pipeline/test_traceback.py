"""How deep a failure surfaces: a failing public call raises its typed error through a
short traceback with one driver loop in it (flows compose with ``yield from``; the error is
raised where the pipeline decides it, its low-level cause kept as ``__cause__``)."""

from __future__ import annotations

import asyncio
import socket
import traceback

import pytest

from tunegate import AsyncSpotifyClient, RetryPolicy, SpotifyClient
from tunegate.exceptions import ProviderUnavailable, TunegateError

MAX_FRAMES = 12
DRIVERS = {"drive", "adrive"}
RETRY = RetryPolicy(max_attempts=2, base=0.01, cap=0.02, deadline=5.0)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def depth(exc: BaseException) -> tuple[int, int]:
    """Frames in ``exc``'s traceback, and how many of them are driver loops (printed)."""
    print("".join(traceback.format_exception(exc)))
    frames = traceback.extract_tb(exc.__traceback__)
    return len(frames), sum(1 for f in frames if f.name in DRIVERS)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_failing_search_track_raises_typed_error_through_a_short_traceback(kind: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    options = {"base_url": url, "auth_url": url, "retry": RETRY, "metrics": False}
    caught: BaseException | None = None
    if kind == "sync":
        client = SpotifyClient("a" * 32, "b" * 32, **options)  # type: ignore[arg-type]
        try:
            client.search_track("Deadmau5", "Strobe")
        except TunegateError as exc:
            caught = exc
        finally:
            client.close()
    else:

        async def go() -> BaseException | None:
            aclient = AsyncSpotifyClient("a" * 32, "b" * 32, **options)  # type: ignore[arg-type]
            try:
                await aclient.search_track("Deadmau5", "Strobe")
            except TunegateError as exc:
                return exc
            finally:
                await aclient.aclose()
            return None

        caught = asyncio.run(go())

    assert isinstance(caught, ProviderUnavailable)
    assert caught.__cause__ is not None  # the connection error, kept as the cause
    frames, drivers = depth(caught)
    print(f"{kind}: {frames} frames, {drivers} driver loop(s)")
    assert drivers == 1
    assert frames <= MAX_FRAMES
