"""Identifiers that carry their catalogue index, so no lookup table is needed.

A Spotify id (22 base62 chars) or a MusicBrainz MBID (a UUID v4) is a 128-bit number whose
high 88 bits are a keyed hash of the catalogue index and whose low 40 bits are the index
masked by a seed-derived key and by a hash of the high bits. Decoding recovers the index,
and re-encoding it must give the same id: anything else (a typo, an id of another kind,
another seed) is unknown. An ISRC embeds the
index through an affine permutation of its registrant code and designation. A million
tracks therefore cost no memory for their ids.
"""

from __future__ import annotations

import re
import uuid

__all__ = ["BASE62_ID", "ISRC_RE", "Codec", "mix64"]

_M64 = (1 << 64) - 1
_LOW40 = (1 << 40) - 1
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_INDEX = {ch: n for n, ch in enumerate(_B62)}
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ISRC_SPACE = 36**3 * 100_000  # registrant code x designation
_ISRC_MULT = 2_654_435_761  # prime, coprime with the space (no factor 2, 3 or 5)
BASE62_ID = re.compile(r"^[0-9A-Za-z]{22}$")
ISRC_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")


def mix64(x: int) -> int:
    """splitmix64 finaliser: a fast, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class Codec:
    """Encodes and decodes every id kind for one seed."""

    def __init__(self, seed: int) -> None:
        self._key = mix64(seed & _M64 ^ 0x5EED)
        self._isrc_offset = mix64(self._key ^ 0x1512C) % _ISRC_SPACE
        self._isrc_inverse = pow(_ISRC_MULT, -1, _ISRC_SPACE)
        self._domain_keys: dict[int, int] = {}

    def hash(self, domain: int, index: int) -> int:
        """A 64-bit hash of (seed, domain, index)."""
        dkey = self._domain_keys.get(domain)
        if dkey is None:
            dkey = self._domain_keys[domain] = mix64(self._key ^ domain)
        return mix64(dkey ^ index)

    def _wide(self, domain: int, index: int, *, uuid4: bool = False) -> int:
        tag = (self.hash(domain, index) << 24) | (self.hash(domain + 1000, index) & 0xFFFFFF)
        if uuid4:  # version and variant bits live in the tag part (bits 62-63 and 76-79)
            tag = (tag & ~(0xF << 36)) | (4 << 36)
            tag = (tag & ~(0x3 << 22)) | (0x2 << 22)
        # The index bits are masked by a hash of the tag, so neighbours do not look alike.
        return (tag << 40) | ((index ^ self._key ^ mix64(tag)) & _LOW40)

    def _index_of(self, value: int) -> int:
        return (value ^ self._key ^ mix64(value >> 40)) & _LOW40

    # Spotify ---------------------------------------------------------------------------
    def spotify_id(self, domain: int, index: int) -> str:
        value = self._wide(domain, index)
        chars = []
        for _ in range(22):
            value, digit = divmod(value, 62)
            chars.append(_B62[digit])
        return "".join(reversed(chars))

    def spotify_index(self, domain: int, sid: str) -> int | None:
        """The index encoded in ``sid``, or None when it is not one of ours for ``domain``."""
        if not BASE62_ID.match(sid):
            return None
        value = 0
        for ch in sid:
            value = value * 62 + _B62_INDEX[ch]
        index = self._index_of(value)
        return index if self.spotify_id(domain, index) == sid else None

    # MusicBrainz -----------------------------------------------------------------------
    def mbid(self, domain: int, index: int) -> str:
        return str(uuid.UUID(int=self._wide(domain, index, uuid4=True)))

    def mbid_index(self, domain: int, mbid: str) -> int | None:
        try:
            value = uuid.UUID(mbid).int
        except ValueError:
            return None
        index = self._index_of(value)
        return index if self.mbid(domain, index) == mbid.lower() else None

    # ISRC --------------------------------------------------------------------------------
    def isrc(self, index: int, country: str, year: int) -> str:
        q = (_ISRC_MULT * index + self._isrc_offset) % _ISRC_SPACE
        reg, designation = divmod(q, 100_000)
        r2, r1 = divmod(reg, 36)
        r3, r2 = divmod(r2, 36)
        registrant = _B36[r3 % 36] + _B36[r2] + _B36[r1]
        return f"{country}{registrant}{year % 100:02d}{designation:05d}"

    def isrc_index(self, isrc: str) -> int:
        """The index an ISRC of ours would encode (the caller re-encodes to confirm)."""
        reg = 0
        for ch in isrc[2:5]:
            reg = reg * 36 + _B36.index(ch)
        q = reg * 100_000 + int(isrc[7:12])
        return ((q - self._isrc_offset) * self._isrc_inverse) % _ISRC_SPACE
