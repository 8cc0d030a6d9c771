"""Candidate sets from the catalogue's token index: the matching all three providers share.

A set holds the tracks (or artists, or albums) whose field contains a folded token; a query
intersects (all words must match) or unions (any may) them. Ranking stays with each
provider, whose services order results differently.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from tunegate.emulator.catalog import Catalog

__all__ = ["intersect", "top", "track_set"]

# Tracks per set above which rankers skip per-track work (a million-track catalogue).
CHEAP_RANKING_ABOVE = 20_000


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


def top(items: Iterable[int], n: int, key: Callable[[int], Any]) -> list[int]:
    """The ``n`` best items by ``key`` (ascending), without sorting everything."""
    return heapq.nsmallest(n, items, key=key)
