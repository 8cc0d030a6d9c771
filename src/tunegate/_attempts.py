"""The attempts of one call that missed the cache: breaker permit, rate-limit token, HTTP
exchange, classification, limiter feedback, breaker record, and the retry policy's verdict.

:class:`Attempts` is one of the three parts :class:`tunegate.pipeline.Pipeline` holds (with
:class:`tunegate._coalesce.SingleFlight` and the cache step). Its :meth:`Attempts.run` is a
flow (``tunegate._drive``): a generator that yields effects and is sent their results. The
breaker's and the limiter's own flows (``allow_flow``, ``record_flow``, ``acquire_flow``,
``adjust_flow``: local decisions at once, Redis scripts when shared) are composed with
``yield from``, so they run in the caller's one driver loop; the exchange itself is the
``Send`` effect (``tunegate._http``), a backoff the ``Sleep`` effect. It ends with the
parsed value, or with a :class:`Failed` naming the typed error and why the attempts
stopped: giving up is a value here, and the pipeline decides what a failure becomes (a
stale answer, or the error raised at that one place).

One clock: every deadline and backoff is read from the clock the pipeline was given.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tunegate._clock import Clock
from tunegate._drive import AwaitFlight, Effect, FlightTimeout, Flow, Sleep
from tunegate._effects import Send
from tunegate._http import HttpPool, HttpRequest, HttpResponse
from tunegate._policy.breaker import CircuitState, Permit
from tunegate._policy.classify import (
    Expect,
    Kind,
    Outcome,
    ProviderHook,
    ResponseView,
    classify_response,
)
from tunegate._policy.freshness import CacheEntry
from tunegate._policy.quota import QuotaProbe
from tunegate._policy.retry import GiveUp, Retry, RetryBudget, RetryPolicy
from tunegate.breaker import CircuitBreaker, Verdict
from tunegate.exceptions import (
    CircuitBreakerOpenError,
    MalformedResponse,
    ProviderError,
    RateLimitTimeout,
    TunegateError,
)
from tunegate.observability import Recorder, Span
from tunegate.ratelimit import RateLimiter
from tunegate.retry import budget_lock

__all__ = ["NO_ANSWER", "Attempts", "Call", "Failed", "Lease", "RequestLike"]

Pairs = tuple[tuple[str, str], ...]


class RequestLike(Protocol):
    """What the pipeline reads of a request (``tunegate.providers._request.ApiRequest`` is
    one). ``secret_params`` names params, form fields or headers (case-insensitive) whose
    values must never reach a log, a key, a metric or an error message."""

    @property
    def provider(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def endpoint_template(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def params(self) -> Pairs: ...
    @property
    def data(self) -> Pairs: ...
    @property
    def headers(self) -> Pairs: ...
    @property
    def secret_params(self) -> frozenset[str]: ...
    @property
    def cache_kind(self) -> str | None: ...
    @property
    def cache_parts(self) -> tuple[str, ...]: ...


class Lease(Protocol):
    """A cross-process lease this call holds (``tunegate._coalesce``): the attempts extend it
    before a slow attempt and before a backoff sleep, so no other process takes over."""

    def renew(self, extra_ms: int = 0) -> Effect: ...


@dataclass(slots=True)
class Call:
    """The state of one call that missed the cache, as it moves down the path."""

    request: RequestLike
    key: str | None
    parse: Callable[[Any], Any] | None
    expect: Expect
    ttl: float | None
    span: Span | None
    looked_at: int  # the flights' generation read before the cache lookup
    started: float  # the pipeline clock's monotonic() when the call missed
    deadline: float | None  # started + the retry policy's deadline, on the same clock
    cache_state: str = "bypass"
    stale: CacheEntry | None = None
    lease: Lease | None = None
    claimed: Any = None  # the lease claim its lookup made (``_coalesce.LOOKUP_CLAIM``)
    # The cache write left for the lease's FINISH script: (stored string, ms, on failure).
    write: tuple[bytes, int, Callable[[], None]] | None = None
    http: HttpRequest | None = None  # built on the first attempt
    probe: Any = None  # the quota probe this call is to answer (``_policy.quota``)
    patient: bool = False  # the caller's own deadline: one attempt may use all of it


@dataclass(frozen=True, slots=True)
class Failed:
    """How a call ended without a value: the typed ``error``, the ``reason`` the path
    stopped (the retry policy's, ``circuit_open``, ``rate_limit_timeout``, ``not_found``,
    ``shared_failure``, ``flight_timeout``) and the ``attempts`` it made."""

    error: TunegateError
    reason: str
    attempts: int


NO_ANSWER: Any = object()
"""What a step returns when it has no answer to give (values themselves may be None)."""

_PARSE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)
# A backoff looks at the breaker at least this often (seconds), so a call stops sleeping
# soon after another caller opened it.
_BACKOFF_SLICE = 0.25
_LOWERED: dict[frozenset[str], frozenset[str]] = {}  # secret_params, lower-cased


class Attempts:
    """Breaker, limiter, HTTP, classification and retry for one call (see the module)."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        http: HttpPool,
        retry: RetryPolicy,
        clock: Clock,
        rand: Callable[[], float],
        recorder: Recorder,
        breaker: CircuitBreaker | None = None,
        limiter: RateLimiter | None = None,
        budget: RetryBudget | None = None,
        classifier: ProviderHook | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url
        self.http = http
        self.retry = retry
        self.clock = clock
        self.breaker = breaker
        self.limiter = limiter
        self.budget = budget
        # Looked up once: budget_lock() takes a process-wide guard on every lookup.
        self._budget_lock = budget_lock(budget) if budget is not None else None
        self.classifier = classifier
        self._rand = rand
        self._rec = recorder
        self.quota = QuotaProbe()

    def run(self, call: Call) -> Flow[Any]:
        """The attempts of ``call``: its parsed value, or :class:`Failed`. One generator,
        each attempt inline: every effect a miss yields passes through each generator
        layer above it, there and back."""
        try:
            policy, breaker, budget, limiter = self.retry, self.breaker, self.budget, self.limiter
            endpoint = call.request.endpoint_template
            start = call.started
            if budget is not None:
                assert self._budget_lock is not None
                with self._budget_lock:
                    budget.record_call(self.clock.monotonic())
            http = call.http
            if http is None:
                http = call.http = self._http_request(call.request)
            attempt = 0
            previous_delay = 0.0
            while True:
                attempt += 1
                permit: Permit | None = None
                if breaker is not None:
                    try:
                        # A local breaker (or a shared one's fresh answer) decides at once:
                        # no flow is made for it.
                        permit = breaker.admit()
                        if permit is None:
                            permit = yield from breaker.allow_flow()
                    except CircuitBreakerOpenError as exc:
                        self._rec.count("breaker_rejections")
                        return Failed(exc, "circuit_open", attempt - 1)
                # Everything between the permit and its record is in here, so that a caller
                # cancelled anywhere (even while recording) hands the permit back: a half-open
                # probe slot must never leak.
                try:
                    # One exchange: a token, the lease extended, send, classify, limiter
                    # feedback (inline: a flow of its own per attempt was one more layer).
                    waited = 0.0
                    if limiter is not None:
                        waited = yield from limiter.acquire_flow(
                            self.provider, self._left(call.deadline)
                        )
                    if call.lease is not None and (attempt > 1 or waited > 1.0):
                        yield call.lease.renew()
                    began = time.perf_counter()  # latency, not a deadline: always real time
                    response: HttpResponse | None = None
                    try:
                        response = yield Send(
                            self.http, http, self._left(call.deadline), call.patient
                        )
                    except ProviderError as exc:
                        outcome = Outcome.failure(exc)
                    else:
                        outcome = self._read(call, response)
                    latency = time.perf_counter() - began
                    status: int | None = None
                    if response is not None:
                        status = response.status
                        if limiter is not None:
                            paused = yield from limiter.adjust_flow(
                                self.provider, response.headers, status
                            )
                            if paused is None and outcome.kind is Kind.RATE_LIMITED:  # in the body
                                yield from limiter.refused_flow(self.provider, outcome.retry_after)
                    if permit is not None:
                        assert breaker is not None
                        flow = breaker.settle(permit, self._verdict(breaker, outcome))
                        if flow is not None:  # shared: cancelled in there, it still hands back
                            yield from flow
                        permit = None
                except GeneratorExit:  # abandoned: no effect can run now
                    raise
                except RateLimitTimeout as exc:
                    if permit is not None:
                        assert breaker is not None
                        yield from breaker.record_flow(permit, "ignored")
                    return Failed(exc, "rate_limit_timeout", attempt - 1)
                except BaseException:
                    if permit is not None:
                        assert breaker is not None
                        yield from breaker.record_flow(permit, "ignored")
                    raise
                kind = outcome.kind
                if call.probe is not None:
                    QuotaProbe.settle(call.probe, kind is Kind.RATE_LIMITED)
                    call.probe = None
                self._rec.attempt(
                    endpoint, attempt, status, kind.value, latency, call.cache_state, call.span
                )
                if kind is Kind.SUCCESS:
                    return outcome.payload
                error = outcome.error
                assert error is not None
                error.attempts = attempt
                if kind is Kind.NOT_FOUND:
                    return Failed(error, "not_found", attempt)
                now = self.clock.monotonic()
                decision = policy.decide(
                    attempt=attempt,
                    error=error,
                    elapsed=now - start,
                    previous_delay=previous_delay,
                    rand=self._rand,
                    budget_ok=functools.partial(self._spend, now) if budget is not None else True,
                )
                if isinstance(decision, GiveUp):
                    return Failed(error, decision.reason, attempt)
                if decision.reason == "rate_limited":
                    attempt, shared = yield from self._share_refusal(call, attempt, error, decision)
                    if isinstance(shared, GiveUp):
                        error.attempts = attempt
                        return Failed(error, shared.reason, attempt)
                    if shared is None:  # another call's probe was answered: try at once
                        previous_delay = decision.delay
                        continue
                    decision = shared
                self._rec.retrying(endpoint, attempt, decision.reason, decision.delay)
                if call.lease is not None:
                    yield call.lease.renew(int(decision.delay * 1000))
                yield from self._backoff(decision.delay)
                previous_delay = decision.delay
        finally:
            if call.probe is not None:  # left without an answer: the waiters try themselves
                QuotaProbe.settle(call.probe, False)

    def _read(self, call: Call, response: HttpResponse) -> Outcome:
        """Classify the answer, then let ``parse`` read a successful payload."""
        view = ResponseView(
            self.provider,
            call.request.endpoint_template,
            response.status,
            response.headers,
            response.body,
            call.expect,
            self.clock.time(),
        )
        outcome = classify_response(view, self.classifier)
        if outcome.kind is not Kind.SUCCESS or call.parse is None:
            return outcome
        try:
            return Outcome.success(call.parse(outcome.payload))
        except ProviderError as exc:
            exc.provider = exc.provider or self.provider
            exc.endpoint = exc.endpoint or call.request.endpoint_template
            return Outcome.failure(exc)
        except _PARSE_ERRORS as exc:
            err = MalformedResponse(
                f"unexpected body shape ({type(exc).__name__})",
                provider=self.provider,
                endpoint=call.request.endpoint_template,
                status=response.status,
                code="shape",
            )
            err.__cause__ = exc
            return Outcome.failure(err)

    # -- helpers ---------------------------------------------------------------------------

    def _share_refusal(
        self, call: Call, attempt: int, error: TunegateError, decision: Retry
    ) -> Flow[tuple[int, Retry | GiveUp | None]]:
        """A quota refusal this call would retry: one call probes, the others wait for its
        answer (``_policy.quota``). Returns ``(attempt, decision)``: this call's ``Retry``
        when it is the probe; None when the probe was answered (attempt at once); a
        ``GiveUp``. A refused probe counts as one attempt of every call that waited on it."""
        while True:
            probing, probe = self.quota.join()
            if probing:
                call.probe = probe
                return attempt, decision
            if call.lease is not None:  # no other process takes over while this one waits
                yield call.lease.renew(int(decision.delay * 1000))
            left = self._left(call.deadline)
            try:
                refused = yield AwaitFlight(probe, decision.delay + 60.0 if left is None else left)
            except FlightTimeout:
                return attempt, GiveUp("deadline")
            if not refused:
                return attempt, None
            attempt += 1
            again = self.retry.decide(
                attempt=attempt,
                error=error,
                elapsed=self.clock.monotonic() - call.started,
                previous_delay=decision.delay,
                rand=self._rand,
            )
            if isinstance(again, GiveUp):
                return attempt, again
            decision = again

    def _backoff(self, delay: float) -> Flow[None]:
        """Sleep ``delay``, looking at the breaker before each slice: once it is open (this
        call's failure or another caller's), the next attempt would be refused, so the
        sleep ends there and the loop's ``allow_flow`` fails the call at once."""
        breaker = self.breaker
        if breaker is None:
            yield Sleep(self.clock, delay)
            return
        end = self.clock.monotonic() + delay
        while (yield from breaker._state()) is not CircuitState.OPEN:
            left = end - self.clock.monotonic()
            if left <= 0:
                return
            yield Sleep(self.clock, min(left, _BACKOFF_SLICE))

    def _http_request(self, request: RequestLike) -> HttpRequest:
        secret = request.secret_params
        params, data, headers = tuple(request.params), tuple(request.data), tuple(request.headers)
        values: tuple[str, ...] = ()
        if secret:  # most requests name one or none: no scan without a name
            names = _LOWERED.get(secret)
            if names is None:  # a provider's handful of name sets, lowered once each
                names = frozenset(n.lower() for n in secret)
                if len(_LOWERED) < 64:
                    _LOWERED[secret] = names
            values = tuple(
                v for pairs in (params, data, headers) for k, v in pairs if v and k.lower() in names
            )
        return HttpRequest(
            request.method,
            self.base_url + request.path,
            self.provider,
            request.endpoint_template,
            params,
            data,
            headers,
            values,
        )

    def _left(self, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        return max(0.0, deadline - self.clock.monotonic())

    def _spend(self, now: float) -> bool:
        assert self.budget is not None
        assert self._budget_lock is not None
        with self._budget_lock:
            return self.budget.try_spend(now)

    @staticmethod
    def _verdict(breaker: CircuitBreaker, outcome: Outcome) -> Verdict:
        if outcome.kind in (Kind.SUCCESS, Kind.NOT_FOUND):
            return "success"
        assert outcome.error is not None
        return "failure" if breaker.is_failure(outcome.error) else "ignored"
