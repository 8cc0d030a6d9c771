"""Cache keys and entry lifetimes: the pure policies in tunegate._policy.keys / .freshness."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunegate._policy.freshness import (
    DAY,
    Freshness,
    TtlPolicy,
    freshness,
)
from tunegate._policy.keys import (
    KEY_FORMAT_VERSION,
    MAX_PART_BYTES,
    KeyScheme,
    compile_glob,
    normalize_part,
    split_key,
)
from tunegate.cache import DEFAULT_TTLS, CacheManager
from tunegate.exceptions import ConfigurationError, InvalidInput
from tunegate.providers.spec import CASE_SENSITIVE_KINDS

SCHEME = KeyScheme(case_sensitive_kinds=CASE_SENSITIVE_KINDS)  # as the cache builds it
KIND = "spotify:search"

# Text that exercises every rule: case, composition, white space, the separator, the hash
# marker, glob characters, percent, controls and lone surrogates, and the odd long string.
_ALPHABET = st.sampled_from(
    ["a", "A", "b", "ß", "SS", "ss", "é", "e\u0301", " ", "\t", "\u00a0", ":", "#", "%",
     "%3A", "*", "?", "[", "]", "\\", "^", "-", "\x00", "\x7f", "\ud800", "ǅ", "ﬀ", "Ω", "Ω"]
)  # fmt: skip
texts = st.one_of(
    st.lists(_ALPHABET, max_size=6).map("".join),
    st.text(max_size=12),
    st.text(alphabet="ab:", min_size=40, max_size=200),  # past MAX_PART_BYTES once escaped
)
tuples = st.lists(texts, max_size=4).map(tuple)
# User data written to widen a pattern: globs, escapes, separators, escape look-alikes.
_GLOBBY = st.sampled_from(["*", "?", "[a-z]", "[^x]", "[", "]", "\\", "a", ":", "%2A", "%3A"])
hostile = st.one_of(texts, st.lists(_GLOBBY, min_size=1, max_size=4).map("".join))


def _norm(parts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(normalize_part(p) for p in parts)


def _matches(pattern: str, key: str) -> bool:
    return compile_glob(SCHEME.full_pattern(pattern)).match(key.encode()) is not None


# -- the scheme ----------------------------------------------------------------------------


def test_design_kinds_read_like_the_design() -> None:
    """The design's four key shapes, with the namespace and version in front."""
    v = f"v{KEY_FORMAT_VERSION}"
    assert SCHEME.key("spotify:search", "Deadmau5", "Strobe") == (
        f"tunegate:{v}:spotify:search:deadmau5:strobe"
    )
    assert SCHEME.key("spotify:track", "4uLU6hMCjMI75M1A2tKUQC") == (
        f"tunegate:{v}:spotify:track:4uLU6hMCjMI75M1A2tKUQC"
    )
    assert SCHEME.key("musicbrainz:isrc", "USIR20400500") == (
        f"tunegate:{v}:musicbrainz:isrc:usir20400500"
    )
    assert SCHEME.key("lastfm:track_tags", "Daft  Punk ", "One More Time") == (
        f"tunegate:{v}:lastfm:track_tags:daft punk:one more time"
    )


def test_spotify_ids_keep_their_case() -> None:
    """Base62 ids differing only in case are different tracks, so they get different keys."""
    assert SCHEME.key("spotify:track", "abcDEF") != SCHEME.key("spotify:track", "ABCdef")
    assert SCHEME.key("spotify:search", "abcDEF") == SCHEME.key("spotify:search", "ABCdef")


def test_the_cache_hands_the_providers_tables_to_the_policies() -> None:
    """The policies know no provider; the cache gives them the kinds' case and TTL tables."""
    cache = CacheManager()
    scheme = cache.key_scheme
    assert scheme.key("spotify:track", "abcDEF") != scheme.key("spotify:track", "ABCdef")
    assert cache.policy.ttl_for("musicbrainz:isrc", None, False) == 30 * DAY
    bare = KeyScheme()  # nothing given: every kind's parts are folded
    assert bare.key("spotify:track", "abcDEF") == bare.key("spotify:track", "ABCdef")
    assert (
        TtlPolicy.build().ttl_for("musicbrainz:isrc", None, False) == TtlPolicy.build().default_ttl
    )


