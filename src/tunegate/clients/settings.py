"""All three clients from the environment, sharing one cache, one limiter and one breaker
registry (and one Redis, when ``TUNEGATE_REDIS_URL`` is set)::

    with Gateway.from_env() as gw:
        track = gw.spotify.search_track("Deadmau5", "Strobe")

    async with AsyncGateway.from_env() as gw:
        tags = await gw.lastfm.get_track_tags("Deadmau5", "Strobe")

Variables (read with plain ``os.environ``: a dozen strings need no settings framework):

=============================  ===========================================================
``SPOTIFY_CLIENT_ID``          with ``SPOTIFY_CLIENT_SECRET``: builds ``gw.spotify``
``SPOTIFY_CLIENT_SECRET``
``MUSICBRAINZ_USER_AGENT``     ``"App/1.0 ( contact )"``: builds ``gw.musicbrainz``
``LASTFM_API_KEY``             builds ``gw.lastfm``
``TUNEGATE_REDIS_URL``         cache, limiter, breakers and Spotify token shared via Redis
``TUNEGATE_SPOTIFY_API_URL``   base URL overrides (a mirror, a proxy, the emulator); the
``TUNEGATE_SPOTIFY_AUTH_URL``  clients read these too when no ``base_url`` is given
``TUNEGATE_MUSICBRAINZ_URL``
``TUNEGATE_LASTFM_URL``
``TUNEGATE_MUSICBRAINZ_RATE``  requests/s for a self-hosted MusicBrainz mirror
``TUNEGATE_CA_BUNDLE``         PEM file of CAs to trust (a proxy's, the emulator's TLS)
``TUNEGATE_MEMBERS``           processes sharing the quota through Redis (1..10000): while
                               Redis is lost, each takes at most 1 / members of it
=============================  ===========================================================

A provider whose variables are missing is not built; using it raises ConfigurationError
naming the variables to set.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from tunegate._clock import Clock
from tunegate._http import HttpConfig, HttpPool
from tunegate._policy.retry import RetryPolicy
from tunegate._redis import RedisLink
from tunegate.breaker import CircuitBreaker, CircuitBreakerRegistry
from tunegate.cache import CacheManager
from tunegate.clients._base import ClientBase, ClientOptions, spec_http
from tunegate.clients.lastfm import AsyncLastFmClient, LastFmClient, _LastFm
from tunegate.clients.musicbrainz import (
    AsyncMusicBrainzClient,
    MusicBrainzClient,
    _MusicBrainz,
    official_limiter,
    takes_official_limiter,
)
from tunegate.clients.spotify import (
    ACCOUNTS_BREAKER,
    AsyncSpotifyClient,
    SpotifyClient,
    _Spotify,
)
from tunegate.exceptions import ConfigurationError
from tunegate.providers.spec import LASTFM, MUSICBRAINZ, SPOTIFY, ProviderSpec
from tunegate.ratelimit import RateLimiter

if TYPE_CHECKING:
    from tunegate.observability import CollectorRegistry

__all__ = [
    "MAX_MEMBERS",
    "AsyncGateway",
    "Gateway",
    "Settings",
    "clients_from_env",
    "parse_members",
]

MAX_MEMBERS = 10_000  # the largest fleet TUNEGATE_MEMBERS (and --members) may name

S = TypeVar("S", bound=_Spotify)
M = TypeVar("M", bound=_MusicBrainz)
L = TypeVar("L", bound=_LastFm)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def parse_members(value: object, name: str = "TUNEGATE_MEMBERS") -> int:
    """A fleet's size: a whole number of processes in 1..:data:`MAX_MEMBERS` (an int, or
    its decimal digits); ConfigurationError naming ``name`` otherwise."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MEMBERS:
        raise ConfigurationError(f"{name} must be a whole number of processes in 1..{MAX_MEMBERS}")
    return value


