"""What each upstream is, in one place: one frozen :class:`ProviderSpec` per provider.

Everything the rest of the library would otherwise repeat about a provider lives here: its
official origin and the variable that overrides it, its rate and burst and who the quota is
counted for, its breaker thresholds, how long each kind of answer stays fresh, and how many
items one batched request may carry. The limiter, the pipeline and the cache know no
provider names; the clients read their spec and configure them.

::

    from tunegate.providers.spec import MUSICBRAINZ, spec_for

    MUSICBRAINZ.rate, MUSICBRAINZ.capacity      # 1.0, 1: the official service's rule
    MUSICBRAINZ.batch_max                       # 50 ISRCs per recording search
    spec_for("spotify").ttls["spotify:track"]   # 30 days

This module imports nothing from tunegate, so any layer may read it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CASE_SENSITIVE_KINDS",
    "DAY",
    "DEFAULT_TTLS",
    "LASTFM",
    "MUSICBRAINZ",
    "SPECS",
    "SPOTIFY",
    "ProviderSpec",
    "QuotaSubject",
    "SpotifySpec",
    "slots_in_window",
    "spec_for",
]

DAY = 86_400.0

QuotaSubject = Literal["developer account", "egress IP", "egress IP and API key"]
"""Who a provider counts its quota for: more client ids (Spotify), or more machines behind
one address (MusicBrainz, Last.fm), add no capacity. Buckets shared through Redis make a
fleet act as that one subject."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSpec:
    """One upstream's facts.

    Attributes:
        name: the provider's name in keys, metrics, stats and errors.
        base_url: the official origin (no API path).
        url_env: the environment variable a client reads when given no ``base_url``.
        suffix: the API path a base URL may carry (``https://api.spotify.com/v1`` works as
            well as ``https://api.spotify.com``).
        rate, capacity: the default token bucket (requests per second, largest burst).
        quota, quota_window: the provider's own rule, ``quota`` requests in any
            ``quota_window`` seconds (None: not known). The bucket must fit it:
            :func:`slots_in_window` of ``rate`` and ``capacity`` is at most ``quota``.
        quota_subject: who the provider counts its quota for.
        failure_threshold, breaker_timeout, success_threshold: the default breaker (opens
            after that many failures, for that many seconds, closes after that many good
            probes).
        ttls: seconds a fresh answer lasts, by cache kind (the design's table; kinds not
            listed use the cache's ``default_ttl``).
        case_sensitive_kinds: cache kinds whose key parts keep their case (identifiers
            such as Spotify's base62 ids); every other kind's parts are case-folded.
        batch_max: the most items one request may carry (1: the provider has no batch
            request).
        search_limit_max: the largest page a search accepts.
        read_timeout, total_timeout: the default HTTP timeouts (between two reads; the
            whole exchange), for clients given no ``http=``.
        deadline: the default overall deadline of one call (attempts and waits), for
            clients given no ``retry=``.
    """

    name: str
    base_url: str
    url_env: str
    suffix: str
    rate: float
    capacity: int
    quota: int | None = None
    quota_window: float | None = None
    quota_subject: QuotaSubject
    failure_threshold: int
    breaker_timeout: float
    success_threshold: int = 2
    ttls: Mapping[str, float]
    case_sensitive_kinds: frozenset[str] = frozenset()
    batch_max: int = 1
    search_limit_max: int
    read_timeout: float = 10.0
    total_timeout: float = 15.0
    deadline: float = 30.0

    def __post_init__(self) -> None:
        if self.quota is None or self.quota_window is None:
            return
        most = slots_in_window(self.rate, self.capacity, self.quota_window)
        if most > self.quota:
            raise ValueError(
                f"{self.name}: a bucket of {self.rate:g}/s with a burst of {self.capacity}"
                f" starts {most} requests in {self.quota_window:g} s, over the quota of"
                f" {self.quota}"
            )


