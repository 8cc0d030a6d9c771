"""The attempts of one call that missed the cache: breaker, limiter, HTTP exchange,
classification, retry, cache write, and stale-if-error when it all fails.

:class:`AttemptPath` is the innermost layer of :class:`tunegate.pipeline.Pipeline` (which
sets every attribute declared here); :class:`tunegate._coalesce.SingleFlight` is the layer
above it. Its methods are flow generators (``tunegate._effects``): every decision is here,
written once, and the sync and async drivers only run the effects.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tunegate._clock import Clock
from tunegate._effects import Acquire, Adjust, Allow, CacheStore, Record, Send, Sleep
from tunegate._flight import RENEW
from tunegate._http import HttpPool, HttpRequest, HttpResponse
from tunegate._policy.breaker import Permit
from tunegate._policy.classify import (
    Expect,
    Kind,
    Outcome,
    ProviderHook,
    ResponseView,
    classify_response,
    outage_like,
)
from tunegate._policy.freshness import CacheEntry
from tunegate._policy.retry import GiveUp, RetryBudget, RetryPolicy
from tunegate._redact import redact
from tunegate._redis import Effect, LuaScript, RedisLink, ScriptCall
from tunegate.breaker import CircuitBreaker
from tunegate.cache import CacheManager
from tunegate.cache.frozen import freeze
from tunegate.exceptions import (
    CircuitBreakerOpenError,
    MalformedResponse,
    NotFound,
    ProviderError,
    RateLimitTimeout,
    TunegateError,
)
from tunegate.observability import Metrics, Span, Stats, log_attempt, log_event
from tunegate.ratelimit import RateLimiter
from tunegate.retry import budget_lock

if TYPE_CHECKING:
    from prometheus_client import Counter

__all__ = ["AttemptPath", "Call", "Flow", "RequestLike"]

Pairs = tuple[tuple[str, str], ...]
Flow = Generator[Effect, Any, Any]


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
    started: float  # time.monotonic() when the call missed: its deadline runs from here
    cache_state: str = "bypass"
    stale: CacheEntry | None = None
    lease: tuple[str, tuple[str, str]] | None = None  # (token, (lease key, result key))
    http: HttpRequest | None = None  # built on the first attempt
    failure: TunegateError | None = None  # the error a stale entry was served for


_PARSE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


class AttemptPath:
    """Breaker, limiter, HTTP, classification and retry for one call (see the module)."""

    provider: str
    base_url: str
    cache: CacheManager | None
    limiter: RateLimiter | None
    breaker: CircuitBreaker | None
    retry: RetryPolicy
    budget: RetryBudget | None
    http: HttpPool
    classifier: ProviderHook | None
    clock: Clock
    stale_if_error: bool
    redis_link: RedisLink | None
    _rand: Callable[[], float]
    _stats: Stats
    _metrics: Metrics | None
    _m_calls: dict[Kind, Counter]
    _lease_ms: int

    def _attempts(self, call: Call) -> Flow:
        policy = self.retry
        endpoint = call.request.endpoint_template
        now = self.clock.monotonic()
        start = now - (time.monotonic() - call.started)  # time spent waiting counts
        deadline = None if policy.deadline is None else start + policy.deadline
        if self.budget is not None:
            with budget_lock(self.budget):
                self.budget.record_call(now)
        if call.http is None:
            call.http = self._http_request(call.request)
        breaker, cache = self.breaker, self.cache
        attempt = 0
        previous_delay = 0.0
        while True:
            attempt += 1
            permit: Permit | None = None
            if breaker is not None:
                try:
                    permit = yield Allow(breaker)
                except CircuitBreakerOpenError as exc:
                    self._stats.add("breaker_rejections")
                    return self._give_up(call, exc, attempt - 1, "circuit_open")
            # Everything between the permit and its record is in here, so that a caller
            # cancelled anywhere (even while recording) hands the permit back: a half-open
            # probe slot must never leak.
            try:
                outcome, status, latency = yield from self._attempt(call, attempt, deadline)
                if permit is not None:
                    assert breaker is not None
                    yield Record(breaker, permit, self._verdict(outcome))
                    permit = None
            except GeneratorExit:  # abandoned: no effect can run now
                raise
            except RateLimitTimeout as exc:
                if permit is not None:
                    assert breaker is not None
                    yield Record(breaker, permit, "ignored")
                return self._give_up(call, exc, attempt - 1, "rate_limit_timeout")
            except BaseException:
                if permit is not None:
                    assert breaker is not None
                    yield Record(breaker, permit, "ignored")
                raise
            self._observe(call, attempt, status, outcome, latency)

            if outcome.kind is Kind.SUCCESS:
                return (yield from self._store(call, outcome.payload))
            error = outcome.error
            assert error is not None
            error.attempts = attempt
            if outcome.kind is Kind.NOT_FOUND:
                if call.key is not None and cache is not None:
                    yield CacheStore(cache, call.key, None, None, True)
                    self._stats.add("cache_stores")
                raise self._scrubbed(call, error)
            now = self.clock.monotonic()
            decision = policy.decide(
                attempt=attempt,
                error=error,
                elapsed=now - start,
                previous_delay=previous_delay,
                rand=self._rand,
                budget_ok=functools.partial(self._spend, now) if self.budget is not None else True,
            )
            if isinstance(decision, GiveUp):
                return self._give_up(call, error, attempt, decision.reason)
            self._stats.add("retries")
            if self._metrics is not None:
                self._metrics.retries.labels(self.provider, decision.reason).inc()
            log_event(
                logging.INFO,
                "retrying",
                self.provider,
                endpoint,
                attempt=attempt,
                reason=decision.reason,
                delay=round(decision.delay, 3),
            )
            if call.lease is not None:
                lease_ms = self._lease_ms + int(decision.delay * 1000)
                yield self._script(RENEW, call.lease[1], call.lease[0], lease_ms)
            yield Sleep(self.clock, decision.delay)
            previous_delay = decision.delay

    def _attempt(self, call: Call, attempt: int, deadline: float | None) -> Flow:
        """One exchange: a token, the lease extended, send, classify, limiter feedback.
        Returns ``(outcome, status, latency)``."""
        assert call.http is not None
        limiter = self.limiter
        waited = 0.0
        if limiter is not None:
            waited = yield Acquire(limiter, self.provider, self._left(deadline))
        if call.lease is not None and (attempt > 1 or waited > 1.0):
            yield self._script(RENEW, call.lease[1], call.lease[0], self._lease_ms)
        began = time.perf_counter()
        response: HttpResponse | None = None
        try:
            response = yield Send(self.http, call.http, self._left(deadline))
        except ProviderError as exc:
            outcome = Outcome.failure(exc)
        else:
            outcome = self._read(call, response)
        latency = time.perf_counter() - began
        if response is not None and limiter is not None:
            yield Adjust(limiter, self.provider, response)
        return outcome, None if response is None else response.status, latency

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

    def _store(self, call: Call, value: Any) -> Flow:
        if call.key is not None and self.cache is not None:
            try:
                stored = yield CacheStore(self.cache, call.key, value, call.ttl, False)
            except TypeError:  # parse gave something that is not JSON-like: serve, not cache
                endpoint = call.request.endpoint_template
                log_event(logging.WARNING, "value not cacheable", self.provider, endpoint)
                return value
            self._stats.add("cache_stores")
            return stored
        try:
            return freeze(value)  # coalesced callers share it: nobody may mutate it
        except TypeError:
            return value

    def _give_up(self, call: Call, error: TunegateError, attempts: int, reason: str) -> Any:
        """Serve a stale entry for an outage-like failure, else raise ``error``."""
        stale = call.stale
        endpoint = call.request.endpoint_template
        if stale is not None and self.stale_if_error and outage_like(error):
            assert self.cache is not None
            assert call.key is not None
            self.cache.record_stale_served(call.key)
            call.cache_state = "stale_served"
            call.failure = error
            self._stats.add("stale_served")
            log_event(
                logging.WARNING,
                "served stale entry",
                self.provider,
                endpoint,
                cache="stale_served",
                reason=reason,
                error=type(error).__name__,
            )
            return self._value_of(call.request, stale)
        # One WARNING per failure: the callers that shared it say so at INFO.
        level = logging.INFO if reason == "shared_failure" else logging.WARNING
        log_event(
            level,
            "giving up",
            self.provider,
            endpoint,
            attempt=attempts,
            reason=reason,
            error=type(error).__name__,
        )
        raise self._scrubbed(call, error)

    def _value_of(self, request: RequestLike, entry: CacheEntry) -> Any:
        if entry.negative:
            raise NotFound(
                "not found (cached)", provider=self.provider, endpoint=request.endpoint_template
            )
        return entry.value

    # -- helpers ---------------------------------------------------------------------------

    def _script(self, script: LuaScript, keys: tuple[str, str], *args: Any) -> ScriptCall:
        """A single-flight script on Redis; its reply is None when Redis cannot serve it."""
        assert self.redis_link is not None
        return ScriptCall(self.redis_link, script, keys, args, "request coalescing")

    def _http_request(self, request: RequestLike) -> HttpRequest:
        names = {n.lower() for n in request.secret_params}
        values = tuple(
            v
            for k, v in (*request.params, *request.data, *request.headers)
            if k.lower() in names and v
        )
        return HttpRequest(
            request.method,
            self.base_url + request.path,
            self.provider,
            request.endpoint_template,
            params=tuple(request.params),
            data=tuple(request.data),
            headers=tuple(request.headers),
            secrets=values,
        )

    @staticmethod
    def _scrubbed(call: Call, error: TunegateError) -> TunegateError:
        """Defence in depth: a message a provider hook built from a body could echo a key."""
        secrets_ = () if call.http is None else call.http.secrets
        text = " ".join(str(a) for a in error.args)
        safe = redact(text, secrets_)
        if safe != text:
            error.args = (safe,)
        return error

    def _left(self, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        return max(0.0, deadline - self.clock.monotonic())

    def _spend(self, now: float) -> bool:
        assert self.budget is not None
        with budget_lock(self.budget):
            return self.budget.try_spend(now)

    def _verdict(self, outcome: Outcome) -> str:
        if outcome.kind in (Kind.SUCCESS, Kind.NOT_FOUND):
            return "success"
        assert self.breaker is not None
        assert outcome.error is not None
        return "failure" if self.breaker.is_failure(outcome.error) else "ignored"

    def _observe(
        self, call: Call, attempt: int, status: int | None, outcome: Outcome, latency: float
    ) -> None:
        kind = outcome.kind
        self._stats.add("api_calls")
        if kind not in (Kind.SUCCESS, Kind.NOT_FOUND):
            self._stats.add("api_errors")
        self._stats.observe(latency)
        endpoint = call.request.endpoint_template
        if self._metrics is not None:
            self._m_calls[kind].inc()
            self._metrics.latency.labels(self.provider, endpoint).observe(latency)
        log_attempt(
            provider=self.provider,
            endpoint=endpoint,
            status=status,
            attempt=attempt,
            latency_ms=latency * 1000.0,
            cache=call.cache_state,
            outcome=kind.value,
        )
        if call.span is not None:
            call.span.attempt(attempt, status, kind.value, latency * 1000.0)
