"""A worker process for the cross-process single-flight test (started with ``spawn``)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry


def coalesce_worker(base_url: str, redis_url: str, go: Any, out: Any) -> None:
    """Build a pipeline with its own memory cache, wait for ``go``, make one call, report."""
    from tests.pipeline.conftest import FAST_HTTP, item
    from tunegate._http import HttpPool
    from tunegate.cache import CacheManager
    from tunegate.pipeline import Pipeline

    pipeline = Pipeline(
        "test",
        base_url,
        cache=CacheManager(),
        http=HttpPool("test", FAST_HTTP),
        redis=redis_url,
        registry=CollectorRegistry(),
    )
    pipeline.call(item(f"warm-{os.getpid()}"))  # warm the connection and the scripts
    out.put("ready")
    if not go.wait(20):
        out.put("no go")
        return
    try:
        value = pipeline.call(item(1))
        out.put(("ok", dict(value), pipeline.get_stats()["coalesced"]))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(("error", repr(exc), 0))
    finally:
        pipeline.close()


def rate_limited_worker(base_url: str, redis_url: str, out: Any) -> None:
    """Call ``/items/0`` (which answers 429 Retry-After: 1, then 200) through a pipeline
    whose limiter is shared through Redis; report the value or the error."""
    from tests.pipeline.conftest import FAST_HTTP, item
    from tunegate._http import HttpPool
    from tunegate._policy.retry import RetryPolicy
    from tunegate.pipeline import Pipeline
    from tunegate.ratelimit import RateLimiter

    limiter = RateLimiter(redis=redis_url)
    limiter.configure_provider("test", rate=1000.0, capacity=50)
    pipeline = Pipeline(
        "test",
        base_url,
        rate_limiter=limiter,
        http=HttpPool("test", FAST_HTTP),
        retry=RetryPolicy(max_attempts=3, deadline=10.0),
        registry=CollectorRegistry(),
    )
    try:
        out.put(("ok", dict(pipeline.call(item(0)))))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(("error", repr(exc)))
    finally:
        pipeline.close()
        limiter.close()