def slots_in_window(rate: float, capacity: int, window: float) -> int:
    """The most requests a token bucket (GCRA) of ``rate`` per second and burst
    ``capacity`` starts in any rolling window of ``window`` seconds (one that holds the
    requests sent less than ``window`` seconds before its last one): the full burst at the
    window's opening, then one every ``1 / rate`` seconds, ``capacity + ceil(rate x
    window) - 1``. A bucket fits a provider's "N requests in W seconds" when this is at
    most N (``rate x W + capacity <= N + 1``)."""
    return capacity + math.ceil(rate * window - 1e-9) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SpotifySpec(ProviderSpec):
    """Spotify also has an accounts service, where client-credentials tokens come from.

    Attributes:
        auth_url: the official accounts origin.
        auth_url_env: the variable a client reads when given no ``auth_url``.
    """

    auth_url: str
    auth_url_env: str


SPOTIFY = SpotifySpec(
    name="spotify",
    base_url="https://api.spotify.com",
    url_env="TUNEGATE_SPOTIFY_API_URL",
    suffix="/v1",
    auth_url="https://accounts.spotify.com",
    auth_url_env="TUNEGATE_SPOTIFY_AUTH_URL",
    # Unpublished: a rolling 30 s window; 300 in it is the emulator's choice (10/s, the
    # design's table). The design's burst of 10 would start 309 in a window: at the full
    # rate the bucket has no room for a burst.
    rate=10.0,
    capacity=1,
    quota=300,
    quota_window=30.0,
    # Since 2026-07 Dev-Mode quota is per developer account, shared by its client ids.
    quota_subject="developer account",
    failure_threshold=5,
    breaker_timeout=60.0,
    ttls=MappingProxyType({"spotify:track": 30 * DAY, "spotify:search": 7 * DAY}),
    case_sensitive_kinds=frozenset(
        {"spotify:track", "spotify:album", "spotify:artist", "spotify:playlist"}
    ),
    batch_max=50,  # GET /v1/tracks?ids= (official OpenAPI); 403 for Dev-Mode apps
    search_limit_max=10,  # down from 50 in Feb 2026 (official OpenAPI)
)

MUSICBRAINZ = ProviderSpec(
    name="musicbrainz",
    base_url="https://musicbrainz.org",
    url_env="TUNEGATE_MUSICBRAINZ_URL",
    suffix="/ws/2",
    # The official rule (Rate_Limiting page): 1 request/s per source IP, no burst.
    rate=1.0,
    capacity=1,
    quota=1,
    quota_window=1.0,
    quota_subject="egress IP",
    failure_threshold=3,
    breaker_timeout=30.0,
    ttls=MappingProxyType({"musicbrainz:isrc": 30 * DAY}),
    batch_max=50,  # isrc: clauses per recording search, well within the URL length accepted
    search_limit_max=100,
    # It throttles by holding answers past 10 s (12.2 s measured, 2026): a 10 s read timeout
    # would cut them, waste the token and retry into the same throttle.
    read_timeout=30.0,
    total_timeout=40.0,
    deadline=90.0,
)

LASTFM = ProviderSpec(
    name="lastfm",
    base_url="https://ws.audioscrobbler.com",
    url_env="TUNEGATE_LASTFM_URL",
    suffix="/2.0",
    # The API terms: 5 requests/s per originating IP, averaged over 5 minutes; error 29
    # also hits a key shared by many users. No burst: a strict one-second window of 5 is
    # then kept too (a burst of 5 would start 9 in one second).
    rate=5.0,
    capacity=1,
    quota=5,
    quota_window=1.0,
    quota_subject="egress IP and API key",
    failure_threshold=5,
    breaker_timeout=60.0,
    ttls=MappingProxyType({"lastfm:track_tags": 7 * DAY}),
    search_limit_max=50,
)

SPECS: Mapping[str, ProviderSpec] = MappingProxyType(
    {spec.name: spec for spec in (SPOTIFY, MUSICBRAINZ, LASTFM)}
)
"""Every spec by provider name."""

DEFAULT_TTLS: Mapping[str, float] = MappingProxyType(
    {kind: ttl for spec in SPECS.values() for kind, ttl in spec.ttls.items()}
)
"""Every provider's TTL table, merged: what a cache gives a kind it was not told about."""

CASE_SENSITIVE_KINDS: frozenset[str] = frozenset(
    kind for spec in SPECS.values() for kind in spec.case_sensitive_kinds
)
"""Every provider's case-sensitive kinds, for the cache-key scheme."""


def spec_for(name: str) -> ProviderSpec | None:
    """The spec of provider ``name``, or None for a name tunegate does not know."""
    return SPECS.get(name)
