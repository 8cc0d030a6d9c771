"""What an emulator accepts and enforces: credentials, token lifetime, switches, quotas."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tunegate.emulator.faults import _duration as duration

__all__ = [
    "DEFAULT_LASTFM_KEY",
    "DEFAULT_SPOTIFY_CLIENT_ID",
    "DEFAULT_SPOTIFY_CLIENT_SECRET",
    "MUSICBRAINZ_THROTTLES",
    "SPOTIFY_MODES",
    "SUSPENDED_LASTFM_KEY",
    "EmulatorConfig",
    "RateLimit",
    "spotify_mode_settings",
]

DEFAULT_SPOTIFY_CLIENT_ID = "tunegate-test-id"
DEFAULT_SPOTIFY_CLIENT_SECRET = "tunegate-test-secret"
DEFAULT_LASTFM_KEY = "tunegate-test-key"
SUSPENDED_LASTFM_KEY = "tunegate-suspended-key"


SPOTIFY_MODES = ("development", "extended")
# Over quota MusicBrainz answers 503 at once ("reject"), holds the answer then serves it
# ("delay", as the real one does since 2026), or holds it then answers 503.
MUSICBRAINZ_THROTTLES = ("reject", "delay", "delay_then_reject")


def spotify_mode_settings(mode: str) -> dict[str, Any]:
    """The settings of a Spotify app mode: Development Mode (the real default) or Extended."""
    if mode not in SPOTIFY_MODES:
        raise ValueError(f"spotify_mode must be one of {', '.join(SPOTIFY_MODES)}, not {mode!r}")
    extended = mode == "extended"
    return {"spotify_batch_tracks": extended, "spotify_search_limit_max": 50 if extended else 10}


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` per client in any rolling ``window`` seconds."""

    requests: int
    window: float

    def __post_init__(self) -> None:
        if self.requests < 1 or not self.window > 0:
            raise ValueError("a rate limit needs requests >= 1 and window > 0")

    @property
    def per_second(self) -> float:
        return self.requests / self.window


