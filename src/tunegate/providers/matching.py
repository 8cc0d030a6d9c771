"""Normalisation and similarity for picking the right track out of a search's hits.

The rule (also in ``docs/providers.md``):

1. Both sides are normalised (:func:`normalize`): Unicode NFKD with accents dropped,
   case-folded, ``&`` read as ``and``, featured-artist credits removed (``feat.``, ``ft.``,
   ``featuring``, and ``(with X)`` in brackets), a leading ``The`` dropped, punctuation
   turned into spaces.
2. Two strings score :func:`similarity`: the best of difflib's ratio on the strings and on
   their sorted words (so word order does not matter), from 0 to 1.
3. A title scores the better of its full form and its *core* (bracketed parts and a
   ``" - Remastered 2011"`` style suffix removed on both sides), the core scoring
   :data:`VERSION_PENALTY` less, so the plain recording beats its radio edit when the
   query names neither, and the radio edit wins when the query names it.
4. An artist scores the best match of the query's artist against each credited artist and
   against all credited artists joined together.
5. A candidate qualifies when its title scores at least :data:`MIN_TITLE` and its artist at
   least :data:`MIN_ARTIST`; among those the highest ``0.6 * title + 0.4 * artist`` wins,
   and ties go to the provider's order (its own relevance ranking). No qualifier: None.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import TypeVar

__all__ = [
    "MIN_ARTIST",
    "MIN_TITLE",
    "VERSION_PENALTY",
    "MatchScore",
    "artist_similarity",
    "best_match",
    "core_title",
    "normalize",
    "score",
    "similarity",
    "title_similarity",
]

T = TypeVar("T")

MIN_TITLE = 0.75
MIN_ARTIST = 0.8
VERSION_PENALTY = 0.05
TITLE_WEIGHT = 0.6

# Letters NFKD leaves whole; folded by hand because unicodedata has no transliteration.
_FOLD = str.maketrans(
    {"ø": "o", "đ": "d", "ł": "l", "æ": "ae", "œ": "oe", "ı": "i", "þ": "th", "ð": "d"}
)
_BRACKETED_FEAT = re.compile(r"[(\[]\s*(?:feat\.?|ft\.?|featuring|with)\s[^)\]]*[)\]]")
_TRAILING_FEAT = re.compile(r"\s(?:feat\.|ft\.|featuring)\s.*$")
_LEADING_THE = re.compile(r"^the\s+")
_NON_WORD = re.compile(r"[^\w]+|_")
_BRACKETS = re.compile(r"[(\[][^)\]]*[)\]]")
_DASH_SUFFIX = re.compile(r"\s[-–—]\s.*$")


def _fold(value: str) -> str:
    if value.isascii():  # NFKD, the accents and _FOLD leave ASCII as it is; casefold is lower
        return value.lower()
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold().translate(_FOLD)


def _tidy(value: str) -> str:
    value = _NON_WORD.sub(" ", value.replace("&", " and ")).strip()
    return _LEADING_THE.sub("", value) if value.startswith("the") else value


def normalize(value: str) -> str:
    """The comparable form of an artist or a title.

    >>> normalize("The Beatles")
    'beatles'
    >>> normalize("Beyoncé feat. JAY-Z")
    'beyonce'
    >>> normalize("Crazy in Love (feat. Jay-Z)")
    'crazy in love'
    """
    return _normalized(_fold(value))


# normalize() is pure and a search's candidates repeat the query's strings (and artists
# recur across searches): remembered by folded string, a bounded memo started over when
# full, as the pipeline's key memo is. Each regex below runs only when the text holds what
# it needs to match (a bracket, "feat"/"ft.", a dash): the same result, fewer scans.
_MEMO_SIZE = 4096
_normal: dict[str, str] = {}
_cores: dict[str, str] = {}


def _without_feat(folded: str) -> str:
    if "(" in folded or "[" in folded:
        folded = _BRACKETED_FEAT.sub(" ", folded)
    if "feat" in folded or "ft." in folded:
        folded = _TRAILING_FEAT.sub("", folded)
    return folded


def _normalized(folded: str) -> str:
    """:func:`normalize` of a string :func:`_fold` gave."""
    found = _normal.get(folded)
    if found is None:
        # A name made only of punctuation ("!!!") keeps its folded form, not vanishing.
        found = _tidy(_without_feat(folded)) or folded.strip()
        if len(_normal) >= _MEMO_SIZE:
            _normal.clear()
        _normal[folded] = found
    return found


def core_title(value: str) -> str:
    """The normalised title without version information: bracketed parts and a dashed
    suffix removed (``"Strobe - Radio Edit"`` -> ``"strobe"``)."""
    return _core(_fold(value))


def _core(folded: str) -> str:
    """:func:`core_title` of a string :func:`_fold` gave."""
    found = _cores.get(folded)
    if found is None:
        core = folded
        if "(" in core or "[" in core:
            core = _BRACKETS.sub(" ", _BRACKETED_FEAT.sub(" ", core))
        if "-" in core or "–" in core or "—" in core:
            core = _DASH_SUFFIX.sub("", core)
        if "feat" in core or "ft." in core:
            core = _TRAILING_FEAT.sub("", core)
        found = _tidy(core) or _normalized(folded)
        if len(_cores) >= _MEMO_SIZE:
            _cores.clear()
        _cores[folded] = found
    return found


def _ratio(a: str, b: str) -> float:
    # autojunk would treat frequent characters of long strings as noise.
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def similarity(a: str, b: str) -> float:
    """How alike two *normalised* strings are, 0 to 1: the better of difflib's ratio on
    the strings and on their sorted words."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    words_a, words_b = sorted(a.split()), sorted(b.split())
    if words_a == words_b:
        return 1.0
    direct = _ratio(a, b)
    sorted_a, sorted_b = " ".join(words_a), " ".join(words_b)
    if sorted_a == a and sorted_b == b:  # already in word order: the same ratio again
        return direct
    return max(direct, _ratio(sorted_a, sorted_b))


