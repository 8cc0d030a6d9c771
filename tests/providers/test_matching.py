"""Ranking: normalisation, similarity, and the right hit chosen among decoys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunegate.providers import matching, musicbrainz, spotify
from tunegate.providers.types import MusicBrainzRecording, SpotifyTrack


def track(name: str, *artists: str, tid: str = "") -> SpotifyTrack:
    """A minimal search hit."""
    return {
        "id": tid or (name + "|" + "+".join(artists)),
        "name": name,
        "artists": [{"id": a.lower(), "name": a} for a in artists],
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Beatles", "beatles"),
        ("Beyoncé", "beyonce"),
        ("Sigur Rós", "sigur ros"),
        ("Motörhead", "motorhead"),
        ("Mø", "mo"),
        ("Simon & Garfunkel", "simon and garfunkel"),
        ("AC/DC", "ac dc"),
        ("Crazy in Love (feat. Jay-Z)", "crazy in love"),
        ("Crazy in Love [ft. Jay-Z]", "crazy in love"),
        ("Stay (with Justin Bieber)", "stay"),
        ("Calvin Harris feat. Rihanna", "calvin harris"),
        ("Calvin Harris Ft. Rihanna", "calvin harris"),
        ("Dancing with Myself", "dancing with myself"),
        ("Left Foot", "left foot"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
        ("!!!", "!!!"),
        ("  Hells   Bells ", "hells bells"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    """Accents, case, feat. credits, a leading The and punctuation are all ironed out."""
    assert matching.normalize(raw) == expected


def test_core_title_drops_version_information() -> None:
    """Bracketed parts and a dashed suffix are version information, not the title."""
    assert matching.core_title("Strobe - Radio Edit") == "strobe"
    assert matching.core_title("Hysteria (Live at Wembley)") == "hysteria"
    assert matching.core_title("Let It Be - Remastered 2009") == "let it be"


@given(st.text(max_size=60), st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_similarity_bounds(a: str, b: str) -> None:
    """Similarity is within [0, 1] and 1 for identical strings."""
    na, nb = matching.normalize(a), matching.normalize(b)
    assert 0.0 <= matching.similarity(na, nb) <= 1.0
    assert matching.similarity(na, na) == 1.0


def test_word_order_does_not_matter() -> None:
    """Sorted-word comparison catches swapped words."""
    assert matching.similarity("garfunkel simon", "simon garfunkel") == 1.0


DECOYS = [
    track("Strobes", "deadmau5"),
    track("Strobe", "Tritonal"),
    track("Strobe - Radio Edit", "deadmau5"),
    track("Strobe", "deadmau5", tid="the-one"),
    track("Ghosts 'n' Stuff", "deadmau5"),
]


def test_exact_hit_beats_decoys_wherever_it_sits() -> None:
    """The exact title by the right artist wins whatever the provider's order."""
    for rotation in range(len(DECOYS)):
        hits = DECOYS[rotation:] + DECOYS[:rotation]
        best = spotify.best_match(hits, "Deadmau5", "Strobe")
        assert best is not None
        assert best["id"] == "the-one"


def test_version_beats_a_different_song() -> None:
    """Without the plain recording, its radio edit beats a similarly spelt other song."""
    hits = [track("Strobes", "deadmau5"), track("Strobe - Radio Edit", "deadmau5", tid="edit")]
    best = spotify.best_match(hits, "deadmau5", "Strobe")
    assert best is not None
    assert best["id"] == "edit"


def test_query_naming_the_version_gets_it() -> None:
    """Asking for the radio edit returns the radio edit, not the album version."""
    hits = [
        track("Strobe", "deadmau5", tid="album"),
        track("Strobe - Radio Edit", "deadmau5", tid="edit"),
    ]
    best = spotify.best_match(hits, "deadmau5", "Strobe - Radio Edit")
    assert best is not None
    assert best["id"] == "edit"


