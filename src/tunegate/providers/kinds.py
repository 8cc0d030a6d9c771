"""What the cache knows of each provider's kinds: how long an answer stays fresh (the
design's table) and which kinds' parts keep their case.

The cache's policies (:mod:`tunegate._policy.freshness`, :mod:`tunegate._policy.keys`) know
no provider: :class:`tunegate.cache.CacheManager` hands them these tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["CASE_SENSITIVE_KINDS", "DEFAULT_TTLS"]

_DAY: Final = 86_400.0

#: The design's table: seconds an answer of each kind stays fresh.
DEFAULT_TTLS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "spotify:track": 30 * _DAY,
        "spotify:search": 7 * _DAY,
        "musicbrainz:isrc": 30 * _DAY,
        "lastfm:track_tags": 7 * _DAY,
    }
)
#: Kinds whose parts keep their case (Spotify ids are case-sensitive base62).
CASE_SENSITIVE_KINDS: Final = frozenset(
    {"spotify:track", "spotify:album", "spotify:artist", "spotify:playlist"}
)