def title_similarity(query: str, candidate: str) -> float:
    """Rule 3: the full titles, or their cores at a small penalty."""
    return _Query("", query).title(candidate)


def artist_similarity(query: str, credited: Sequence[str]) -> float:
    """Rule 4: the query's artist against each credited artist and all of them joined."""
    return _Query(query, "").artist(credited)


class _Query:
    """One query's artist and title, folded and normalised once however many candidates
    they are scored against (what :func:`best_match` does for a search's hits)."""

    __slots__ = ("_artist", "_core", "_folded", "_title", "_wanted")

    def __init__(self, artist: str, title: str) -> None:
        self._artist = artist
        self._wanted: str | None = None  # normalize(artist), on first use
        self._folded = _fold(title)
        self._title = _normalized(self._folded)
        self._core: str | None = None  # core_title(title), when a full title is not equal

    def title(self, candidate: str) -> float:
        """:func:`title_similarity` of the query's title and ``candidate``."""
        folded = _fold(candidate)
        full = similarity(self._title, _normalized(folded))
        if full == 1.0:
            return full
        core = self._core
        if core is None:
            core = self._core = _core(self._folded)
        cores = similarity(core, _core(folded)) - VERSION_PENALTY
        return max(full, cores, 0.0)

    def artist(self, credited: Sequence[str]) -> float:
        """:func:`artist_similarity` of the query's artist and ``credited``."""
        wanted = self._wanted
        if wanted is None:
            wanted = self._wanted = normalize(self._artist)
        names = [normalize(name) for name in credited if name]
        if not names:
            return 0.0
        if wanted in names:  # the most any candidate can score: no ratio to compute
            return 1.0
        candidates = [*names, " ".join(names)] if len(names) > 1 else names
        return max(similarity(wanted, name) for name in candidates)


@dataclass(frozen=True, slots=True)
class MatchScore:
    """How well one candidate matches the query."""

    title: float
    artist: float

    @property
    def total(self) -> float:
        return TITLE_WEIGHT * self.title + (1.0 - TITLE_WEIGHT) * self.artist

    @property
    def qualifies(self) -> bool:
        return self.title >= MIN_TITLE and self.artist >= MIN_ARTIST


def score(artist: str, title: str, cand_title: str, cand_artists: Sequence[str]) -> MatchScore:
    """Score one candidate (its title and credited artist names) against the query."""
    return MatchScore(
        title=title_similarity(title, cand_title),
        artist=artist_similarity(artist, cand_artists),
    )


def best_match(
    items: Iterable[T],
    artist: str,
    title: str,
    title_of: Callable[[T], str],
    artists_of: Callable[[T], Sequence[str]],
) -> T | None:
    """Rule 5: the best qualifying item, ties to the earliest; None when none qualifies."""
    query = _Query(artist, title)
    best: T | None = None
    best_total = -1.0
    for item in items:
        cand_title, credited = title_of(item), artists_of(item)
        title_score = query.title(cand_title)
        if title_score < MIN_TITLE:
            continue  # cannot qualify whatever its artist scores
        artist_score = query.artist(credited)
        if artist_score >= MIN_ARTIST:  # MatchScore's rule, without building one
            total = TITLE_WEIGHT * title_score + (1.0 - TITLE_WEIGHT) * artist_score
            if total > best_total:
                best, best_total = item, total
    return best
