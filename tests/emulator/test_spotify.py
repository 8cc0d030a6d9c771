"""Spotify: token flow, Web API errors, search filters and limits, lookups, the batch switch."""

from __future__ import annotations

import httpx
import pytest

from tests.emulator.conftest import bearer
from tunegate.emulator import Emulator
from tunegate.emulator.text import tokens
from tunegate.emulator.tokenstore import MAX_TOKENS_PER_APP, TokenStore


def token(
    emu: Emulator, client_id: str = "tunegate-test-id", secret: str = "tunegate-test-secret"
) -> httpx.Response:
    return httpx.post(
        emu.urls.spotify_token, auth=(client_id, secret), data={"grant_type": "client_credentials"}
    )


def test_token_success_and_credential_errors(emulator: Emulator) -> None:
    """Good credentials get a Bearer token; bad ones get RFC 6749 invalid_client (400)."""
    ok = token(emulator)
    assert ok.status_code == 200
    body = ok.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert token(emulator, "nobody").json() == {
        "error": "invalid_client",
        "error_description": "Invalid client",
    }
    wrong = token(emulator, secret="wrong")
    assert wrong.status_code == 400
    assert wrong.json()["error_description"] == "Invalid client secret"
    no_grant = httpx.post(
        emulator.urls.spotify_token, auth=("tunegate-test-id", "tunegate-test-secret")
    )
    assert no_grant.json()["error"] == "unsupported_grant_type"
    form = httpx.post(
        emulator.urls.spotify_token,
        data={
            "grant_type": "client_credentials",
            "client_id": "tunegate-test-id",
            "client_secret": "tunegate-test-secret",
        },
    )
    assert form.status_code == 200


def test_configured_credentials_and_token_expiry(emulator: Emulator) -> None:
    """Credentials are configurable; an expired token gets the Web API's 401 shape."""
    emulator.configure(spotify_clients={"my-app": "s3cret"}, token_lifetime=1)
    assert token(emulator).status_code == 400
    got = token(emulator, "my-app", "s3cret").json()
    assert got["expires_in"] == 1
    headers = {"Authorization": f"Bearer {got['access_token']}"}
    url = f"{emulator.urls.spotify}/tracks/3n3Ppam7vgaVa1iaRUc9Lp"
    assert httpx.get(url, headers=headers).status_code == 200
    emulator.expire_tokens()
    expired = httpx.get(url, headers=headers)
    assert expired.status_code == 401
    assert expired.json() == {"error": {"status": 401, "message": "The access token expired"}}
    assert httpx.get(url).json()["error"]["message"] == "No token provided"
    bad = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json()["error"]["message"] == "Invalid access token"


def test_token_store_is_bounded(emulator: Emulator) -> None:
    """An app keeps at most MAX_TOKENS_PER_APP live tokens: the oldest is revoked first."""
    first = emulator.issue_spotify_token()
    later = [emulator.issue_spotify_token() for _ in range(MAX_TOKENS_PER_APP)]
    url = f"{emulator.urls.spotify}/tracks/3n3Ppam7vgaVa1iaRUc9Lp"
    gone = httpx.get(url, headers={"Authorization": f"Bearer {first}"})
    assert gone.status_code == 401
    assert gone.json()["error"]["message"] == "Invalid access token"
    for kept in (later[0], later[-1]):
        assert httpx.get(url, headers={"Authorization": f"Bearer {kept}"}).status_code == 200


