"""MusicBrainzClient and AsyncMusicBrainzClient against the emulator: every method, the
User-Agent rule, the 1 request/s rule for the official host, input checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.clients.conftest import AGENT, Driver, requests_to
from tests.pipeline._server import Reply, ScriptServer, serve
from tunegate.cache import CacheManager
from tunegate.clients import AsyncMusicBrainzClient, Gateway, MusicBrainzClient
from tunegate.emulator import Emulator
from tunegate.exceptions import ConfigurationError, InvalidInput
from tunegate.providers._request import ApiRequest
from tunegate.ratelimit import RateLimiter
from tunegate.testing import FakeClock

STROBE = 0
THINKING_OUT_LOUD = 10  # Ed Sheeran, with its real MBID and ISRC


def test_lookup_isrc(driver: Driver, emulator: Emulator) -> None:
    """lookup_isrc gives the design's ``recording['title']`` and ``recording['id']``;
    lookup_isrc_recordings every recording; an unknown ISRC gives None and []."""
    track = emulator.describe_track(THINKING_OUT_LOUD)
    client = driver.musicbrainz()
    recording = driver.call(client, "lookup_isrc", track["isrc"].lower())
    assert (recording["title"], recording["id"]) == ("Thinking Out Loud", track["mbid"])
    assert recording["artist-credit"][0]["name"] == "Ed Sheeran"
    every = driver.call(client, "lookup_isrc_recordings", track["isrc"])
    assert [r["id"] for r in every] == [track["mbid"]]
    assert requests_to(emulator, "musicbrainz", "isrc") == 1  # the second came from the cache
    assert driver.call(client, "lookup_isrc", "USIR20400599") is None
    assert driver.call(client, "lookup_isrc_recordings", "USIR20400599") == []


def test_search_recording_ranks_and_escapes(driver: Driver, emulator: Emulator) -> None:
    """search_recording returns the best match; Lucene syntax in user text is only text."""
    client = driver.musicbrainz()
    strobe = emulator.describe_track(STROBE)
    found = driver.call(client, "search_recording", "Deadmau5", "Strobe")
    assert (found["id"], found["title"]) == (strobe["mbid"], "Strobe")
    bells = driver.call(client, "search_recording", "AC/DC", "Hells Bells")
    assert bells["title"] == "Hells Bells"
    assert driver.call(client, "search_recording", 'x" OR artist:*', "(a) && [b]") is None


def test_get_recording(driver: Driver, emulator: Emulator) -> None:
    """get_recording by MBID (any UUID spelling), with the inc list; unknown gives None."""
    track = emulator.describe_track(THINKING_OUT_LOUD)
    client = driver.musicbrainz()
    recording = driver.call(client, "get_recording", track["mbid"].upper())
    assert recording["title"] == "Thinking Out Loud"
    assert track["isrc"] in recording["isrcs"]
    slim = driver.call(client, "get_recording", track["mbid"], inc=["artist-credits"])
    assert slim["id"] == track["mbid"]
    assert "isrcs" not in slim
    assert driver.call(client, "get_recording", "00000000-0000-0000-0000-000000000000") is None


@pytest.mark.parametrize(
    ("method", "args", "field"),
    [
        ("lookup_isrc", ("USIR2040050",), "isrc"),
        ("lookup_isrc", ("USIR20400500", {"inc": ["genres"]}), "inc"),
        ("search_recording", ("Deadmau5", "   "), "title"),
        ("search_recording", (None, "Strobe"), "artist"),
        ("get_recording", ("not-a-uuid",), "mbid"),
        ("get_recording", ("cb2cc207-8125-445c-9ef9-6ea44eee959a", {"inc": "bogus"}), "inc"),
    ],
)
def test_bad_input_fails_before_any_network_call(
    driver: Driver, emulator: Emulator, method: str, args: tuple[Any, ...], field: str
) -> None:
    """Invalid input raises InvalidInput naming the field; the emulator sees nothing."""
    client = driver.musicbrainz()
    *positional, last = args
    if isinstance(last, dict):  # keyword options ride last
        err = driver.catch(client, method, *positional, **last)
    else:
        err = driver.catch(client, method, *args)
    assert isinstance(err, InvalidInput)
    assert err.field == field
    assert emulator.stats()["total"] == 0


@pytest.mark.parametrize(
    "agent",
    [
        None,
        "",
        "tunegate",
        "python-requests/2.31 ( a@b.c )",
        "python-musicbrainz/0.7.3 ( a@b.c )",
        "App/1.0",
    ],
)
def test_user_agent_is_required_and_checked(agent: Any) -> None:
    """A missing, generic or contact-less User-Agent is refused at construction."""
    with pytest.raises(ConfigurationError, match=r"AppName/1\.0"):
        MusicBrainzClient(agent)


@pytest.fixture
def recorder() -> Iterator[ScriptServer]:
    yield from serve()


def test_user_agent_is_sent_on_every_request(recorder: ScriptServer) -> None:
    """Every request carries the application's User-Agent (then tunegate's own product)."""
    body = {"recordings": [{"id": "cb2cc207-8125-445c-9ef9-6ea44eee959a", "title": "T"}]}
    recorder.script("/ws/2/isrc/GBAHS1400099", Reply(json=body))
    recorder.script("/ws/2/recording", Reply(json={"recordings": []}))
    with MusicBrainzClient(AGENT, base_url=recorder.url, rate=100.0) as client:
        assert client.lookup_isrc("GBAHS1400099") is not None
        assert client.search_recording("A", "B") is None
    agents = [seen.headers.get("User-Agent", "") for seen in recorder.requests()]
    assert len(agents) == 2
    assert all(a.startswith(AGENT + " tunegate/") for a in agents)


def test_more_than_one_request_per_second_needs_an_override() -> None:
    """Against musicbrainz.org a rate above 1/s is refused unless allow_fast=True; a mirror
    may go faster; a shared limiter configured too fast is refused too."""
    with pytest.raises(ConfigurationError, match="allow_fast"):
        MusicBrainzClient(AGENT, rate=2.0)
    assert MusicBrainzClient(AGENT, rate=2.0, allow_fast=True).rate_limiter.buckets[
        "musicbrainz"
    ].rate == pytest.approx(2.0)
    mirror = MusicBrainzClient(AGENT, base_url="http://mb.internal:5000", rate=50.0)
    assert mirror.rate_limiter.buckets["musicbrainz"].rate == pytest.approx(50.0)
    limiter = RateLimiter()
    limiter.configure_provider("musicbrainz", rate=5.0, capacity=5)
    with pytest.raises(ConfigurationError, match="1 request/s"):
        MusicBrainzClient(AGENT, rate_limiter=limiter)
    limiter.configure_provider("musicbrainz", rate=1.0, capacity=1)
    default = MusicBrainzClient(AGENT, rate_limiter=limiter)
    assert default.base_url == "https://musicbrainz.org"


@pytest.mark.parametrize(
    "options",
    [{"capacity": 10}, {"rate": 1.0, "capacity": 30}, {"rate": 0.5, "capacity": 2}],
)
def test_bursts_against_the_official_host_need_an_override(options: dict[str, Any]) -> None:
    """At 1/s, a capacity above 1 still sends a burst the official service answers with
    503: refused unless allow_fast=True; a mirror may have any burst."""
    with pytest.raises(ConfigurationError, match=r"capacity .* allow_fast"):
        MusicBrainzClient(AGENT, **options)
    assert (
        MusicBrainzClient(AGENT, allow_fast=True, **options)
        .rate_limiter.buckets["musicbrainz"]
        .capacity
        == options["capacity"]
    )
    mirror = MusicBrainzClient(AGENT, base_url="http://mb.internal:5000", **options)
    assert mirror.rate_limiter.buckets["musicbrainz"].capacity == options["capacity"]


def test_shared_limiter_with_a_big_bucket_is_refused() -> None:
    """A shared limiter whose musicbrainz bucket bursts above 1 is refused against the
    official host, whatever its rate."""
    limiter = RateLimiter()
    limiter.configure_provider("musicbrainz", rate=1.0, capacity=50)
    with pytest.raises(ConfigurationError, match="capacity 50"):
        MusicBrainzClient(AGENT, rate_limiter=limiter)
    assert MusicBrainzClient(AGENT, rate_limiter=limiter, allow_fast=True) is not None


@pytest.mark.parametrize("limits", [(20.0, 20), (1.0, 10)])
def test_shared_limiter_reconfigured_later_is_refused(limits: tuple[float, int]) -> None:
    """A shared limiter sped up after the client was built: the next call raises
    ConfigurationError before anything else (here a cached answer would have been served,
    so no request is ever attempted)."""
    cache = CacheManager()
    recording = {"id": "cb2cc207-8125-445c-9ef9-6ea44eee959a", "title": "T"}
    cache.store(cache.key("musicbrainz:isrc", "GBAHS1400099"), [recording])
    limiter = RateLimiter()
    limiter.configure_provider("musicbrainz", rate=1.0, capacity=1)
    client = MusicBrainzClient(AGENT, cache_manager=cache, rate_limiter=limiter)
    assert client.lookup_isrc("GBAHS1400099") == recording
    limiter.configure_provider("musicbrainz", rate=limits[0], capacity=limits[1])
    with pytest.raises(ConfigurationError, match="allow_fast"):
        client.lookup_isrc("GBAHS1400099")
    raw = ApiRequest(
        provider="musicbrainz",
        method="GET",
        endpoint_template="/ws/2/recording/{mbid}",
        path="/ws/2/recording/cb2cc207-8125-445c-9ef9-6ea44eee959a",
        params=(("fmt", "json"),),
    )
    with pytest.raises(ConfigurationError, match="allow_fast"):
        client.send_raw(raw)  # a request of the caller's own too, before any I/O
    limiter.configure_provider("musicbrainz", rate=1.0, capacity=1)
    assert client.lookup_isrc("GBAHS1400099") == recording


def test_default_clients_share_one_bucket_per_process(emulator: Emulator, redis_url: str) -> None:
    """The 1 request/s rule is per IP: every default client of the process for
    musicbrainz.org, sync or async, and every gateway's, takes turns in one bucket; a
    mirror, a fake clock, Redis or allow_fast keep a bucket of their own."""
    first, second = MusicBrainzClient(AGENT), AsyncMusicBrainzClient(AGENT)
    bucket = first.rate_limiter.buckets["musicbrainz"]
    assert second.rate_limiter.buckets["musicbrainz"] is bucket
    assert (bucket.rate, bucket.capacity) == (1.0, 1)
    env = {"MUSICBRAINZ_USER_AGENT": AGENT}
    with Gateway.from_env(env) as one, Gateway.from_env(env) as two:
        assert one.musicbrainz.rate_limiter.buckets["musicbrainz"] is bucket
        assert two.musicbrainz.rate_limiter.buckets["musicbrainz"] is bucket
    others = [
        MusicBrainzClient(AGENT, base_url=emulator.urls.musicbrainz),
        MusicBrainzClient(AGENT, clock=FakeClock()),
        MusicBrainzClient(AGENT, allow_fast=True),
        MusicBrainzClient(AGENT, redis=redis_url),  # Redis shares its buckets already
    ]
    assert all(c.rate_limiter.buckets["musicbrainz"] is not bucket for c in others)
    assert others[-1].rate_limiter.buckets["musicbrainz"].shared
    for client in others:
        client.close()


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> None:
    """``TUNEGATE_MUSICBRAINZ_URL`` points the client at a mirror (``/ws/2`` accepted)."""
    monkeypatch.setenv("TUNEGATE_MUSICBRAINZ_URL", emulator.urls.musicbrainz)
    with MusicBrainzClient(AGENT) as client:
        assert client.base_url == emulator.urls.root
        strobe = emulator.describe_track(STROBE)
        recording = client.get_recording(strobe["mbid"])
        assert recording is not None
        assert recording["title"] == "Strobe"
