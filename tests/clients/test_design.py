"""The design's examples, run as written (``../shared/design/gateway-design.md``).

Each snippet below is the design's text with only these changes: ``from common.api_gateway``
became ``from tunegate``; the Redis host and port point at this test's own redis-server
(which requires the design's password); base URLs point at the emulator through the
``TUNEGATE_*_URL`` variables, which the clients read; and the caching snippet's last line,
``cache.invalidate(key_prefix="spotify:track", "Deadmau5", "Strobe")``, is not valid Python
(a positional argument after a keyword one), so it is written as the call it means, with the
client's cache scope in it: answers from any origin but the official one are filed under
that origin (``docs/clients.md``, "Caching"), and ``spotify.cache_scope`` is empty against
the official host, where the line reads exactly as the design means it. What they print is
checked.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import pytest
import requests

from tests._redis_server import RedisServer
from tests.clients.conftest import requests_to
from tunegate.emulator import Emulator

QUICK_START_1 = """
import redis
from tunegate import (
    CacheManager,
    RateLimiter,
    CircuitBreakerRegistry,
    SpotifyClient,
    MusicBrainzClient,
    LastFmClient
)
import requests

# Connect to Redis
redis_client = redis.Redis(
    host='redis',
    port=6379,
    password='your_password',
    decode_responses=True
)

# Create cache manager
cache = CacheManager(redis_client, default_ttl=604800)  # 7 days

# Create rate limiter
limiter = RateLimiter()
limiter.configure_provider('spotify', rate=10.0, capacity=10)      # 10 req/sec
limiter.configure_provider('musicbrainz', rate=1.0, capacity=1)    # 1 req/sec (API requirement)
limiter.configure_provider('lastfm', rate=5.0, capacity=5)         # 5 req/sec

# Create circuit breakers
breaker_registry = CircuitBreakerRegistry()
spotify_breaker = breaker_registry.register(
    'spotify',
    failure_threshold=5,
    timeout=60,
    expected_exception=requests.RequestException
)
musicbrainz_breaker = breaker_registry.register(
    'musicbrainz',
    failure_threshold=3,
    timeout=30,
    expected_exception=requests.RequestException
)
lastfm_breaker = breaker_registry.register(
    'lastfm',
    failure_threshold=5,
    timeout=60,
    expected_exception=requests.RequestException
)
"""

QUICK_START_2 = """
# Spotify client
spotify = SpotifyClient(
    client_id='your_spotify_client_id',
    client_secret='your_spotify_client_secret',
    cache_manager=cache,
    rate_limiter=limiter,
    circuit_breaker=spotify_breaker
)

# MusicBrainz client
musicbrainz = MusicBrainzClient(
    user_agent='YourApp/1.0 (contact@example.com)',
    cache_manager=cache,
    rate_limiter=limiter,
    circuit_breaker=musicbrainz_breaker
)

# Last.fm client
lastfm = LastFmClient(
    api_key='your_lastfm_api_key',
    cache_manager=cache,
    rate_limiter=limiter,
    circuit_breaker=lastfm_breaker
)
"""

QUICK_START_3 = """
# Search Spotify
track = spotify.search_track(artist="Deadmau5", title="Strobe")
if track:
    print(f"Found: {track['name']} by {track['artists'][0]['name']}")

# Lookup by ISRC in MusicBrainz
recording = musicbrainz.lookup_isrc(isrc="USIR20400500")
if recording:
    print(f"MusicBrainz: {recording['title']} (MBID: {recording['id']})")

# Get genre tags from Last.fm
tags = lastfm.get_track_tags(artist="Deadmau5", track="Strobe")
print(f"Genres: {', '.join(tags[:5])}")
"""

CACHING = """
# Default cache behavior
track = spotify.search_track("Deadmau5", "Strobe")  # Cache miss, API call made
track = spotify.search_track("Deadmau5", "Strobe")  # Cache hit, instant return

# Disable cache for specific call
track = spotify.search_track("Deadmau5", "Strobe", use_cache=False)

# Manual cache invalidation
cache.invalidate("spotify:search", *spotify.cache_scope, "Deadmau5", "Strobe")
"""

RATE_LIMITING = """
# Automatic rate limiting (blocks until token available)
limiter.acquire('spotify')  # Waits if bucket empty
response = spotify_api.call()

# Adaptive throttling based on response headers
limiter.adjust_from_headers('spotify', response.headers)

