"""Issue 10/11 emulator pieces: duration units in compact faults, the client environment,
and "feat" stripping that respects word boundaries."""

from __future__ import annotations

import re
import shlex
import subprocess

import httpx
import pytest
import spotipy
from spotipy.oauth2 import SpotifyClientCredentials

from tunegate import Gateway
from tunegate.emulator import FAULTS_HELP, Emulator, parse_faults
from tunegate.emulator.text import strip_feat


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300ms", 0.3), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1.5", 1.5), ("7", 7.0)],
)
def test_retry_after_accepts_units(text: str, seconds: float) -> None:
    [rule] = parse_faults(f"spotify:error=429,retry_after={text}")
    assert rule.retry_after == pytest.approx(seconds)


def test_latency_and_outage_accept_units() -> None:
    [rule] = parse_faults("musicbrainz:latency=250ms,outage=2m,hang_seconds=1s")
    assert rule.latency is not None
    assert rule.latency.params == pytest.approx((0.25,))
    assert rule.outage == pytest.approx(120.0)
    assert rule.hang_seconds == pytest.approx(1.0)
    [ranged] = parse_faults("spotify:latency=uniform(100ms,2s)")
    assert ranged.latency is not None
    assert ranged.latency.params == pytest.approx((0.1, 2.0))


@pytest.mark.parametrize("bad", ["5d", "2 sec", "ms", "1x"])
def test_bad_unit_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match="retry_after") as info:
        parse_faults(f"spotify:retry_after={bad}")
    assert "(units ms, s, m, h)" in str(info.value)


def test_help_text_example_parses() -> None:
    example = next(line for line in FAULTS_HELP.splitlines() if line.startswith("Example:"))
    rules = parse_faults(example.removeprefix("Example:").strip())
    assert [r.provider for r in rules] == ["spotify", "musicbrainz", "lastfm"]
    assert rules[0].latency is not None
    assert rules[0].latency.params == pytest.approx((0.3,))


