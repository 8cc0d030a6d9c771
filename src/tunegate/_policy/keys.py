"""Cache keys, sans-IO: normalisation, escaping, bounding, namespacing and versioning.

A key reads like the design's scheme with two segments in front::

    {namespace}:v{KEY_FORMAT_VERSION}:{provider}:{type}:{part}:{part}...
    tunegate:v1:acme:search:deadmau5:strobe

Rules (docs/caching.md repeats them for users):

- The kind is exactly two segments, ``provider:type``, each ``[a-z][a-z0-9_]{0,31}``; so the
  kind always ends at the fourth colon and no kind can pose as another kind plus a part.
- Each part is normalised: Unicode NFC, case-folded (then NFC again, since folding can
  un-compose), white space stripped and every run of white space collapsed to one space.
  Kinds whose parts are identifiers with meaningful case (base62 ids) skip the case
  folding: the scheme's ``case_sensitive_kinds``, which the providers' tables supply.
- Each part is then escaped: ``%``, ``:``, ``#``, the glob characters ``* ? [ ] \\``, control
  characters and lone surrogates become ``%XX`` (UTF-8 bytes, upper-case hex). No escaped
  part contains ``:``, so distinct part tuples give distinct keys; no escaped part contains a
  glob character, so user data cannot widen a pattern.
- A part longer than :data:`MAX_PART_BYTES` (UTF-8) becomes ``#`` + 32 hex digits of its
  BLAKE2b-128 digest; a parts section longer than :data:`MAX_SECTION_BYTES` becomes ``##`` +
  32 hex digits. Escaped parts never contain ``#``, so hashed and plain forms cannot meet.
  With the namespace (at most 64 characters) and the kind, no key exceeds 520 bytes.

Bump :data:`KEY_FORMAT_VERSION` whenever the key scheme or the stored value format changes:
old entries then simply stop being found and age out.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from tunegate.exceptions import ConfigurationError, InvalidInput

__all__ = [
    "KEY_FORMAT_VERSION",
    "MAX_PART_BYTES",
    "MAX_SECTION_BYTES",
    "KeyScheme",
    "compile_glob",
    "normalize_part",
    "split_key",
    "validate_kind",
]

#: Version of the key scheme and of the value envelope; part of every key.
KEY_FORMAT_VERSION = 1
MAX_PART_BYTES = 128
MAX_SECTION_BYTES = 384

_KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}:[a-z][a-z0-9_]{0,31}\Z")
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
# Characters that would break the ':' structure, the '#' hash marker, a Redis glob, or
# printing; surrogates because they cannot be encoded to UTF-8 at all.
_ESCAPE_RE = re.compile("[%:#*?\\[\\]\\\\\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_escape_sub = _ESCAPE_RE.sub


def validate_kind(kind: str) -> str:
    """Return ``kind`` if it is ``provider:type`` (lower-case identifiers), else raise."""
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise InvalidInput(
            "kind", f"must look like 'provider:type' ([a-z0-9_], 32 each), got {kind!r}"
        )
    return kind


def normalize_part(part: str | int, *, fold_case: bool = True) -> str:
    """NFC, case-folded (unless ``fold_case`` is false), white space collapsed and stripped."""
    text = part if type(part) is str else str(part)
    if text.isascii():  # fast path: NFC is the identity and casefold is lower() on ASCII
        if fold_case:
            text = text.lower()
    else:
        text = unicodedata.normalize("NFC", text)
        if fold_case:
            text = unicodedata.normalize("NFC", text.casefold())
    return " ".join(text.split())


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode("utf-8", "surrogatepass"))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


# Encoded parts by (part, fold_case): an artist or a title recurs across calls and kinds,
# and its normalisation (NFC, casefold, escape) is most of a key's cost. Bounded: emptied
# when full, so a stream of distinct parts costs one dict store each and no more memory.
_ENCODED: dict[tuple[str, bool], str] = {}
_ENCODED_MAX = 4096


def _encode_part(part: str | int, fold_case: bool) -> str:
    """Normalised, escaped and bounded: one part as it appears in a key."""
    memo = (part, fold_case) if isinstance(part, str) and len(part) <= MAX_PART_BYTES else None
    if memo is not None:  # (no huge strings kept)
        known = _ENCODED.get(memo)
        if known is not None:
            return known
    escaped = _escape_sub(_percent, normalize_part(part, fold_case=fold_case))
    # Escaped text is at most 4 UTF-8 bytes per character; skip the encode when short.
    if len(escaped) * 4 > MAX_PART_BYTES and len(escaped.encode("utf-8")) > MAX_PART_BYTES:
        escaped = "#" + _digest(escaped)
    if memo is not None:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[memo] = escaped
    return escaped


class KeyScheme:
    """Builds keys and patterns for one namespace; immutable and cheap to share."""

    __slots__ = ("_valid_kinds", "case_sensitive_kinds", "namespace", "prefix")

    def __init__(
        self,
        namespace: str = "tunegate",
        *,
        case_sensitive_kinds: Iterable[str] = (),
    ) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE_RE.match(namespace):
            raise ConfigurationError(
                f"cache namespace must be 1-64 characters of [A-Za-z0-9_.-], got {namespace!r}"
            )
        self.namespace = namespace
        #: What every key of this scheme starts with, e.g. ``"tunegate:v1:"``.
        self.prefix = f"{namespace}:v{KEY_FORMAT_VERSION}:"
        self.case_sensitive_kinds = frozenset(validate_kind(k) for k in case_sensitive_kinds)
        self._valid_kinds: set[str] = set(self.case_sensitive_kinds)

    def _check_kind(self, kind: str) -> None:
        # Kinds are a handful of constants: remember the valid ones rather than re-match.
        if kind not in self._valid_kinds:
            validate_kind(kind)
            if len(self._valid_kinds) < 1024:
                self._valid_kinds.add(kind)

    def _section(self, kind: str, parts: tuple[str | int, ...]) -> str:
        fold = kind not in self.case_sensitive_kinds
        return ":".join([_encode_part(p, fold) for p in parts])

    def key(self, kind: str, *parts: str | int) -> str:
        """The full key for ``kind`` and ``parts`` (see the module docstring for the rules)."""
        self._check_kind(kind)
        if not parts:
            return self.prefix + kind
        section = self._section(kind, parts)
        if len(section) * 4 > MAX_SECTION_BYTES and len(section.encode()) > MAX_SECTION_BYTES:
            section = "##" + _digest(section)
        return f"{self.prefix}{kind}:{section}"

    def pattern(self, kind: str, *parts: str | int) -> str:
        """An unprefixed glob for keys of ``kind`` whose leading parts are ``parts`` and that
        have at least one part more: ``pattern("acme:search", "Deadmau5")`` ->
        ``"acme:search:deadmau5:*"``. The parts are escaped, so they match literally.
        Keys whose whole parts section was hashed (too long) are not reached this way."""
        self._check_kind(kind)
        if not parts:
            return kind + ":*"
        return f"{kind}:{self._section(kind, parts)}:*"

    def full_pattern(self, pattern: str) -> str:
        """The user's unprefixed pattern (``"acme:*"``) with namespace and version added."""
        return self.prefix + pattern

    def split(self, key: str) -> tuple[str, str] | None:
        """``(provider, kind)`` of a key of this scheme, or None if the key is not one."""
        return split_key(key, self.prefix)