# Get statistics
stats = limiter.get_stats()
print(stats['spotify'])  # {'rate': 10.0, 'capacity': 10, 'available_tokens': 7.5}
"""

CIRCUIT_BREAKER = """
from tunegate import CircuitBreakerOpenError

try:
    track = spotify.search_track("Artist", "Title")
except CircuitBreakerOpenError as e:
    print(f"Spotify API down: {e}")
    # Fallback to MusicBrainz
    recording = musicbrainz.search_recording("Artist", "Title")
"""

MONITORING = """
# Client stats
spotify_stats = spotify.get_stats()
print(f"Cache hit ratio: {spotify_stats['cache_hit_ratio']:.2%}")
print(f"Circuit breaker state: {spotify_stats['circuit_breaker']['state']}")

# Rate limiter stats
limiter_stats = limiter.get_stats()
print(f"Spotify tokens available: {limiter_stats['spotify']['available_tokens']}")

# Cache stats
cache_stats = cache.get_stats()
print(f"Total hits: {cache_stats['hits']}, misses: {cache_stats['misses']}")
"""

TESTING = """
import pytest
from tunegate import SpotifyClient

def test_spotify_search_with_caching(cache, limiter, breaker):
    client = SpotifyClient(
        client_id='test_id',
        client_secret='test_secret',
        cache_manager=cache,
        rate_limiter=limiter,
        circuit_breaker=breaker
    )

    # First call - cache miss
    track1 = client.search_track("Deadmau5", "Strobe")
    assert track1 is not None

    # Second call - cache hit
    track2 = client.search_track("Deadmau5", "Strobe")
    assert track1 == track2

    # Verify cache hit
    stats = client.get_stats()
    assert stats['cache_hits'] == 1
"""

TROUBLESHOOTING_BREAKER = """
# Check breaker state
print(spotify_breaker.get_stats())

# Manual reset (use with caution)
spotify_breaker.reset()
"""

TROUBLESHOOTING_RATE = """
# Check available tokens
print(limiter.get_stats()['spotify']['available_tokens'])

# Adjust rate (temporary)
limiter.buckets['spotify'].adjust_rate(new_rate=5.0)  # Reduce to 5 req/sec
"""

TROUBLESHOOTING_CACHE = """
# Test Redis connection
redis_client.ping()  # Should return True

# Check cache stats
print(cache.get_stats())

