"""Candidate sets from the catalogue's search index: the matching all three providers share.

A set holds the tracks (or artists, or albums) whose field contains a folded token, whose
artist has a genre, or whose album is from a year; a query intersects (all words must match)
or unions (any may) them. Ranking stays with each provider, whose services order results
differently, but uses the index's ranking keys so that ordering a large set costs no Python
call per candidate.

Budget: ranking and filtering read the index's integer arrays, never build a track; the
only per-candidate Python work left is a few small loops over candidate sets (bounded by
the catalogue's postings) and MusicBrainz's unindexed fields (bounded there).
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable

from tunegate.emulator.catalog import Catalog

__all__ = [
    "albums_in_years",
    "artists_with_genre",
    "intersect",
    "top_ranked",
    "track_set",
    "tracks_in_years",
    "tracks_with_genre",
]


def track_set(cat: Catalog, field: str, token: str) -> set[int]:
    """Tracks whose ``field`` ("title", "artist", "album" or "any") contains ``token``."""
    idx = cat.index()
    if field == "title":
        return set(idx.title.get(token, ()))
    if field == "artist":
        out: set[int] = set()
        for a in idx.artist.get(token, ()):
            out.update(cat.tracks_of_artist(a))
        return out
    if field == "album":
        out = set()
        for al in idx.album.get(token, ()):
            out.update(cat.tracks_of_album(al))
        return out
    return (
        track_set(cat, "title", token)
        | track_set(cat, "artist", token)
        | track_set(cat, "album", token)
    )


def intersect(sets: Iterable[set[int]]) -> set[int] | None:
    """The intersection, or None when there was nothing to intersect (no constraint)."""
    result: set[int] | None = None
    for s in sorted(sets, key=len):
        result = set(s) if result is None else result & s
        if not result:
            return result
    return result


def top_ranked(items: Iterable[int], n: int, keys: array[int]) -> list[int]:
    """The ``n`` items with the lowest ranking key (see the catalogue's index), best first."""
    if n <= 0:
        return []
    return heapq.nsmallest(n, items, key=keys.__getitem__)


def artists_with_genre(cat: Catalog, words: list[str]) -> set[int]:
    """Artists whose Spotify genres, together, hold every word."""
    genre = cat.index().genre
    return intersect(set(genre.get(w, ())) for w in words) or set()


def tracks_with_genre(cat: Catalog, words: list[str]) -> set[int]:
    """Tracks whose first artist has the genre words (Spotify's ``genre:`` on tracks)."""
    out: set[int] = set()
    for a in artists_with_genre(cat, words):
        out.update(cat.tracks_led_by(a))
    return out


def albums_in_years(cat: Catalog, low: int, high: int) -> set[int]:
    out: set[int] = set()
    for year, albums in cat.index().album_years.items():
        if low <= year <= high:
            out.update(albums)
    return out


def tracks_in_years(cat: Catalog, low: int, high: int) -> set[int]:
    """Tracks whose album (a deluxe reissue's, for a reissued track) is from these years."""
    idx = cat.index()
    out: set[int] = set()
    for al in albums_in_years(cat, low, high):
        out.update(cat.tracks_of_album(al))
    out -= idx.reissued
    for year, tracks in idx.reissue_years.items():
        if low <= year <= high:
            out.update(tracks)
    return out