@dataclass
class EmulatorConfig:
    """Mutable at run time through :meth:`Emulator.configure` or ``PATCH /_emulator/config``.

    Defaults mirror the real services: Spotify in Development Mode (search ``limit`` at most
    10, no batch ``GET /v1/tracks``), MusicBrainz's 1 request/s per client, Last.fm's ~5/s.
    Spotify publishes no number for its rolling 30-second window: 300 requests (10/s on
    average) is this emulator's choice.
    """

    spotify_clients: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_SPOTIFY_CLIENT_ID: DEFAULT_SPOTIFY_CLIENT_SECRET}
    )
    lastfm_api_keys: set[str] = field(default_factory=lambda: {DEFAULT_LASTFM_KEY})
    lastfm_suspended_keys: set[str] = field(default_factory=lambda: {SUSPENDED_LASTFM_KEY})
    token_lifetime: float = 3600.0
    spotify_batch_tracks: bool = False
    spotify_search_limit_max: int = 10
    spotify_rate: RateLimit = field(default_factory=lambda: RateLimit(300, 30.0))
    musicbrainz_rate: RateLimit = field(default_factory=lambda: RateLimit(1, 1.0))
    # Last.fm's terms (as reported): 5 requests/s per IP averaged over 5 minutes.
    lastfm_rate: RateLimit = field(default_factory=lambda: RateLimit(1500, 300.0))
    rate_limits: bool = True  # False: quotas are not enforced (benchmarks)
    # True: Last.fm error bodies (code 29, 8, 11...) come with HTTP 200, as the real one
    # sometimes answers; clients must read the body, not only the status.
    lastfm_errors_as_200: bool = False
    musicbrainz_throttle: str = "reject"
    musicbrainz_throttle_delay: float = 12.0  # "delayed past 10 s" (reported, 2026)
    # Block a client sending more than musicbrainz_block_rate (the old wiki's 10 in 10 s)
    # for musicbrainz_block_seconds; off by default (no 2026 source says it is still on).
    musicbrainz_block: bool = False
    musicbrainz_block_rate: RateLimit = field(default_factory=lambda: RateLimit(10, 10.0))
    musicbrainz_block_seconds: float = 10.0

    def copy(self) -> EmulatorConfig:
        return dataclasses.replace(
            self,
            spotify_clients=dict(self.spotify_clients),
            lastfm_api_keys=set(self.lastfm_api_keys),
            lastfm_suspended_keys=set(self.lastfm_suspended_keys),
        )

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` (JSON-friendly values accepted); raises ValueError on a bad one."""
        names = {f.name for f in dataclasses.fields(self)}
        staged = self.copy()
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown setting {key!r}")
            setattr(staged, key, _coerce(key, value))
        if staged.spotify_search_limit_max not in range(1, 51):
            raise ValueError("spotify_search_limit_max must be between 1 and 50")
        if not staged.token_lifetime > 0:
            raise ValueError("token_lifetime must be positive")
        if staged.musicbrainz_throttle not in MUSICBRAINZ_THROTTLES:
            raise ValueError(
                f"musicbrainz_throttle must be one of {', '.join(MUSICBRAINZ_THROTTLES)}, "
                f"not {staged.musicbrainz_throttle!r}"
            )
        if not 0 <= staged.musicbrainz_throttle_delay <= 3600:
            raise ValueError("musicbrainz_throttle_delay must be between 0 and 3600 seconds")
        if not 0 < staged.musicbrainz_block_seconds <= 86400:
            raise ValueError("musicbrainz_block_seconds must be between 0 and 86400 seconds")
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(staged, f.name))

    def public(self) -> dict[str, Any]:
        """The settings without secrets: client ids are listed, secrets and keys are not."""
        return {
            "spotify_client_ids": sorted(self.spotify_clients),
            "lastfm_api_keys": len(self.lastfm_api_keys),
            "lastfm_suspended_keys": len(self.lastfm_suspended_keys),
            "token_lifetime": self.token_lifetime,
            "spotify_batch_tracks": self.spotify_batch_tracks,
            "spotify_search_limit_max": self.spotify_search_limit_max,
            "spotify_rate": dataclasses.asdict(self.spotify_rate),
            "musicbrainz_rate": dataclasses.asdict(self.musicbrainz_rate),
            "lastfm_rate": dataclasses.asdict(self.lastfm_rate),
            "rate_limits": self.rate_limits,
            "lastfm_errors_as_200": self.lastfm_errors_as_200,
            "musicbrainz_throttle": self.musicbrainz_throttle,
            "musicbrainz_throttle_delay": self.musicbrainz_throttle_delay,
            "musicbrainz_block": self.musicbrainz_block,
            "musicbrainz_block_rate": dataclasses.asdict(self.musicbrainz_block_rate),
            "musicbrainz_block_seconds": self.musicbrainz_block_seconds,
        }


_SWITCHES = ("spotify_batch_tracks", "rate_limits", "lastfm_errors_as_200", "musicbrainz_block")


def _coerce(key: str, value: Any) -> Any:
    if key.endswith("_rate"):
        if isinstance(value, RateLimit):
            return value
        if isinstance(value, dict):
            return RateLimit(int(value["requests"]), float(value["window"]))
        if isinstance(value, list | tuple) and len(value) == 2:
            return RateLimit(int(value[0]), float(value[1]))
        raise ValueError(f"{key} must be {{'requests': N, 'window': seconds}}")
    if key == "spotify_clients":
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError("spotify_clients must map client ids to secrets")
        return dict(value)
    if key in ("lastfm_api_keys", "lastfm_suspended_keys"):
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{key} must be a list of strings")
        return set(value)
    if key == "musicbrainz_throttle":
        if not isinstance(value, str):
            raise ValueError(f"{key} must be one of {', '.join(MUSICBRAINZ_THROTTLES)}")
        return value
    if key in ("musicbrainz_throttle_delay", "musicbrainz_block_seconds") and isinstance(
        value, str
    ):
        return duration(value, key)
    if key in _SWITCHES:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false")
        return value
    if key == "spotify_search_limit_max":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    return float(value)
