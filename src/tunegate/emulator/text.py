"""Text folding shared by the three providers' matchers: case, accents, punctuation."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = ["ascii_int", "fold", "strip_feat", "tokens"]

_NON_WORD = re.compile(r"[^0-9a-z]+")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_APOSTROPHES = re.compile(r"['’`´]")
# A guest credit at the end: "feat"/"ft" a word of its own (``\b``: "Soft Beautiful" keeps
# its "ft"), in brackets or with its dot ("Heroic Feat of Strength" is no credit); or
# "featuring". No leading ``\s*`` and the bracket's spaces in one optional group: the
# pattern runs on request input, and spaces matched two ways made a long run of them cubic.
_FEAT = re.compile(
    r"(?:[\(\[]\s*\b(?:feat|ft)\b\.?|(?:[\(\[]\s*)?\bfeaturing\b|\b(?:feat|ft)\.)"
    r"\s+[^\)\]]*[\)\]]?\s*$",
    re.IGNORECASE,
)
# Letters NFKD does not decompose into base + accent.
_SPECIAL = str.maketrans({"ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "ß": "ss", "æ": "ae", "đ": "d"})


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower-case, accent-free, punctuation-free form: ``"Déjà Vu!"`` -> ``"deja vu"``."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    bare = _APOSTROPHES.sub("", bare).replace("&", " and ")
    return _NON_WORD.sub(" ", bare).strip()


def tokens(text: str) -> list[str]:
    """The folded words of ``text``."""
    folded = fold(text)
    return folded.split() if folded else []


def strip_feat(title: str) -> str:
    """``"Song (feat. X)"`` -> ``"Song"``: the form MusicBrainz and most matchers use."""
    return _FEAT.sub("", title).strip() or title


def ascii_int(value: str) -> int | None:
    """``value`` as an int when it is ASCII digits only, else None. Not ``str.isdigit()``,
    which accepts "²" that ``int()`` refuses, nor bare ``int()``, which accepts "٣", "+3" and
    "3_0" that the real services refuse."""
    return int(value) if _ASCII_DIGITS.fullmatch(value) else None