@dataclass(frozen=True)
class Settings:
    """What :class:`Gateway` needs; :meth:`from_env` reads it. Secrets stay out of ``repr``."""

    spotify_client_id: str | None = None
    spotify_client_secret: str | None = field(default=None, repr=False)
    musicbrainz_user_agent: str | None = None
    lastfm_api_key: str | None = field(default=None, repr=False)
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    spotify_api_url: str | None = None
    spotify_auth_url: str | None = None
    musicbrainz_url: str | None = None
    lastfm_url: str | None = None
    musicbrainz_rate: float | None = None
    ca_bundle: str | None = None  # trusted instead of the system's CAs
    members: int = 1  # the fleet's size, for the limiter's share while Redis is lost

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the variables in the module docstring (blank counts as unset)."""
        env = os.environ if environ is None else environ
        rate_text = _get(env, "TUNEGATE_MUSICBRAINZ_RATE")
        try:
            rate = None if rate_text is None else float(rate_text)
        except ValueError:
            raise ConfigurationError("TUNEGATE_MUSICBRAINZ_RATE must be a number") from None
        return cls(
            spotify_client_id=_get(env, "SPOTIFY_CLIENT_ID"),
            spotify_client_secret=_get(env, "SPOTIFY_CLIENT_SECRET"),
            musicbrainz_user_agent=_get(env, "MUSICBRAINZ_USER_AGENT"),
            lastfm_api_key=_get(env, "LASTFM_API_KEY"),
            redis_url=_get(env, "TUNEGATE_REDIS_URL"),
            spotify_api_url=_get(env, SPOTIFY.url_env),
            spotify_auth_url=_get(env, SPOTIFY.auth_url_env),
            musicbrainz_url=_get(env, MUSICBRAINZ.url_env),
            lastfm_url=_get(env, LASTFM.url_env),
            musicbrainz_rate=rate,
            ca_bundle=_get(env, "TUNEGATE_CA_BUNDLE"),
            members=parse_members(_get(env, "TUNEGATE_MEMBERS") or 1),
        )


def ca_context(path: str) -> ssl.SSLContext:
    """A TLS context trusting the PEM CAs in ``path``; ConfigurationError if unusable."""
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"{path}: not a usable CA bundle ({exc})") from None


def _missing(spec: ProviderSpec, names: str) -> ConfigurationError:
    return ConfigurationError(f"{spec.name} is not configured: set {names}")


class _Gateway(Generic[S, M, L]):
    """The three clients over one cache, one limiter and one breaker registry. Build it
    with :meth:`from_env`, or from :class:`Settings`; ``cache_manager``, ``rate_limiter``,
    ``breakers``, ``http``, ``retry``, ``registry`` and ``clock`` replace the defaults."""

    _classes: ClassVar[tuple[type[Any], type[Any], type[Any]]]

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        cache_manager: CacheManager | None = None,
        rate_limiter: RateLimiter | None = None,
        breakers: CircuitBreakerRegistry | None = None,
        http: HttpConfig | None = None,
        retry: RetryPolicy | None = None,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
    ) -> None:
        s = self.settings = settings if settings is not None else Settings()
        self._link = RedisLink(s.redis_url) if s.redis_url else None
        self._owns_cache = cache_manager is None
        self.cache = cache_manager or CacheManager(self._link, clock=clock)
        own_limiter = rate_limiter is None
        self.limiter = rate_limiter or RateLimiter(
            redis=self._link, clock=clock, members=parse_members(s.members, "Settings.members")
        )
        self.breakers = breakers or CircuitBreakerRegistry(redis=self._link, clock=clock)
        common = ClientOptions(
            cache_manager=self.cache,
            rate_limiter=self.limiter,
            redis=self._link,
            http=http,
            retry=retry,
            registry=registry,
            clock=clock,
        )
        self._ca = ca_context(s.ca_bundle) if s.ca_bundle else None
        self._spotify: S | None = None
        self._musicbrainz: M | None = None
        self._lastfm: L | None = None
        self._build(common, own_limiter)

    def _build(self, common: ClientOptions, own_limiter: bool) -> None:
        """The configured clients, on the gateway's components."""
        s, clock = self.settings, common.clock
        spotify_class, musicbrainz_class, lastfm_class = self._classes
        if s.spotify_client_id and s.spotify_client_secret:
            self._spotify = spotify_class(
                s.spotify_client_id,
                s.spotify_client_secret,
                options=common,
                circuit_breaker=self._breaker(SPOTIFY),
                accounts_breaker=self._breaker(SPOTIFY, ACCOUNTS_BREAKER),
                http=self._http(SPOTIFY, common),
                base_url=s.spotify_api_url,
                auth_url=s.spotify_auth_url,
            )
        if s.musicbrainz_user_agent:
            limiter = self.limiter
            if own_limiter and takes_official_limiter(
                s.musicbrainz_url, allow_fast=False, shared=self._link is not None, clock=clock
            ):
                # MusicBrainz's 1 request/s is per IP: every gateway and client of the
                # process shares one bucket for musicbrainz.org.
                limiter = official_limiter()
            self._musicbrainz = musicbrainz_class(
                s.musicbrainz_user_agent,
                options=common,
                rate_limiter=limiter,
                circuit_breaker=self._breaker(MUSICBRAINZ),
                http=self._http(MUSICBRAINZ, common),
                base_url=s.musicbrainz_url,
                rate=s.musicbrainz_rate,
            )
        if s.lastfm_api_key:
            self._lastfm = lastfm_class(
                s.lastfm_api_key,
                options=common,
                circuit_breaker=self._breaker(LASTFM),
                http=self._http(LASTFM, common),
                base_url=s.lastfm_url,
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Self:
        """Build from the environment (see the module docstring); ``options`` as for the
        constructor."""
        return cls(Settings.from_env(environ), **options)

    def _http(self, spec: ProviderSpec, common: ClientOptions) -> HttpConfig | HttpPool | None:
        """The HTTP config given (or the provider's defaults) trusting ``ca_bundle``; a
        shared pool given is kept as it is (its config is its own)."""
        given = common.http
        if self._ca is None or isinstance(given, HttpPool):
            return given
        return dataclasses.replace(given or spec_http(spec), ssl_context=self._ca)

    def _breaker(self, spec: ProviderSpec, name: str | None = None) -> CircuitBreaker:
        """The registry's breaker ``name`` (default: the provider's), registered with the
        spec's thresholds if it is not there yet."""
        name = name or spec.name
        existing = self.breakers.get(name)
        if existing is not None:
            return existing
        return self.breakers.register(
            name,
            failure_threshold=spec.failure_threshold,
            timeout=spec.breaker_timeout,
            success_threshold=spec.success_threshold,
        )

    @property
    def spotify(self) -> S:
        if self._spotify is None:
            raise _missing(SPOTIFY, "SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET")
        return self._spotify

    @property
    def musicbrainz(self) -> M:
        if self._musicbrainz is None:
            raise _missing(MUSICBRAINZ, "MUSICBRAINZ_USER_AGENT ('App/1.0 ( contact )')")
        return self._musicbrainz

    @property
    def lastfm(self) -> L:
        if self._lastfm is None:
            raise _missing(LASTFM, "LASTFM_API_KEY")
        return self._lastfm

    def _clients(self) -> list[ClientBase]:
        return [c for c in (self._spotify, self._musicbrainz, self._lastfm) if c is not None]

    def get_stats(self) -> dict[str, Any]:
        """Each configured client's stats by provider name, and the cache's under ``cache``."""
        stats: dict[str, Any] = {c.spec.name: c.get_stats() for c in self._clients()}
        stats["cache"] = self.cache.get_stats()
        return stats

    def __repr__(self) -> str:
        names = ", ".join(c.spec.name for c in self._clients()) or "no providers"
        shared = " shared via Redis" if self._link is not None else ""
        return f"<{type(self).__name__} {names}{shared}>"


class Gateway(_Gateway[SpotifyClient, MusicBrainzClient, LastFmClient]):
    """:class:`SpotifyClient`, :class:`MusicBrainzClient` and :class:`LastFmClient` sharing
    one cache, limiter and breaker registry (see :class:`_Gateway` for the arguments)."""

    _classes = (SpotifyClient, MusicBrainzClient, LastFmClient)

    def close(self) -> None:
        """Close the clients, and the cache and Redis connections this gateway opened."""
        for client in self._clients():
            client._close_sync()
        if self._owns_cache:
            self.cache.close()
        if self._link is not None:
            self._link.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGateway(_Gateway[AsyncSpotifyClient, AsyncMusicBrainzClient, AsyncLastFmClient]):
    """:class:`Gateway` with the asyncio clients; close it with ``await gw.aclose()`` or
    ``async with``."""

    _classes = (AsyncSpotifyClient, AsyncMusicBrainzClient, AsyncLastFmClient)

    async def aclose(self) -> None:
        """Close the running loop's connections, and the cache and Redis this gateway opened."""
        for client in self._clients():
            await client._close_async()
        if self._owns_cache:
            await self.cache.aclose()
        if self._link is not None:
            await self._link.aclose()
            self._link.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def clients_from_env(environ: Mapping[str, str] | None = None, **options: Any) -> Gateway:
    """``Gateway.from_env()``: the three sync clients from the environment."""
    return Gateway.from_env(environ, **options)