def test_long_retry_after_reaches_the_client() -> None:
    """A 429 can say "come back in hours" (Spotify has been seen doing so)."""
    with Emulator(rate_limits=False, faults="spotify:error=429,retry_after=5h") as emu:
        token = emu.issue_spotify_token()
        r = httpx.get(
            emu.urls.spotify + "/tracks/3n3Ppam7vgaVa1iaRUc9Lp",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "18000"


@pytest.mark.parametrize(
    ("title", "stripped"),
    [
        ("Soft Beautiful Infinite", "Soft Beautiful Infinite"),  # issue 11: not "So"
        ("SOFT BEAUTIFUL INFINITE", "SOFT BEAUTIFUL INFINITE"),
        ("Soft Beautiful Infinite (feat. X)", "Soft Beautiful Infinite"),
        ("Heroic Feat of Strength", "Heroic Feat of Strength"),  # no dot, no brackets
        ("Left Featherweight", "Left Featherweight"),
        ("Draft Of A Song", "Draft Of A Song"),
        ("Song (feat. X)", "Song"),
        ("Song [ft. X & Y]", "Song"),
        ("Song feat. X", "Song"),
        ("Song Featuring X", "Song"),
        ("Song (ft X)", "Song"),
        ("Song (featuring X)", "Song"),
        ("Song ( feat. X )", "Song"),
        ("Song feat X", "Song feat X"),  # no dot, no brackets: not taken for a credit
    ],
)
def test_strip_feat_needs_a_word_of_its_own(title: str, stripped: str) -> None:
    assert strip_feat(title) == stripped


@pytest.mark.timeout(10)
def test_strip_feat_on_long_runs_of_spaces_does_not_stall_the_emulator() -> None:
    """Titles come from requests: the former pattern took ~14 s on 1,200 spaces (cubic)."""
    assert strip_feat(" " * 5000 + "x") == "x"
    assert strip_feat("Song feat." + " " * 5000 + "X") == "Song"
    assert strip_feat("Song (" + " " * 5000 + "featuring X)") == "Song"


def test_lastfm_autocorrect_keeps_titles_with_ft_inside_a_word(quiet_emulator: Emulator) -> None:
    """Last.fm ``autocorrect=1`` finds a track like "Soft Window" (once cut down to "So")."""
    catalog = quiet_emulator.catalog
    hit = next(
        i
        for i in range(catalog.size)
        if re.search(r"\wft\s", catalog.track(i).title) and catalog.on_lastfm(i)
    )
    track = catalog.track(hit)
    r = httpx.get(
        quiet_emulator.urls.lastfm,
        params={
            "method": "track.getInfo",
            "api_key": quiet_emulator.env()["LASTFM_API_KEY"],
            "artist": catalog.artist(track.artists[0]).name,
            "track": track.title.upper() + "!",
            "autocorrect": "1",
            "format": "json",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["track"]["name"] == track.display_title


def test_env_points_a_gateway_at_the_emulator(quiet_emulator: Emulator) -> None:
    env = quiet_emulator.env()
    assert env["TUNEGATE_SPOTIFY_API_URL"] == quiet_emulator.urls.spotify
    assert env["TUNEGATE_MUSICBRAINZ_RATE"] == "1"
    with Gateway.from_env(env) as gw:
        track = gw.spotify.get_track("3n3Ppam7vgaVa1iaRUc9Lp")
        assert track is not None
        assert track["id"] == "3n3Ppam7vgaVa1iaRUc9Lp"


def test_env_exports_evaluate_in_a_shell(quiet_emulator: Emulator) -> None:
    script = quiet_emulator.env_exports() + 'printf %s "$TUNEGATE_LASTFM_URL|$SPOTIFY_CLIENT_ID"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    env = quiet_emulator.env()
    assert out.stdout == f"{env['TUNEGATE_LASTFM_URL']}|{env['SPOTIFY_CLIENT_ID']}"
    assert all(
        shlex.split(line)[0] == "export" for line in quiet_emulator.env_exports().splitlines()
    )


def test_env_needs_a_running_emulator() -> None:
    with pytest.raises(RuntimeError, match="start"):
        Emulator().env()


SIDS = ("3n3Ppam7vgaVa1iaRUc9Lp",)


def _artist_sid(emu: Emulator) -> str:
    token = emu.issue_spotify_token()
    r = httpx.get(
        emu.urls.spotify + f"/tracks/{SIDS[0]}", headers={"Authorization": f"Bearer {token}"}
    )
    return str(r.json()["artists"][0]["id"])


@pytest.mark.parametrize("path", ["tracks", "artists"])
def test_development_mode_forbids_several_ids(path: str) -> None:
    """Development Mode (the real default): several-ids endpoints answer 403, single ones 200."""
    with Emulator(rate_limits=False, spotify_mode="development") as emu:
        ids = SIDS[0] if path == "tracks" else _artist_sid(emu)
        token = emu.issue_spotify_token()
        r = httpx.get(
            emu.urls.spotify + f"/{path}",
            params={"ids": ids},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 403
    assert r.json() == {"error": {"status": 403, "message": "Forbidden"}}


def test_extended_mode_serves_several_ids_to_spotipy() -> None:
    with Emulator(rate_limits=False, spotify_mode="extended") as emu:
        env = emu.env()
        auth = SpotifyClientCredentials(
            client_id=env["SPOTIFY_CLIENT_ID"],
            client_secret=env["SPOTIFY_CLIENT_SECRET"],
            cache_handler=spotipy.MemoryCacheHandler(),
        )
        auth.OAUTH_TOKEN_URL = env["TUNEGATE_SPOTIFY_AUTH_URL"]
        sp = spotipy.Spotify(auth_manager=auth, retries=0, requests_timeout=5)
        sp.prefix = emu.urls.spotify + "/"
        artist = _artist_sid(emu)
        assert [t["id"] for t in sp.tracks(list(SIDS))["tracks"]] == list(SIDS)
        assert [a["id"] for a in sp.artists([artist])["artists"]] == [artist]
        assert len(sp.search(q="love", type="track", limit=50)["tracks"]["items"]) > 10


def test_unknown_spotify_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="spotify_mode"):
        Emulator(spotify_mode="premium")


def _lastfm_get(emu: Emulator, fmt: str) -> httpx.Response:
    params = {"method": "artist.getInfo", "artist": "U2", "api_key": emu.env()["LASTFM_API_KEY"]}
    if fmt == "json":
        params["format"] = "json"
    return httpx.get(emu.urls.lastfm, params=params)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_lastfm_error_29_when_over_quota(fmt: str) -> None:
    with Emulator(lastfm_rate={"requests": 1, "window": 60.0}) as emu:
        assert _lastfm_get(emu, fmt).status_code == 200
        r = _lastfm_get(emu, fmt)
    assert r.status_code == 429
    if fmt == "json":
        assert r.json()["error"] == 29
    else:
        assert '<lfm status="failed">' in r.text
        assert '<error code="29">Rate Limit Exceeded' in r.text


def test_lastfm_errors_can_come_with_http_200() -> None:
    """With ``lastfm_errors_as_200`` the error is only in the body, JSON or XML."""
    with Emulator(lastfm_rate={"requests": 1, "window": 60.0}, lastfm_errors_as_200=True) as emu:
        assert "artist" in _lastfm_get(emu, "json").json()
        r = _lastfm_get(emu, "json")
        assert r.status_code == 200
        assert r.json()["error"] == 29
        emu.configure(rate_limits=False)
        emu.set_faults("lastfm:error=503")
        injected = _lastfm_get(emu, "json")
        assert injected.status_code == 200
        assert injected.json()["error"] == 11
        xml = _lastfm_get(emu, "xml")
    assert xml.status_code == 200
    assert '<lfm status="failed">' in xml.text