def split_key(key: str, prefix: str = "") -> tuple[str, str] | None:
    """``(provider, kind)`` of a full key ``namespace:vN:provider:type[:part...]``, or None
    when ``key`` has no such shape. With ``prefix`` (a scheme's ``namespace:vN:``), only keys
    that start with it; without, keys of any namespace (what a shared backend stores).

    The one key parser: the manager, :meth:`KeyScheme.split` and the backends all use it."""
    if prefix and not key.startswith(prefix):
        return None
    # The kind runs from after the second ':' (namespaces hold none) to the fourth (or the
    # end); found with str.find, not split: one slice each instead of a list of five.
    first = key.find(":")
    second = key.find(":", first + 1) if first >= 0 else -1
    if second < 0:
        return None
    third = key.find(":", second + 1)
    if third <= second + 1 or third + 1 == len(key) or key[third + 1] == ":":
        return None
    fourth = key.find(":", third + 1)
    return key[second + 1 : third], key[second + 1 : fourth if fourth >= 0 else len(key)]


def compile_glob(pattern: str) -> re.Pattern[bytes]:
    """A regex matching exactly what a Redis ``SCAN MATCH`` glob matches (on UTF-8 bytes).

    Redis globs: ``*`` any run of bytes, ``?`` one byte, ``[abc]``, ``[^a]``, ``[a-z]`` and
    ``\\x`` for a literal ``x``; an unclosed ``[`` runs to the end of the pattern. (Redis
    never matches an empty key; keys here are never empty.) Written by
    hand because ``fnmatch`` has neither ``^`` negation nor backslash escapes, and works on
    characters where Redis works on bytes.
    """
    pat = pattern.encode("utf-8", "surrogatepass")
    out: list[bytes] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i : i + 1]
        i += 1
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i < n:
            out.append(re.escape(pat[i : i + 1]))
            i += 1
        elif c == b"[":
            i, cls = _glob_class(pat, i)
            out.append(cls)
        else:
            out.append(re.escape(c))
    return re.compile(b"".join(out) + b"\\Z", re.DOTALL)


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _glob_class(pat: bytes, i: int) -> tuple[int, bytes]:
    """Translate a ``[...]`` class starting after the ``[``; returns (next index, regex)."""
    n = len(pat)
    negate = i < n and pat[i : i + 1] == b"^"
    if negate:
        i += 1
    members: list[bytes] = []
    while i < n and pat[i : i + 1] != b"]":
        c = pat[i]
        if c == 0x5C and i + 1 < n:  # backslash: next byte literally
            i += 1
            c = pat[i]
            members.append(re.escape(bytes([c])))
            i += 1
        elif i + 2 < n and pat[i + 1 : i + 2] == b"-":
            # As Redis: "a-]" is a range too, reversed ranges are accepted, and bounds
            # compare as C (signed) chars, so a range reaching a non-ASCII byte is odd.
            lo, hi = sorted((_signed(c), _signed(pat[i + 2])))
            members.extend(re.escape(bytes([b])) for b in range(256) if lo <= _signed(b) <= hi)
            i += 3
        else:
            members.append(re.escape(bytes([c])))
            i += 1
    i += 1  # past the ']' (or past the end when unclosed, as Redis does)
    if not members:
        return i, b"[^\\x00-\\xff]" if not negate else b"[\\x00-\\xff]"
    return i, b"[" + (b"^" if negate else b"") + b"".join(members) + b"]"