@pytest.mark.parametrize(
    ("artist", "title", "hits", "expected"),
    [
        # accents on either side
        ("Beyonce", "Halo", [track("Halo", "Beyoncé", tid="ok"), track("Halo", "Bey")], "ok"),
        ("Sigur Rós", "Hoppipolla", [track("Hoppipolla", "Sigur Ros", tid="ok")], "ok"),
        # feat. in the query artist, the track title or the credits
        (
            "Beyoncé feat. Jay-Z",
            "Crazy in Love",
            [
                track("Crazy In Love (feat. Jay-Z)", "Beyoncé", "JAY-Z", tid="ok"),
                track("Crazy", "Gnarls Barkley"),
            ],
            "ok",
        ),
        (
            "Calvin Harris",
            "This Is What You Came For",
            [track("This Is What You Came For", "Calvin Harris", "Rihanna", tid="ok")],
            "ok",
        ),
        # spelling variants
        ("Deadmaus", "Strobe", [track("Strobe", "deadmau5", tid="ok")], "ok"),
        ("The Killers", "Mr Brightside", [track("Mr. Brightside", "The Killers", tid="ok")], "ok"),
        ("Killers", "Mr. Brightside", [track("Mr. Brightside", "The Killers", tid="ok")], "ok"),
        (
            "AC/DC",
            "Hells Bells",
            [track("Hell's Bells", "Cary Ann Hearst"), track("Hells Bells", "AC/DC", tid="ok")],
            "ok",
        ),
        (
            "Simon and Garfunkel",
            "The Boxer",
            [track("The Boxer", "Simon & Garfunkel", tid="ok")],
            "ok",
        ),
    ],
)
def test_ranking_among_decoys(
    artist: str, title: str, hits: list[SpotifyTrack], expected: str
) -> None:
    """Spelling variants, accents and feat. credits still find the right hit."""
    best = spotify.best_match(hits, artist, title)
    assert best is not None
    assert best["id"] == expected


@pytest.mark.parametrize(
    ("artist", "title", "hits"),
    [
        (
            "Deadmau5",
            "Strobe",
            [track("Strobe", "Tritonal"), track("Ghosts 'n' Stuff", "deadmau5")],
        ),
        ("Cher", "Believe", [track("Believer", "Imagine Dragons"), track("Relieve", "Chet")]),
        ("Muse", "Hysteria", []),
    ],
)
def test_no_close_hit_gives_none(artist: str, title: str, hits: list[SpotifyTrack]) -> None:
    """Below the thresholds there is no answer rather than a wrong one."""
    assert spotify.best_match(hits, artist, title) is None


def test_ties_keep_provider_order() -> None:
    """Two equally good hits: the provider's first one wins."""
    hits = [track("Halo", "Beyoncé", tid="first"), track("Halo", "Beyoncé", tid="second")]
    best = spotify.best_match(hits, "Beyoncé", "Halo")
    assert best is not None
    assert best["id"] == "first"


def test_musicbrainz_ranking_uses_the_artist_credit() -> None:
    """MusicBrainz hits are ranked on title and the credited artists, not on position."""
    recs: list[MusicBrainzRecording] = [
        {
            "id": "cover",
            "title": "Thinking Out Loud",
            "score": 100,
            "artist-credit": [{"name": "Boyce Avenue", "joinphrase": ""}],
        },
        {
            "id": "orig",
            "title": "Thinking Out Loud",
            "score": 98,
            "artist-credit": [
                {"name": "Ed Sheeran", "joinphrase": " feat. "},
                {"name": "Someone", "joinphrase": ""},
            ],
        },
    ]
    best = musicbrainz.best_recording(recs, "Ed Sheeran", "Thinking Out Loud")
    assert best is not None
    assert best["id"] == "orig"
    assert musicbrainz.credited_artist(recs[1]) == "Ed Sheeran feat. Someone"


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20)), max_size=6
    ),
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
)
@settings(max_examples=100, deadline=None)
def test_best_match_returns_a_qualifying_hit_or_none(
    pairs: list[tuple[str, str]], artist: str, title: str
) -> None:
    """Whatever the hits, the answer is one of them that passes both thresholds, or None."""
    hits = [track(name, who, tid=str(i)) for i, (name, who) in enumerate(pairs)]
    best = spotify.best_match(hits, artist, title)
    if best is not None:
        assert best in hits
        result = matching.score(artist, title, best["name"], [a["name"] for a in best["artists"]])
        assert result.qualifies