def test_normalisation_rules() -> None:
    """NFC, case folding (ß -> ss), and white space stripped and collapsed."""
    assert normalize_part("Beyonce\u0301") == normalize_part("BEYONCÉ") == "beyoncé"
    assert normalize_part("Straße") == normalize_part("STRASSE") == "strasse"
    assert normalize_part("  Sigur\t\u00a0Rós \n") == "sigur rós"
    assert normalize_part(42) == "42"
    assert normalize_part("AbC", fold_case=False) == "AbC"


def test_separator_and_globs_in_data_are_escaped() -> None:
    """A ':' inside a part cannot pose as a separator; glob characters become %XX."""
    assert SCHEME.key(KIND, "a:b") != SCHEME.key(KIND, "a", "b")
    assert SCHEME.key(KIND, "a:b") == "tunegate:v1:spotify:search:a%3Ab"
    key = SCHEME.key(KIND, "*?[]\\%#")
    assert key.endswith(":%2A%3F%5B%5D%5C%25%23")
    assert not re.search(r"[*?\[\]\\]", key)


def test_empty_parts_are_distinct() -> None:
    """No parts, one empty part and two empty parts give three keys."""
    keys = {SCHEME.key(KIND), SCHEME.key(KIND, ""), SCHEME.key(KIND, "", "")}
    assert len(keys) == 3


def test_any_input_gives_a_bounded_key() -> None:
    """Ten megabytes of input, or a thousand parts, still give a short ASCII-safe key."""
    huge = "x" * 10_000_000
    for key in (
        SCHEME.key(KIND, huge),
        SCHEME.key(KIND, huge, huge),
        SCHEME.key(KIND, *["part"] * 1000),
        SCHEME.key(KIND, "é" * 5000),
    ):
        assert len(key.encode()) <= 520
    assert SCHEME.key(KIND, huge) != SCHEME.key(KIND, huge + "y")
    # A long part is hashed on its own, so the other parts stay readable.
    longest = KeyScheme("n" * 64).key("p" * 32 + ":" + "t" * 32, *[huge] * 9)
    assert len(longest) <= 520
    assert SCHEME.key(KIND, "Artist", huge).startswith("tunegate:v1:spotify:search:artist:#")


def test_namespace_and_version_prefix_every_key() -> None:
    """A namespace separates caches; invalid namespaces and kinds are refused."""
    other = KeyScheme("staging")
    assert other.key(KIND, "x") == "staging:v1:spotify:search:x"
    assert other.key(KIND, "x") != SCHEME.key(KIND, "x")
    with pytest.raises(ConfigurationError):
        KeyScheme("bad:ns")
    with pytest.raises(ConfigurationError):
        KeyScheme("glob*")
    bad_kinds = (
        "spotify",
        "Spotify:search",
        "spotify:search:extra",
        "spotify:*",
        "",
        "a:" + "b" * 33,
    )
    for kind in bad_kinds:
        with pytest.raises(InvalidInput):
            SCHEME.key(kind, "x")


def test_split_reads_provider_and_kind() -> None:
    """split() recovers (provider, kind) and refuses foreign keys."""
    assert SCHEME.split(SCHEME.key("lastfm:track_tags", "a", "b")) == (
        "lastfm",
        "lastfm:track_tags",
    )
    assert SCHEME.split(SCHEME.key("musicbrainz:isrc")) == ("musicbrainz", "musicbrainz:isrc")
    assert SCHEME.split("other:v1:spotify:search:x") is None
    for malformed in ("tunegate:v1:", "tunegate:v1:spotify", "tunegate:v1::x", "tunegate:v1:a:"):
        assert SCHEME.split(malformed) is None
        assert split_key(malformed) is None


_NAMESPACES = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=8)
_KINDS = st.sampled_from(["spotify:search", "spotify:track", "lastfm:track_tags", "a:b9_"])


