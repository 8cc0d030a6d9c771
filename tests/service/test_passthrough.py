"""The pass-through with the real clients: spotipy, musicbrainzngs and pylast, pointed at
the service (real uvicorn on loopback; pylast over TLS, as it only speaks HTTPS), get the
emulator's data; the second identical call is a cache hit the emulator never sees."""

from __future__ import annotations

import contextlib
import gc
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import musicbrainzngs
import pylast
import pytest
import spotipy
from prometheus_client import CollectorRegistry
from spotipy.oauth2 import SpotifyClientCredentials

from tunegate.clients import AsyncGateway
from tunegate.emulator import Emulator
from tunegate.service import ServiceOptions, create_app
from tunegate.service.callers import CallerKeys
from tunegate.service.passthrough import issue_token, verify_token

from ._proc import running_app
from .conftest import ADMIN_TOKEN, FAST_HTTP, FAST_RETRY, emulator_settings_of, known_track


def _calls(emulator: Emulator, provider: str) -> int:
    return int(emulator.stats()["requests"].get(provider, {}).get("total", 0))


@pytest.fixture
def cert(tmp_path: Path) -> tuple[str, str, str]:
    trustme = pytest.importorskip("trustme", reason="the emulator extra brings trustme")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem"))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    leaf.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return str(certfile), str(keyfile), str(cafile)


@contextlib.contextmanager
def _live(emulator: Emulator, tls: tuple[str, str] | None = None) -> Iterator[str]:
    registry = CollectorRegistry()
    gateway = AsyncGateway(
        emulator_settings_of(emulator), registry=registry, http=FAST_HTTP, retry=FAST_RETRY
    )
    options = ServiceOptions(admin_token=ADMIN_TOKEN, registry=registry)
    app = create_app(gateway, options=options, owns_gateway=True)
    with running_app(app, tls=tls) as url:
        yield url


@pytest.fixture
def live(emulator: Emulator) -> Iterator[str]:
    with _live(emulator) as url:
        yield url


@pytest.fixture
def live_tls(emulator: Emulator, cert: tuple[str, str, str]) -> Iterator[str]:
    with _live(emulator, (cert[0], cert[1])) as url:
        yield url


def test_spotipy_through_the_gateway(live: str, emulator: Emulator) -> None:
    auth = SpotifyClientCredentials(
        client_id="my-app",
        client_secret="anything",  # the caller authenticates to the service, not Spotify
        cache_handler=spotipy.MemoryCacheHandler(),
    )
    auth.OAUTH_TOKEN_URL = live + "/spotify/api/token"
    sp = spotipy.Spotify(auth_manager=auth, retries=0, requests_timeout=10)
    sp.prefix = live + "/spotify/v1/"
    track = sp.track("3n3Ppam7vgaVa1iaRUc9Lp")
    assert track["name"] == "Mr. Brightside"
    assert track["external_ids"]["isrc"] == "GBFFP0300052"
    upstream = _calls(emulator, "spotify")
    again = sp.track("3n3Ppam7vgaVa1iaRUc9Lp")
    assert again == track
    assert _calls(emulator, "spotify") == upstream  # a cache hit: the emulator saw nothing
    found = sp.search(q="track:Strobe artist:deadmau5", type="track", limit=5)
    assert [t["name"] for t in found["tracks"]["items"]] == ["Strobe"]
    page = sp.search(q="golden", type="track", limit=5)["tracks"]
    assert page["next"].startswith(live + "/spotify/v1/")  # links point at the gateway
    second = sp.next(page)["tracks"]
    assert second["offset"] == 5
    with pytest.raises(spotipy.SpotifyException) as info:
        sp.track("0" * 22)
    assert info.value.http_status == 404


def test_spotify_pass_through_needs_a_service_token(live: str) -> None:
    r = httpx.get(live + "/spotify/v1/tracks/3n3Ppam7vgaVa1iaRUc9Lp", timeout=10)
    assert r.status_code == 401
    assert r.json()["error"]["status"] == 401
    forged = issue_token(b"another key", "me")
    r = httpx.get(
        live + "/spotify/v1/tracks/3n3Ppam7vgaVa1iaRUc9Lp",
        headers={"Authorization": f"Bearer {forged}"},
        timeout=10,
    )
    assert r.status_code == 401
    r = httpx.post(live + "/spotify/api/token", data={"grant_type": "password"}, timeout=10)
    assert r.status_code == 400


def test_tokens_expire_and_are_signed() -> None:
    key = b"k" * 32
    token = issue_token(key, "app", now=1000.0)
    assert verify_token(key, token, now=1001.0) == "app"
    assert verify_token(key, token, now=1000.0 + 3601) is None
    assert verify_token(b"other", token, now=1001.0) is None
    assert verify_token(key, token[:-2] + "xx", now=1001.0) is None


