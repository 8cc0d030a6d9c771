"""The local breaker driver: calls, concurrency in HALF_OPEN, listeners, classification, stats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tunegate.breaker import CircuitBreaker, CircuitBreakerRegistry, CircuitState
from tunegate.exceptions import (
    AuthenticationError,
    CircuitBreakerOpenError,
    ConfigurationError,
    InvalidInput,
    MalformedResponse,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RateLimitTimeout,
)
from tunegate.testing import FakeClock

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN
WAIT = 10.0  # the longest any test waits on an event before it fails


class SomeError(Exception):
    pass


def fail() -> None:
    raise ProviderUnavailable("down", provider="spotify", status=503)


def trip(b: CircuitBreaker) -> None:
    for _ in range(b.config.failure_threshold):
        with pytest.raises(ProviderUnavailable):
            b.call(fail)
    assert b.state is OPEN


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, **kwargs: object) -> CircuitBreaker:
    settings: dict[str, object] = {"failure_threshold": 3, "timeout": 60, "success_threshold": 2}
    settings.update(kwargs)
    return CircuitBreaker("spotify", clock=clock, **settings)  # type: ignore[arg-type]


def test_design_defaults() -> None:
    """register() with a name only gives the design's 5 failures / 60 s / 2 successes."""
    b = CircuitBreakerRegistry().register("spotify")
    stats = b.get_stats()
    assert (stats["failure_threshold"], stats["timeout"], stats["success_threshold"]) == (5, 60, 2)
    assert stats["half_open_max_calls"] == 1
    assert b.state is CLOSED
    assert b.state == "closed"


def test_cycle_through_every_state_with_a_fake_clock(clock: FakeClock) -> None:
    """Failures open it, time half-opens it, probe successes close it; refusals meanwhile."""
    b = make(clock)
    assert b.call(lambda: 42) == 42
    trip(b)
    with pytest.raises(CircuitBreakerOpenError):
        b.call(lambda: 1)
    clock.advance(59.9)
    assert b.state is OPEN
    clock.advance(0.1)
    assert b.state is HALF_OPEN
    assert b.call(lambda: "probe 1") == "probe 1"
    assert b.state is HALF_OPEN
    assert b.call(lambda: "probe 2") == "probe 2"
    assert b.state is CLOSED


def test_a_failed_probe_opens_it_again_for_a_full_timeout(clock: FakeClock) -> None:
    """HALF_OPEN -> OPEN on a failure, and the timeout starts over."""
    b = make(clock)
    trip(b)
    clock.advance(60)
    with pytest.raises(ProviderUnavailable):
        b.call(fail)
    assert b.state is OPEN
    clock.advance(59)
    assert b.state is OPEN
    clock.advance(1)
    assert b.state is HALF_OPEN


def test_the_open_error_says_who_and_when(clock: FakeClock) -> None:
    """CircuitBreakerOpenError carries the provider, retry_after and a wall-clock retry_at."""
    b = make(clock)
    trip(b)
    clock.advance(15)
    with pytest.raises(CircuitBreakerOpenError) as info:
        b.allow()
    err = info.value
    assert err.provider == "spotify"
    assert err.retry_after == pytest.approx(45.0)
    assert err.retry_at == pytest.approx(clock.time() + 45.0)
    assert "spotify" in str(err)


def test_get_stats_keys_and_values(clock: FakeClock) -> None:
    """get_stats has the documented keys; opened_at and retry_at are UNIX times."""
    b = make(clock)
    b.call(lambda: None)
    trip(b)
    opened_wall = clock.time()
    with pytest.raises(CircuitBreakerOpenError):
        b.allow()
    stats = b.get_stats()
    assert set(stats) == {
        "state",
        "failures",
        "successes",
        "opened_at",
        "retry_at",
        "failure_threshold",
        "success_threshold",
        "timeout",
        "half_open_max_calls",
        "half_open_in_flight",
        "total_calls",
        "total_failures",
        "rejected",
        "shared",
    }
    assert stats["state"] == "open"
    assert stats["opened_at"] == pytest.approx(opened_wall)
    assert stats["retry_at"] == pytest.approx(opened_wall + 60)
    assert (stats["total_calls"], stats["total_failures"], stats["rejected"]) == (4, 3, 1)
    assert stats["shared"] is False
    closed = make(clock).get_stats()
    assert (closed["opened_at"], closed["retry_at"], closed["failures"]) == (None, None, 0)