@settings(max_examples=150, deadline=None)
@given(_NAMESPACES, _KINDS, tuples)
def test_one_parser_for_every_caller(namespace: str, kind: str, parts: tuple[str, ...]) -> None:
    """split_key (the backends, without a prefix), split_key with the scheme's prefix (the
    manager) and KeyScheme.split agree on every key, whatever its parts hold."""
    scheme = KeyScheme(namespace)
    key = scheme.key(kind, *parts)
    expected = (kind.partition(":")[0], kind)
    assert split_key(key) == split_key(key, scheme.prefix) == scheme.split(key) == expected
    assert split_key(key, SCHEME.prefix if namespace != "tunegate" else "x:v1:") is None


def test_pattern_from_user_data() -> None:
    """pattern() escapes the parts and adds ':*' for 'at least one more part'."""
    assert SCHEME.pattern(KIND, "Deadmau5") == "spotify:search:deadmau5:*"
    assert SCHEME.pattern(KIND, "*") == "spotify:search:%2A:*"
    assert SCHEME.pattern(KIND) == "spotify:search:*"
    assert _matches(SCHEME.pattern(KIND, "Deadmau5"), SCHEME.key(KIND, "deadmau5", "Strobe"))
    assert not _matches(SCHEME.pattern(KIND, "*"), SCHEME.key(KIND, "deadmau5", "Strobe"))
    long_artist = "y" * (MAX_PART_BYTES + 1)
    assert _matches(SCHEME.pattern(KIND, long_artist), SCHEME.key(KIND, long_artist, "t"))


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(tuples, tuples)
def test_distinct_tuples_give_distinct_keys(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    """Keys are equal exactly when the normalised part tuples are equal."""
    assert (SCHEME.key(KIND, *a) == SCHEME.key(KIND, *b)) == (_norm(a) == _norm(b))


_LOOKALIKES = [(":", "%3A"), ("%3A", ":"), ("%", "%25"), ("#", "%23"), ("*", "%2A")]


@settings(max_examples=300, deadline=None)
@given(st.lists(hostile, min_size=1, max_size=4).map(tuple), st.sampled_from(_LOOKALIKES))
def test_look_alike_tuples_get_other_keys(parts: tuple[str, ...], swap: tuple[str, str]) -> None:
    """Re-cutting the text at ':' or writing a character as its own escape is another key."""
    recut = tuple(":".join(parts).split(":"))
    swapped = tuple(p.replace(*swap) for p in parts)
    for other in (recut, swapped):
        same_key = SCHEME.key(KIND, *parts) == SCHEME.key(KIND, *other)
        assert same_key == (_norm(parts) == _norm(other))


@settings(max_examples=300, deadline=None)
@given(st.lists(texts, min_size=1, max_size=3).map(tuple))
def test_key_is_stable_under_normalisation(parts: tuple[str, ...]) -> None:
    """Normalising is idempotent, so a key built from normalised parts is the same key."""
    assert _norm(_norm(parts)) == _norm(parts)
    assert SCHEME.key(KIND, *_norm(parts)) == SCHEME.key(KIND, *parts)
    assert all(unicodedata.is_normalized("NFC", p) for p in _norm(parts))


@settings(max_examples=400, deadline=None)
@given(st.lists(hostile, min_size=1, max_size=2).map(tuple), tuples)
def test_user_data_cannot_widen_a_pattern(pre: tuple[str, ...], parts: tuple[str, ...]) -> None:
    """pattern(kind, *pre) matches a key only if its parts start with pre and go on; and it
    does match every such key (short enough not to be hashed whole)."""
    key = SCHEME.key(KIND, *parts)
    hit = _matches(SCHEME.pattern(KIND, *pre), key)
    extends = len(parts) > len(pre) and _norm(parts)[: len(pre)] == _norm(pre)
    if hit:
        assert extends
    elif extends:
        assert ":##" in key  # only a key whose whole parts section was hashed escapes


@settings(max_examples=200, deadline=None)
@given(hostile, texts)
def test_user_data_cannot_reach_other_kinds(data: str, other: str) -> None:
    """A pattern built from user data never matches another kind's keys."""
    pattern = SCHEME.pattern("spotify:search", data)
    assert not _matches(pattern, SCHEME.key("spotify:track", data, other))
    assert not _matches(pattern, SCHEME.key("lastfm:track_tags", data, other))


# -- Redis glob semantics --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("a*", "abc", True),
        ("a*", "ba", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a[bc]d", "acd", True),
        ("a[^bc]d", "acd", False),
        ("a[^bc]d", "axd", True),
        ("a[b-d]", "ac", True),
        ("a[d-b]", "ac", True),  # reversed range, as Redis accepts
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
        ("a[", "a", False),  # unclosed class
        ("a[b", "ab", True),
        ("a\\", "a\\", True),  # trailing backslash is literal
        ("é?", "éx", True),
        ("?", "é", False),  # '?' is one byte, as in Redis
        ("??", "é", True),
        ("a.b", "axb", False),  # regex characters are literal
    ],
)
def test_glob_matches_like_redis(pattern: str, text: str, expected: bool) -> None:
    """compile_glob follows Redis stringmatchlen on these cases (see the Redis parity test)."""
    assert (compile_glob(pattern).match(text.encode()) is not None) is expected