def test_caller_keys_gate_the_token_endpoint(emulator: Emulator) -> None:
    from starlette.testclient import TestClient

    registry = CollectorRegistry()
    gateway = AsyncGateway(emulator_settings_of(emulator), registry=registry)
    keys = CallerKeys.of({"app-a": "key-of-app-a"})
    options = ServiceOptions(registry=registry, api_keys=keys)
    app = create_app(gateway, options=options, owns_gateway=True)
    with TestClient(app) as c:
        form = {"grant_type": "client_credentials"}
        r = c.post("/spotify/api/token", data=form, auth=("app-b", "wrong"))
        assert r.status_code == 401
        r = c.post("/spotify/api/token", data=form, auth=("app-a", "key-of-app-a"))
        assert r.status_code == 200
        assert r.json()["token_type"] == "Bearer"
        # The token names the key's application, whatever client id the caller gave.
        assert verify_token(options.token_key, r.json()["access_token"]) == "app-a"


@pytest.fixture
def mb(live: str) -> Iterator[Any]:
    """musicbrainzngs pointed at the gateway; its module globals restored afterwards."""
    m = musicbrainzngs.musicbrainz
    saved = (m.hostname, m.https, m._useragent, m._client, m.do_rate_limit)
    musicbrainzngs.set_useragent("tunegate-tests", "0.1", "https://example.org/tunegate")
    musicbrainzngs.set_hostname(live.removeprefix("http://") + "/musicbrainz", use_https=False)
    musicbrainzngs.set_rate_limit(False)  # the gateway keeps the quota
    yield musicbrainzngs
    with warnings.catch_warnings():  # musicbrainzngs never closes its urllib responses
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    m.hostname, m.https, m._useragent, m._client, m.do_rate_limit = saved


def test_musicbrainzngs_through_the_gateway(mb: Any, emulator: Emulator) -> None:
    found = mb.search_recordings(recording="Thinking Out Loud", artist="Ed Sheeran", limit=5)
    assert found["recording-list"][0]["title"] == "Thinking Out Loud"
    by_isrc = mb.get_recordings_by_isrc("GBAHS1400099", includes=["artists"])
    recordings = by_isrc["isrc"]["recording-list"]
    assert [r["id"] for r in recordings] == ["cb2cc207-8125-445c-9ef9-6ea44eee959a"]
    rec = mb.get_recording_by_id(recordings[0]["id"], includes=["artists", "isrcs", "tags"])
    assert rec["recording"]["isrc-list"] == ["GBAHS1400099"]
    upstream = _calls(emulator, "musicbrainz")
    again = mb.get_recording_by_id(recordings[0]["id"], includes=["artists", "isrcs", "tags"])
    assert again == rec
    assert _calls(emulator, "musicbrainz") == upstream
    with pytest.raises(musicbrainzngs.ResponseError) as info:
        mb.get_recordings_by_isrc("GBAAA0000000")
    cause = info.value.cause
    cause.close()
    assert cause.code == 404


def test_musicbrainz_json_and_x_cache(live: str, emulator: Emulator) -> None:
    track = known_track(emulator.catalog)
    url = f"{live}/musicbrainz/ws/2/recording/{track['mbid']}"
    first = httpx.get(url, params={"fmt": "json"}, timeout=10)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/json")
    assert first.json()["id"] == track["mbid"]
    assert first.headers["x-cache"] == "miss"
    second = httpx.get(url, params={"fmt": "json"}, timeout=10)
    assert second.headers["x-cache"] == "hit"
    assert second.json() == first.json()


@pytest.fixture
def lastfm(live_tls: str, cert: tuple[str, str, str]) -> Iterator[pylast.LastFMNetwork]:
    saved = pylast.SSL_CONTEXT
    pylast.SSL_CONTEXT = ssl.create_default_context(cafile=cert[2])
    network = pylast.LastFMNetwork(api_key="the-callers-own-key", api_secret="unused")
    network.ws_server = (live_tls.removeprefix("https://"), "/lastfm/2.0/")
    yield network
    pylast.SSL_CONTEXT = saved


def test_pylast_through_the_gateway(lastfm: pylast.LastFMNetwork, emulator: Emulator) -> None:
    track = lastfm.get_track("The Killers", "Mr. Brightside")
    tags = [t.item.get_name() for t in track.get_top_tags(limit=5)]
    assert tags
    upstream = _calls(emulator, "lastfm")
    again = [t.item.get_name() for t in track.get_top_tags(limit=5)]
    assert again == tags
    assert _calls(emulator, "lastfm") == upstream
    assert track.get_duration() > 0
    with pytest.raises(pylast.WSError) as info:
        lastfm.get_track("Nobody Anywhere", "A Song That Does Not Exist").get_duration()
    assert info.value.status == "6"
    with pytest.raises(pylast.WSError):  # writes act for a user: not served
        lastfm.scrobble("a", "b", 1)


def test_refused_input_is_the_providers_400_not_a_500(live: str) -> None:
    long = "x" * 5000
    r = httpx.get(f"{live}/musicbrainz/ws/2/recording", params={"query": long}, timeout=10)
    assert r.status_code == 400
    assert "<error>" in r.text
    r = httpx.post(f"{live}/lastfm/2.0/", content=b"a=" + b"x" * (2 << 20), timeout=30)
    assert r.status_code == 400
    assert 'status="failed"' in r.text
    r = httpx.post(
        f"{live}/spotify/api/token",
        content=b"grant_type=" + b"x" * (2 << 20),
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert r.status_code == 400