def test_reset_closes_an_open_breaker(clock: FakeClock) -> None:
    """reset() from OPEN gives CLOSED with clean counters, and listeners hear of it."""
    b = make(clock)
    seen: list[tuple[str, CircuitState, CircuitState]] = []
    b.add_listener(lambda *args: seen.append(args))
    trip(b)
    b.reset()
    assert b.state is CLOSED
    assert b.get_stats()["failures"] == 0
    assert b.call(lambda: "ok") == "ok"
    assert seen == [("spotify", CLOSED, OPEN), ("spotify", OPEN, CLOSED)]


async def test_async_reset_and_call(clock: FakeClock) -> None:
    """acall guards a coroutine function; areset closes the breaker."""
    b = make(clock)

    async def boom() -> None:
        raise TimeoutError

    for _ in range(3):
        with pytest.raises(TimeoutError):
            await b.acall(boom)
    assert b.state is OPEN
    assert await b.astate() is OPEN

    async def fine(x: int) -> int:
        return x * 2

    with pytest.raises(CircuitBreakerOpenError):
        await b.acall(fine, 1)
    await b.areset()
    assert await b.acall(fine, 21) == 42
    assert (await b.aget_stats())["state"] == "closed"


def test_listeners_hear_every_transition_and_a_bad_one_is_only_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Listeners get (name, old, new) in order; a listener that raises is logged, not raised."""
    b = make(clock, success_threshold=1)
    seen: list[tuple[str, CircuitState, CircuitState]] = []

    def broken(name: str, old: CircuitState, new: CircuitState) -> None:
        raise RuntimeError("listener bug")

    b.add_listener(broken)
    b.add_listener(lambda *args: seen.append(args))
    with caplog.at_level(logging.ERROR, logger="tunegate.breaker"):
        trip(b)
        clock.advance(60)
        with pytest.raises(ProviderUnavailable):
            b.call(fail)
        clock.advance(60)
        b.call(lambda: None)
    assert seen == [
        ("spotify", CLOSED, OPEN),
        ("spotify", OPEN, HALF_OPEN),
        ("spotify", HALF_OPEN, OPEN),
        ("spotify", OPEN, HALF_OPEN),
        ("spotify", HALF_OPEN, CLOSED),
    ]
    assert len([r for r in caplog.records if "listener" in r.getMessage()]) == 5
    b.remove_listener(broken)


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class HTTPLibError(OSError):
    """Like requests.HTTPError: an OSError that carries the response."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.response = _Response(status_code)


def _httpx_status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/")
    return httpx.HTTPStatusError(
        "status", request=request, response=httpx.Response(status, request=request)
    )


FAILURES: list[BaseException] = [
    ProviderUnavailable("503", provider="spotify", status=503),
    ProviderUnavailable("no response", provider="spotify"),
    MalformedResponse("bad json", provider="spotify", status=200),
    ProviderError("generic 502", provider="spotify", status=502),
    TimeoutError(),
    ConnectionResetError(),
    ConnectionRefusedError(),
    OSError("network unreachable"),
    SomeError("expected"),
    HTTPLibError(503),
    _httpx_status_error(502),
    httpx.ConnectError("refused"),
    httpx.ReadTimeout("slow"),
]
NOT_FAILURES: list[BaseException] = [
    RateLimited("429", provider="spotify", status=429, retry_after=5),
    NotFound("404", provider="spotify", status=404),
    AuthenticationError("401", provider="spotify", status=401),
    NotFound("track not found", provider="lastfm", code=6),  # no HTTP status at all
    RateLimited("rate limit exceeded", provider="lastfm", code=29),
    AuthenticationError("invalid api key", provider="lastfm", code=10),
    InvalidInput("isrc", "not an ISRC"),
    CircuitBreakerOpenError("musicbrainz", 1.0, 2.0),
    RateLimitTimeout("spotify", 3.0),
    ValueError("a bug in the caller"),
    HTTPLibError(404),  # an OSError, but its status says "not found"
    HTTPLibError(429),
    _httpx_status_error(404),
    _httpx_status_error(429),
]


@pytest.mark.parametrize("exc", FAILURES, ids=repr)
def test_failures_count(exc: BaseException) -> None:
    """Timeouts, connection errors, 5xx, malformed answers and expected_exception count."""
    assert CircuitBreaker("spotify", expected_exception=SomeError).is_failure(exc)


