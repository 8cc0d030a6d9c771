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