# -- freshness -------------------------------------------------------------------------------


def test_ttl_table_defaults_and_precedence() -> None:
    """Explicit ttl, then negative_ttl, then the kind's entry, then default_ttl."""
    policy = TtlPolicy.build(ttls={"spotify:search": 60.0, "lastfm:artist": 5.0}, base=DEFAULT_TTLS)
    assert DEFAULT_TTLS["spotify:track"] == 30 * DAY
    assert policy.ttl_for("spotify:track", None, False) == 30 * DAY
    assert policy.ttl_for("musicbrainz:isrc", None, False) == 30 * DAY
    assert policy.ttl_for("lastfm:track_tags", None, False) == 7 * DAY
    assert policy.ttl_for("spotify:search", None, False) == 60.0
    assert policy.ttl_for("lastfm:artist", None, False) == 5.0
    assert policy.ttl_for("musicbrainz:recording", None, False) == policy.default_ttl
    assert policy.ttl_for("spotify:track", None, True) == policy.negative_ttl
    assert policy.ttl_for("spotify:track", 12.0, True) == 12.0
    with pytest.raises(InvalidInput):
        policy.ttl_for("spotify:track", 0.0, False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttls": {"spotify:track": -1.0}},
        {"default_ttl": 0.0},
        {"negative_ttl": float("nan")},
        {"stale_grace": -1.0},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Impossible TTL settings raise ConfigurationError at construction."""
    with pytest.raises(ConfigurationError):
        TtlPolicy.build(**kwargs)  # type: ignore[arg-type]


def test_jitter_only_shortens() -> None:
    """Jitter takes up to 10% off the TTL, never adds; the grace follows fresh_until."""
    policy = TtlPolicy.build(stale_grace=100.0, jitter=0.1)
    assert policy.stamps(0.0, 1000.0, False, 0.0) == (1000.0, 1100.0)
    fresh, stale = policy.stamps(0.0, 1000.0, False, 0.999999)
    assert 900.0 < fresh < 900.01
    assert stale == fresh + 100.0
    assert TtlPolicy.build(jitter=0.0).stamps(5.0, 10.0, False, 0.7)[0] == 15.0


def test_negative_entries_get_no_grace() -> None:
    """A 'not found' stops being served when its TTL ends."""
    fresh, stale = TtlPolicy.build(jitter=0.0).stamps(0.0, 60.0, True, 0.5)
    assert fresh == stale == 60.0


def test_freshness_boundaries() -> None:
    """Fresh before fresh_until, stale until stale_until, then expired."""
    assert freshness(10.0, 20.0, 9.999) is Freshness.FRESH
    assert freshness(10.0, 20.0, 10.0) is Freshness.STALE
    assert freshness(10.0, 20.0, 19.999) is Freshness.STALE
    assert freshness(10.0, 20.0, 20.0) is Freshness.EXPIRED
    assert freshness(10.0, 10.0, 10.0) is Freshness.EXPIRED