@pytest.mark.parametrize("exc", NOT_FAILURES, ids=repr)
def test_quota_and_not_found_do_not_count(exc: BaseException) -> None:
    """A 429, a not-found, refused credentials, bad input or a caller bug is not an outage."""
    assert not CircuitBreaker("spotify", expected_exception=(SomeError, OSError)).is_failure(exc)


def test_the_design_example_with_requests_exceptions() -> None:
    """expected_exception=requests.RequestException: connection errors count, a 404 does not."""
    requests = pytest.importorskip("requests")
    b = CircuitBreakerRegistry().register(
        "spotify", failure_threshold=5, timeout=60, expected_exception=requests.RequestException
    )
    not_found = requests.Response()
    not_found.status_code = 404
    unavailable = requests.Response()
    unavailable.status_code = 503
    assert b.is_failure(requests.ConnectionError("refused"))
    assert b.is_failure(requests.Timeout("slow"))
    assert b.is_failure(requests.HTTPError(response=unavailable))
    assert not b.is_failure(requests.HTTPError(response=not_found))


def test_many_429_and_404_never_trip(clock: FakeClock) -> None:
    """Fifty 429s and not-founds in a row leave the breaker CLOSED; they still propagate."""
    b = make(clock)
    errors = [
        RateLimited("429", provider="spotify", status=429),
        NotFound("404", provider="spotify", status=404),
    ]
    for i in range(50):
        err = errors[i % 2]

        def raise_it(err: BaseException = err) -> None:
            raise err

        with pytest.raises(type(err)):
            b.call(raise_it)
    assert b.state is CLOSED
    assert b.get_stats()["total_failures"] == 0


def test_a_not_failure_gives_the_probe_slot_back(clock: FakeClock) -> None:
    """A probe that ends in a 429 releases its slot: the next caller may probe."""
    b = make(clock)
    trip(b)
    clock.advance(60)

    def quota() -> None:
        raise RateLimited("429", provider="spotify", status=429)

    with pytest.raises(RateLimited):
        b.call(quota)
    assert b.get_stats()["half_open_in_flight"] == 0
    assert b.call(lambda: "next probe") == "next probe"


def test_no_lock_is_held_while_the_call_runs(clock: FakeClock) -> None:
    """Inside a guarded call the same breaker answers at once (a held lock would deadlock)."""
    b = make(clock)

    def outer() -> dict[str, object]:
        assert b.call(lambda: "inner") == "inner"
        return dict(b.get_stats())

    assert b.call(outer)["total_calls"] == 2


def _probe_race_threads(b: CircuitBreaker, callers: int) -> tuple[int, int]:
    """``callers`` threads call at once; admitted probes block until every caller is done."""
    release = threading.Event()
    start = threading.Barrier(callers, timeout=WAIT)
    refused = threading.Semaphore(0)

    def probe() -> str:
        assert release.wait(WAIT)
        return "probe"

    def caller() -> str:
        start.wait()
        try:
            return b.call(probe)
        except CircuitBreakerOpenError:
            refused.release()
            return "refused"

    with ThreadPoolExecutor(callers) as pool:
        futures = [pool.submit(caller) for _ in range(callers)]
        # Let the probes finish only once every caller has been admitted or refused:
        # otherwise a quick probe could free its slot for a late caller.
        n_refused = 0
        for _ in range(int(WAIT / 0.01)):
            if n_refused + b.get_stats()["half_open_in_flight"] >= callers:
                break
            n_refused += refused.acquire(timeout=0.01)
        release.set()
        results = [f.result(timeout=WAIT) for f in futures]
    return results.count("probe"), results.count("refused")


@pytest.mark.parametrize("max_probes", [1, 3])
def test_twenty_threads_in_half_open_let_exactly_n_probes_through(
    clock: FakeClock, max_probes: int
) -> None:
    """20 concurrent callers in HALF_OPEN: exactly half_open_max_calls run, the rest refused."""
    b = make(clock, half_open_max_calls=max_probes, success_threshold=5)
    trip(b)
    clock.advance(60)
    probes, refused = _probe_race_threads(b, 20)
    assert (probes, refused) == (max_probes, 20 - max_probes)
    assert b.get_stats()["rejected"] == 20 - max_probes