def test_token_store_policy() -> None:
    """Expired tokens leave as new ones are issued; expire_all keeps them known as expired."""
    store = TokenStore(per_app=3)
    old = [store.issue("a", 0.0, 10.0) for _ in range(3)]
    assert len(store) == 3
    newest = store.issue("a", 1.0, 10.0)
    assert store.get(old[0]) is None  # revoked: over the cap
    assert store.get(newest) == ("a", 11.0)
    store.issue("a", 10.5, 10.0)  # old[1] and old[2] expired at 10.0
    assert len(store) == 2
    assert store.get(old[1]) is None
    other = store.issue("b", 10.5, 10.0)
    store.expire_all(12.0)
    assert store.get(other) == ("b", 12.0)
    store.clear()
    assert len(store) == 0


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"type": "track"}, 400, "No search query"),
        ({"q": "x"}, 400, "Missing parameter type"),
        ({"q": "x", "type": "song"}, 400, "Bad search type field song"),
        ({"q": "x", "type": "track", "limit": "11"}, 400, "Invalid limit"),
        ({"q": "x", "type": "track", "limit": "ten"}, 400, "Invalid limit"),
        ({"q": "x", "type": "track", "offset": "1001"}, 400, "Invalid offset"),
        ({"q": "x", "type": "track", "market": "usa"}, 400, "Invalid market code"),
    ],
)
def test_search_errors(
    emulator: Emulator, params: dict[str, str], status: int, message: str
) -> None:
    """Bad search parameters get the Web API error shape with the real messages."""
    r = httpx.get(f"{emulator.urls.spotify}/search", params=params, headers=bearer(emulator))
    assert r.status_code == status
    assert r.json() == {"error": {"status": status, "message": message}}


def test_search_limit_default_and_configurable_max(emulator: Emulator) -> None:
    """Development Mode: default 5, max 10; configured to 50 the old default 20 returns."""
    url, headers = f"{emulator.urls.spotify}/search", bearer(emulator)
    assert (
        httpx.get(url, params={"q": "love", "type": "track"}, headers=headers).json()["tracks"][
            "limit"
        ]
        == 5
    )
    emulator.configure(spotify_search_limit_max=50)
    page = httpx.get(url, params={"q": "love", "type": "track"}, headers=headers).json()["tracks"]
    assert page["limit"] == 20
    assert (
        len(
            httpx.get(
                url, params={"q": "love", "type": "track", "limit": 50}, headers=headers
            ).json()["tracks"]["items"]
        )
        == 50
    )


def test_search_filters_and_matching(emulator: Emulator) -> None:
    """Field filters, case/accent folding, ISRC and year filters narrow results as documented."""
    url, headers = f"{emulator.urls.spotify}/search", bearer(emulator)

    def names(q: str, kind: str = "track") -> list[str]:
        body = httpx.get(url, params={"q": q, "type": kind, "limit": 10}, headers=headers).json()
        return [item["name"] for item in body[kind + "s"]["items"]]

    assert names("track:jOgA artist:bjork") == ["Jóga"]
    assert names('track:"mr brightside" artist:killers') == ["Mr. Brightside", "Mr. Brightside"]
    assert names("isrc:USIR20400274") == ["Mr. Brightside"]
    assert names("track:Hysteria year:2003") == ["Hysteria"]
    assert names("track:Hysteria year:1990-1999") == []
    assert names("get lucky")[0] == "Get Lucky (feat. Pharrell Williams & Nile Rodgers)"
    assert names("artist:Pharrell") == ["Get Lucky (feat. Pharrell Williams & Nile Rodgers)"]
    assert names("Björk", "artist") == ["Björk"]
    assert "Absolution" in names("absolution", "album")


def test_genre_and_year_filters_match_every_track() -> None:
    """genre: and year: alone give every matching track (as counted by building them all),
    most popular first; a deluxe reissue counts in its own release year."""
    with Emulator(catalog_size=3000, seed=4, rate_limits=False) as emu, httpx.Client() as c:
        cat = emu.catalog
        on_spotify = [i for i in range(cat.size) if cat.on_spotify(i)]
        reissues = [i for i in on_spotify if "(Deluxe Edition)" in cat.track(i).album.name]
        year = cat.track(reissues[0]).album.year
        assert cat.album(cat.album_index_of(reissues[0])).year != year  # the base album's
        genre = cat.artist(cat.track(5).artists[0]).genres[0]
        genre_words = set(tokens(genre))
        cases = {
            f"year:{year}": [i for i in on_spotify if cat.track(i).album.year == year],
            f"year:{year - 4}-{year}": [
                i for i in on_spotify if year - 4 <= cat.track(i).album.year <= year
            ],
            f'genre:"{genre}"': [
                i
                for i in on_spotify
                if genre_words
                <= {t for g in cat.artist(cat.track(i).artists[0]).genres for t in tokens(g)}
            ],
        }
        for q, expected in cases.items():
            body = c.get(
                f"{emu.urls.spotify}/search",
                params={"q": q, "type": "track", "limit": 10},
                headers=bearer(emu),
            ).json()["tracks"]
            assert body["total"] == len(expected), q
            best = sorted(expected, key=lambda i: (-cat.track(i).popularity, i))[:10]
            assert [t["id"] for t in body["items"]] == [cat.track(i).spotify_id for i in best]


