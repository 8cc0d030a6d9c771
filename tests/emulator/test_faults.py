"""Every fault kind, seen from a real HTTP client (httpx); determinism; the admin endpoints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.emulator.conftest import MB_AGENT, bearer, lastfm_params
from tunegate.emulator import Emulator, FaultSpec, Latency, parse_faults

TRACK = "/tracks/3n3Ppam7vgaVa1iaRUc9Lp"


@pytest.fixture
def emu(quiet_emulator: Emulator) -> Emulator:
    return quiet_emulator


_clients: list[httpx.Client] = []


@pytest.fixture(autouse=True, scope="module")
def _one_client() -> Iterator[None]:
    """One pooled client for the module: a new httpx client costs ~50 ms (its SSL context)."""
    with httpx.Client() as client:
        _clients.append(client)
        yield
        _clients.clear()


def get_track(emu: Emulator, timeout: float = 5.0) -> httpx.Response:
    return _clients[0].get(emu.urls.spotify + TRACK, headers=bearer(emu), timeout=timeout)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_error_statuses_in_each_providers_shape(emu: Emulator, status: int) -> None:
    """Injected statuses come in each provider's own error shape."""
    emu.set_faults(f"*:error={status}")
    sp = get_track(emu)
    assert sp.status_code == status
    assert sp.json()["error"]["status"] == status
    mb = httpx.get(
        f"{emu.urls.musicbrainz}/isrc/GBAHS1400099",
        params={"fmt": "json"},
        headers={"User-Agent": MB_AGENT},
    )
    assert mb.status_code == status
    assert "help" in mb.json()
    lf = httpx.get(
        emu.urls.lastfm, params=lastfm_params(method="artist.getInfo", artist="U2", format="json")
    )
    assert lf.status_code == status
    assert isinstance(lf.json()["error"], int)


def test_429_carries_retry_after(emu: Emulator) -> None:
    """An injected 429 says how long to wait."""
    emu.set_faults({"provider": "spotify", "errors": {"429": 1.0}, "retry_after": 7})
    r = get_track(emu)
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"


def test_latency_fixed_and_distribution(emu: Emulator) -> None:
    """Added latency delays the answer (checked through the fault plan, not wall time)."""
    emu.set_faults("spotify/track:latency=0.05")
    assert get_track(emu).status_code == 200
    spec = parse_faults("spotify:latency=uniform(0.1,0.2)")[0]
    assert spec.latency == Latency("uniform", (0.1, 0.2))
    import random

    rng = random.Random(1)
    assert all(0.1 <= spec.latency.sample(rng) <= 0.2 for _ in range(100))


def test_connection_reset_and_close(emu: Emulator) -> None:
    """reset: the client sees a reset; close: the body ends before Content-Length."""
    emu.set_faults("spotify/track:reset")
    with pytest.raises(httpx.ReadError):
        get_track(emu)
    emu.set_faults("spotify/track:close")
    with pytest.raises(httpx.RemoteProtocolError):
        get_track(emu)
    # Stats count what the client saw: no status at all.
    assert emu.stats()["requests"]["spotify"]["by_status"] == {"dropped": 2}


def test_truncated_malformed_and_wrong_type(emu: Emulator) -> None:
    """truncate and malformed give unreadable JSON; wrong_content_type a 200 HTML page."""
    for kind in ("truncate", "malformed"):
        emu.set_faults(f"spotify/track:{kind}")
        r = get_track(emu)
        assert r.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(r.content)
    emu.set_faults("spotify/track:wrong_content_type")
    r = get_track(emu)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")


def test_drip_arrives_complete(emu: Emulator) -> None:
    """A dripping body still arrives whole."""
    emu.set_faults("spotify/track:drip,drip_seconds=0.2")
    assert get_track(emu).json()["name"] == "Mr. Brightside"


def test_hang_until_the_client_times_out(emu: Emulator) -> None:
    """hang: nothing comes back; the client's own timeout fires."""
    emu.set_faults("spotify/track:hang")
    with pytest.raises(httpx.ReadTimeout):
        get_track(emu, timeout=0.3)
    emu.clear_faults()
    assert get_track(emu).status_code == 200
    for _ in range(100):  # the hang notices the client left within ~50 ms
        if emu.stats()["requests"]["spotify"]["total"] == 2:
            break
        time.sleep(0.02)
    assert emu.stats()["requests"]["spotify"]["by_status"] == {"200": 1, "dropped": 1}


def test_outage_window_and_times(emu: Emulator) -> None:
    """An outage fails every request while it lasts; times=N limits a rule to N requests."""
    emu.set_faults("spotify:outage=60")
    assert [get_track(emu).status_code for _ in range(3)] == [503, 503, 503]
    emu.set_faults("spotify/track:error=500,times=2")
    assert [get_track(emu).status_code for _ in range(3)] == [500, 500, 200]


def test_faults_are_deterministic_under_a_seed() -> None:
    """The same seed and request sequence meet the same faults; another seed differs."""

    def run(seed: int) -> list[int]:
        with Emulator(seed=seed, rate_limits=False, faults="spotify/track:error=503@0.5") as e:
            return [get_track(e).status_code for _ in range(24)]

    first = run(7)
    assert first == run(7)
    assert set(first) == {200, 503}
    assert first != run(8)


