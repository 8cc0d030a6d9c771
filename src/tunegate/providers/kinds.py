"""What the cache knows of each provider's kinds: how long an answer stays fresh (the
design's table) and which kinds' parts keep their case.

The cache's policies (:mod:`tunegate._policy.freshness`, :mod:`tunegate._policy.keys`) know
no provider: :class:`tunegate.cache.CacheManager` hands them these tables, which are the
provider specs' (:mod:`tunegate.providers.spec`), merged.
"""

from __future__ import annotations

from tunegate.providers.spec import CASE_SENSITIVE_KINDS, DEFAULT_TTLS

__all__ = ["CASE_SENSITIVE_KINDS", "DEFAULT_TTLS"]