def test_exact_titles_rank_first(emulator: Emulator) -> None:
    """A title equal to the query outranks titles that merely contain its words."""
    body = httpx.get(
        f"{emulator.urls.spotify}/search",
        params={"q": "track:golden", "type": "track", "limit": 10},
        headers=bearer(emulator),
    ).json()
    names = [t["name"].split(" (feat.")[0] for t in body["tracks"]["items"]]
    exact = [n == "Golden" for n in names]
    assert exact[0]
    assert exact == sorted(exact, reverse=True)


def test_lookups_and_batch_switch(emulator: Emulator) -> None:
    """Track and artist lookups; the batch endpoint is 403 until switched on, then max 50."""
    headers, base = bearer(emulator), emulator.urls.spotify
    assert httpx.get(f"{base}/tracks/xyz", headers=headers).json()["error"] == {
        "status": 400,
        "message": "invalid id",
    }
    missing = httpx.get(f"{base}/tracks/3n3Ppam7vgaVa1iaRUc9Lq", headers=headers)
    assert missing.status_code == 404
    assert (
        httpx.get(f"{base}/artists/0C0XlULifJtAgn6ZNCW2eu", headers=headers).json()["name"]
        == "The Killers"
    )
    assert (
        httpx.get(
            f"{base}/tracks", params={"ids": "3n3Ppam7vgaVa1iaRUc9Lp"}, headers=headers
        ).status_code
        == 403
    )
    emulator.configure(spotify_batch_tracks=True)
    got = httpx.get(
        f"{base}/tracks",
        params={"ids": "3n3Ppam7vgaVa1iaRUc9Lp,3n3Ppam7vgaVa1iaRUc9Lq"},
        headers=headers,
    )
    assert [t and t["name"] for t in got.json()["tracks"]] == ["Mr. Brightside", None]
    too_many = ",".join(["3n3Ppam7vgaVa1iaRUc9Lp"] * 51)
    assert httpx.get(f"{base}/tracks", params={"ids": too_many}, headers=headers).status_code == 400
    assert httpx.get(f"{base}/nothing/here", headers=headers).status_code == 404


def test_shared_isrc_and_single_provider_tracks(emulator: Emulator) -> None:
    """Some ISRCs belong to two Spotify tracks; some tracks are missing from Spotify."""
    cat = emulator.catalog
    shared = next(
        i
        for i in range(cat.n_real, cat.size)
        if len(cat.tracks_by_isrc(cat.track(i).isrc)) == 2
        and all(cat.on_spotify(j) for j in cat.tracks_by_isrc(cat.track(i).isrc))
    )
    isrc = cat.track(shared).isrc
    body = httpx.get(
        f"{emulator.urls.spotify}/search",
        params={"q": f"isrc:{isrc}", "type": "track"},
        headers=bearer(emulator),
    ).json()
    assert len(body["tracks"]["items"]) == 2
    assert {t["external_ids"]["isrc"] for t in body["tracks"]["items"]} == {isrc}
    absent = next(i for i in range(cat.n_real, cat.size) if not cat.on_spotify(i))
    absent_track = cat.track(absent)
    assert absent_track.spotify_id is None
    assert absent_track.mbid is not None or absent_track.on_lastfm