# Clear cache for debugging
cache.invalidate_pattern("spotify:*")
"""


class SpotifyApi:
    """The design's unnamed ``spotify_api``: one raw Web API call, here to the emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def call(self) -> requests.Response:
        token = self.emulator.issue_spotify_token()
        track = self.emulator.describe_track(1)["spotify_id"]
        return requests.get(
            f"{self.emulator.urls.spotify}/tracks/{track}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )


@pytest.fixture
def design_redis() -> Any:
    """A redis-server of this test's own that asks for the design's password."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed; .ci/run installs it with apt-get")
    server = RedisServer()
    server.start()
    admin = server.client()
    admin.config_set("requirepass", "your_password")
    admin.close()
    yield server
    server.stop()


@pytest.fixture
def design_env(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> Emulator:
    """Point the clients at the emulator through the documented variables."""
    monkeypatch.setenv("TUNEGATE_SPOTIFY_API_URL", emulator.urls.spotify)
    monkeypatch.setenv("TUNEGATE_MUSICBRAINZ_URL", emulator.urls.musicbrainz)
    monkeypatch.setenv("TUNEGATE_LASTFM_URL", emulator.urls.lastfm)
    return emulator


def run(snippet: str, namespace: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    """Execute one snippet in the shared namespace; return what it printed."""
    exec(compile(textwrap.dedent(snippet), "<design>", "exec"), namespace)
    return capsys.readouterr().out


def test_the_design_runs_as_written(
    design_env: Emulator, design_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Quick start 1-3, caching, rate limiting, monitoring, circuit breaker (with its
    fallback), troubleshooting: each runs and prints what the design says it prints."""
    emulator = design_env
    ns: dict[str, Any] = {"spotify_api": SpotifyApi(emulator)}
    step1 = QUICK_START_1.replace("host='redis',", "host='127.0.0.1',").replace(
        "port=6379,", f"port={design_redis.port},"
    )
    assert run(step1, ns, capsys) == ""
    assert run(QUICK_START_2, ns, capsys) == ""
    try:
        out = run(QUICK_START_3, ns, capsys).splitlines()
        strobe = emulator.describe_track(0)  # deadmau5 - Strobe, with the design's ISRC
        assert strobe["isrc"] == "USIR20400500"
        assert out == [
            "Found: Strobe by deadmau5",
            f"MusicBrainz: Strobe (MBID: {strobe['mbid']})",
            "Genres: progressive house, electronic, deadmau5, house, trance",
        ]

        # Caching: two hits (step 3 made the miss), one forced call, one invalidation.
        assert run(CACHING, ns, capsys) == ""
        assert ns["track"]["name"] == "Strobe"
        assert ns["cache"].get_stats()["per_provider"]["spotify"]["hits"] == 2
        key = ns["cache"].key("spotify:search", *ns["spotify"].cache_scope, "Deadmau5", "Strobe")
        assert ns["redis_client"].exists(key) == 0
        misses = ns["spotify"].get_stats()["cache_misses"]
        ns["spotify"].search_track("Deadmau5", "Strobe")  # invalidated: a miss
        assert ns["spotify"].get_stats()["cache_misses"] == misses + 1

        printed = run(RATE_LIMITING, ns, capsys)
        assert ns["response"].status_code == 200
        bucket = eval(printed)  # the stats dict as printed
        assert (bucket["rate"], bucket["capacity"]) == (10.0, 10)
        assert 0.0 <= bucket["available_tokens"] <= 10.0

        monitoring = run(MONITORING, ns, capsys).splitlines()
        assert monitoring[0] == "Cache hit ratio: 50.00%"  # 2 hits, 2 misses
        assert monitoring[1] == "Circuit breaker state: closed"
        assert re.fullmatch(r"Spotify tokens available: \d+(\.\d+)?", monitoring[2])
        # spotify 2 hits, 2 misses; musicbrainz and lastfm one miss each
        assert monitoring[3] == "Total hits: 2, misses: 4"

        # Circuit breaker: in an outage the breaker opens and the fallback runs.
        emulator.set_faults("spotify/search:outage=3600,retry_after=0")
        for title in ("Outage One", "Outage Two", "Outage Three"):
            try:
                ns["spotify"].search_track("Someone", title)
            except Exception as exc:
                if type(exc).__name__ == "CircuitBreakerOpenError":
                    break
        searches = requests_to(emulator, "musicbrainz", "recording.search")
        printed = run(CIRCUIT_BREAKER, ns, capsys)
        assert re.fullmatch(
            r"Spotify API down: spotify: circuit breaker is open; next probe in \d+\.\ds\n",
            printed,
        )
        assert requests_to(emulator, "musicbrainz", "recording.search") == searches + 1
        assert ns["recording"] is None  # no recording is called "Title" by "Artist"

        breaker_stats = run(TROUBLESHOOTING_BREAKER, ns, capsys)
        assert "'state': 'open'" in breaker_stats
        assert ns["spotify_breaker"].get_stats()["state"] == "closed"
        emulator.clear_faults()

        tokens = run(TROUBLESHOOTING_RATE, ns, capsys)
        assert 0.0 <= float(tokens) <= 10.0
        assert ns["limiter"].get_stats()["spotify"]["rate"] == 5.0

        cache_stats = eval(run(TROUBLESHOOTING_CACHE, ns, capsys))
        assert cache_stats["backend"] == "redis"
        assert cache_stats["errors"] == 0
        misses = ns["spotify"].get_stats()["cache_misses"]
        assert ns["spotify"].search_track("Deadmau5", "Strobe")["name"] == "Strobe"
        assert ns["spotify"].get_stats()["cache_misses"] == misses + 1  # cleared
        assert requests_to(emulator, "spotify", "token") == 1  # one token all along
    finally:
        for name in ("spotify", "musicbrainz", "lastfm", "cache"):
            if name in ns:
                ns[name].close()
        ns["redis_client"].close()


def test_the_design_test_passes(design_env: Emulator) -> None:
    """The design's Testing section, run with a fresh cache, limiter and breaker."""
    from tunegate.breaker import CircuitBreaker
    from tunegate.cache import CacheManager
    from tunegate.ratelimit import RateLimiter

    ns: dict[str, Any] = {}
    exec(compile(textwrap.dedent(TESTING), "<design>", "exec"), ns)
    ns["test_spotify_search_with_caching"](CacheManager(), RateLimiter(), CircuitBreaker("spotify"))
    assert requests_to(design_env, "spotify", "search") == 1