@pytest.mark.parametrize("max_probes", [1, 3])
async def test_twenty_tasks_in_half_open_let_exactly_n_probes_through(
    clock: FakeClock, max_probes: int
) -> None:
    """20 concurrent asyncio tasks in HALF_OPEN: exactly half_open_max_calls run."""
    b = make(clock, half_open_max_calls=max_probes, success_threshold=5)
    trip(b)
    clock.advance(60)
    release = asyncio.Event()

    async def probe() -> str:
        await release.wait()
        return "probe"

    async def caller() -> str:
        try:
            return await b.acall(probe)
        except CircuitBreakerOpenError:
            return "refused"

    tasks = [asyncio.create_task(caller()) for _ in range(20)]
    for _ in range(100):  # until every task has asked
        await asyncio.sleep(0)
        if sum(t.done() for t in tasks) == 20 - max_probes:
            break
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    assert (results.count("probe"), results.count("refused")) == (max_probes, 20 - max_probes)


async def test_a_cancelled_probe_gives_its_slot_back(clock: FakeClock) -> None:
    """Cancelling a probing task is not a failure, and frees the slot."""
    b = make(clock)
    trip(b)
    clock.advance(60)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(WAIT)

    task = asyncio.create_task(b.acall(hang))
    await asyncio.wait_for(started.wait(), WAIT)
    assert b.get_stats()["half_open_in_flight"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.state is HALF_OPEN
    assert b.get_stats()["half_open_in_flight"] == 0


def test_a_lost_probe_lease_expires(clock: FakeClock) -> None:
    """A probe that never reports frees its slot after probe_lease seconds."""
    b = make(clock, probe_lease=5)
    trip(b)
    clock.advance(60)
    b.allow()  # and never a word back
    with pytest.raises(CircuitBreakerOpenError) as info:
        b.allow()
    assert info.value.retry_after == pytest.approx(5)
    clock.advance(5)
    b.allow()


def test_low_level_permits(clock: FakeClock) -> None:
    """allow / record_* drive the machine the way the request pipeline does."""
    b = make(clock)
    for _ in range(3):
        b.record_failure(b.allow())
    assert b.state is OPEN
    clock.advance(60)
    probe = b.allow()
    b.record_ignored(probe)
    probe = b.allow()
    b.record_success(probe)
    b.record_success(b.allow())
    assert b.state is CLOSED


def test_a_closed_breaker_hands_out_one_permit_per_epoch(clock: FakeClock) -> None:
    """The hot path makes no object: CLOSED admits with the same permit until a transition
    or a reset starts a new epoch, whose calls get a new one; an old epoch's permit is then
    stale (its failure changes nothing)."""
    b = make(clock)
    first = b.allow()
    assert b.allow() is first
    b.record_failure(b.allow())  # counted, still CLOSED, same epoch
    assert b.allow() is first
    b.reset()
    fresh = b.allow()
    assert fresh is not first
    assert fresh.epoch == first.epoch + 1
    for _ in range(3):
        b.record_failure(first)
    assert b.state is CLOSED
    assert b.get_stats()["failures"] == 0


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_success_after_failures_clears_them_on_every_path(
    clock: FakeClock, asynchronous: bool
) -> None:
    """The idle shortcut (a success on a healthy breaker skips the machine) never skips a
    success that matters: F F S F F leaves a threshold-3 breaker closed through call(),
    acall(), record_success() and `with`, and a third failure then opens it."""
    b = make(clock)

    async def afail() -> None:
        fail()

    async def aok() -> None:
        return None

    def ok_once(path: int) -> None:
        if path == 0:
            if asynchronous:
                asyncio.run(b.acall(aok))
            else:
                b.call(lambda: None)
        elif path == 1:
            b.record_success(b.allow())
        else:
            with b:
                pass

    def fail_once() -> None:
        if asynchronous:
            asyncio.run(b.acall(afail))
        else:
            b.call(fail)

    for path in range(3):
        b.reset()
        for _ in range(2):
            with pytest.raises(ProviderUnavailable):
                fail_once()
        ok_once(path)
        assert b.get_stats()["failures"] == 0
        for _ in range(2):
            b.record_failure(b.allow())
        assert b.state is CLOSED
        b.record_failure(b.allow())
        assert b.state is OPEN


def test_admitted_calls_are_counted_from_many_threads(clock: FakeClock) -> None:
    """The hot path counts without the breaker's lock: 8 threads x 2,000 calls are 16,000."""
    b = make(clock)

    def work() -> None:
        for _ in range(2000):
            b.call(int)

    with ThreadPoolExecutor(8) as pool:
        for f in [pool.submit(work) for _ in range(8)]:
            f.result(timeout=WAIT)
    assert b.get_stats()["total_calls"] == 16_000


def test_context_managers(clock: FakeClock) -> None:
    """`with breaker:` records success, failure and not-failure like call()."""
    b = make(clock)
    with b:
        pass
    for _ in range(2):
        with pytest.raises(ConnectionError), b:
            raise ConnectionError
    with pytest.raises(NotFound), b:
        raise NotFound("404", provider="spotify", status=404)
    assert b.get_stats()["failures"] == 2
    with pytest.raises(OSError, match="unreachable"), b:
        raise OSError("network unreachable")
    assert b.state is OPEN
    with pytest.raises(CircuitBreakerOpenError), b:
        pytest.fail("the body must not run")


async def test_async_context_manager(clock: FakeClock) -> None:
    """`async with breaker:` in concurrent tasks keeps each task's permit apart."""
    b = make(clock, failure_threshold=2)

    async def work(fail_it: bool) -> None:
        async with b:
            await asyncio.sleep(0)
            if fail_it:
                raise TimeoutError

    results = await asyncio.gather(work(False), work(True), work(True), return_exceptions=True)
    assert [type(r) for r in results] == [type(None), TimeoutError, TimeoutError]
    assert b.state is OPEN


def test_registry(clock: FakeClock) -> None:
    """register / get / [] / in / get_stats; same settings return the same breaker."""
    breakers = CircuitBreakerRegistry(clock=clock)
    seen: list[tuple[str, CircuitState, CircuitState]] = []
    breakers.add_listener(lambda *args: seen.append(args))
    spotify = breakers.register("spotify", failure_threshold=5, timeout=60, success_threshold=2)
    mb = breakers.register(
        "musicbrainz", failure_threshold=3, timeout=30, expected_exception=KeyError
    )
    assert breakers.register("spotify", failure_threshold=5, timeout=60) is spotify
    with pytest.raises(ConfigurationError):
        breakers.register("spotify", failure_threshold=3)
    assert breakers.get("spotify") is spotify
    assert breakers["musicbrainz"] is mb
    assert breakers.get("lastfm") is None
    assert "lastfm" not in breakers
    with pytest.raises(KeyError):
        breakers["lastfm"]
    assert list(breakers) == ["spotify", "musicbrainz"]
    assert len(breakers) == 2
    empty: dict[str, int] = {}
    for _ in range(3):
        with pytest.raises(KeyError):
            mb.call(lambda: empty["x"])
    stats = breakers.get_stats()
    assert {name: s["state"] for name, s in stats.items()} == {
        "spotify": "closed",
        "musicbrainz": "open",
    }
    assert seen == [("musicbrainz", CLOSED, OPEN)]
    assert breakers.breakers["spotify"] is spotify


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": 0}, {"timeout": -5}, {"half_open_max_calls": 0}, {"cache_ttl": -1}],
)
def test_bad_settings(kwargs: dict[str, object]) -> None:
    """Impossible settings raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        CircuitBreaker("spotify", **kwargs)  # type: ignore[arg-type]


def test_every_call_path_counts(clock: FakeClock) -> None:
    """total_calls, total_failures and rejected count admitted, failed and refused calls."""
    b = make(clock)
    calls: list[Callable[[], object]] = [lambda: 1, fail, fail, lambda: 2, fail, fail, fail, int]
    for fn in calls:
        with contextlib.suppress(ProviderUnavailable, CircuitBreakerOpenError):
            b.call(fn)
    stats = b.get_stats()
    assert (stats["total_calls"], stats["total_failures"], stats["rejected"]) == (7, 5, 1)


async def test_close_without_redis_does_nothing(clock: FakeClock) -> None:
    """close() and aclose() exist on local breakers and registries, and leave them usable."""
    registry = CircuitBreakerRegistry(clock=clock)
    b = registry.register("spotify")
    registry.close()
    await registry.aclose()
    b.close()
    await b.aclose()
    assert b.call(lambda: "ok") == "ok"