def test_same_seed_same_faults_after_reset() -> None:
    """A reset emulator meets the same faults as a fresh one with the same seed."""

    def run(e: Emulator) -> list[int]:
        e.set_faults("spotify/track:error=500@0.5")
        return [get_track(e).status_code for _ in range(24)]

    with Emulator(catalog_size=500, seed=7, rate_limits=False) as a:
        first = run(a)
        a.reset()
        again = run(a)
        a.set_faults("spotify/track:error=500@0.5")  # replacing the rules restarts them too
        a.add_faults("lastfm:latency=0")
        assert [get_track(a).status_code for _ in range(24)] == first
    with Emulator(catalog_size=500, seed=7, rate_limits=False) as b:
        fresh = run(b)
    assert set(first) == {200, 500}
    assert again == first
    assert fresh == first


def test_times_counts_only_requests_the_rule_applied_to(emu: Emulator) -> None:
    """A times=N rule pre-empted by an earlier rule keeps its N for later requests."""
    emu.set_faults("spotify/track:error=500,times=2;spotify/track:error=503,times=2")
    assert [get_track(emu).status_code for _ in range(5)] == [500, 500, 503, 503, 200]
    emu.set_faults("spotify/track:error=500,times=1;spotify/track:latency=0.01,times=1")
    assert [get_track(emu).status_code for _ in range(2)] == [500, 200]
    assert emu.stats()["faults"]["spotify"]["track"]["error_500"] == 3


def test_admin_endpoints(emu: Emulator) -> None:
    """/_emulator/faults (JSON and text), /stats with per-client rate, reset, config."""
    admin = emu.urls.admin
    put = httpx.put(
        f"{admin}/faults",
        json=[{"provider": "lastfm", "endpoint": "track.*", "errors": {"503": 1}}],
    )
    assert put.status_code == 200
    assert put.json()["rules"][0]["endpoint"] == "track.*"
    lf = httpx.get(
        emu.urls.lastfm,
        params=lastfm_params(method="track.getInfo", artist="U2", track="One", format="json"),
    )
    assert lf.status_code == 503
    assert lf.json()["error"] == 11
    httpx.post(f"{admin}/faults", content="spotify:latency=0")
    assert len(httpx.get(f"{admin}/faults").json()["rules"]) == 2
    assert httpx.put(f"{admin}/faults", content="spotify:error=200").status_code == 400
    assert httpx.put(f"{admin}/faults", content="{bad json").status_code == 400
    httpx.delete(f"{admin}/faults")
    get_track(emu)
    stats = httpx.get(f"{admin}/stats").json()
    assert stats["requests"]["lastfm"]["endpoints"]["track.getInfo"]["by_status"] == {"503": 1}
    assert stats["requests"]["spotify"]["endpoints"]["track"]["by_status"]["200"] == 1
    assert stats["faults"]["lastfm"]["track.getInfo"] == {"error_503": 1}
    assert stats["clients"]["spotify"]["tunegate-test-id"]["max_in_window"] == 1
    assert "tunegate-test-key" not in json.dumps(stats)  # API keys never appear in stats
    httpx.post(f"{admin}/stats/reset")
    assert httpx.get(f"{admin}/stats").json()["total"] == 0
    patched = httpx.patch(f"{admin}/config", json={"spotify_search_limit_max": 50})
    assert patched.json()["spotify_search_limit_max"] == 50
    assert httpx.patch(f"{admin}/config", json={"nope": 1}).status_code == 400
    httpx.post(f"{admin}/reset")
    assert httpx.get(f"{admin}/config").json()["spotify_search_limit_max"] == 10


def test_spec_validation() -> None:
    """Bad rules are refused with a reason."""
    for bad in (
        "spotify:error=abc",
        "nowhere:reset",
        "spotify:reset=2",
        "spotify:error=503@0.7,reset=0.5",
        "spotify:latency=weird(1)",
        "spotify:bogus=1",
    ):
        with pytest.raises(ValueError, match=r"\w"):
            parse_faults(bad)
    rule = FaultSpec.from_json(
        {
            "provider": "musicbrainz",
            "latency": {"distribution": "normal", "mean": 0.1, "stddev": 0.01},
        }
    )
    assert FaultSpec.from_json(rule.to_json()) == rule


def test_token_endpoint_429_carries_retry_after() -> None:
    """An injected 429 on the accounts service says when to come back, as on the Web API
    (a client that sees no Retry-After retries into the refusal)."""
    import urllib.error
    import urllib.request

    from tunegate.emulator import Emulator

    with Emulator(catalog_size=50) as emu:
        emu.set_faults("spotify:error=429,retry_after=5h")
        request = urllib.request.Request(
            emu.urls.spotify_token, data=b"grant_type=client_credentials", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
    refused = caught.value
    refused.close()  # it holds the response's socket
    assert refused.code == 429
    assert refused.headers["Retry-After"] == str(5 * 3600)
