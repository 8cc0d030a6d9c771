"""The Redis backend's stored form read back: the same entry a plain ``CacheEntry`` build
gives, and the key's kind as the one key parser reads it."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunegate._policy.freshness import CacheEntry
from tunegate._policy.keys import split_key
from tunegate.cache.frozen import encode, freeze
from tunegate.cache.redisbackend import _kind_of, pack, unpack


@pytest.mark.parametrize("negative", [False, True])
def test_unpack_gives_the_entry_that_was_packed(negative: bool) -> None:
    key = "tunegate:v1:spotify:search:deadmau5:strobe"
    value = freeze({"name": "Strobe", "artists": [{"name": "deadmau5"}]})
    entry = CacheEntry(value, negative, False, "spotify", "spotify:search", 1e9 + 0.25, 1e9 + 7)
    back = unpack(key, pack(entry, encode(value)))
    assert back == entry
    assert dataclasses.astuple(back) == dataclasses.astuple(entry)
    assert unpack(key, pack(entry, encode(value)).decode()) == entry  # decode_responses
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.stale = True  # type: ignore[misc]
    assert back.as_stale().stale


@pytest.mark.parametrize(
    "key",
    [
        "tunegate:v1:spotify:search:a",
        "tunegate:v1:spotify:search",
        "ns:v2:lastfm:artist:x:y:z",
        "tunegate:v1:spotify:",
        "tunegate:v1::search:a",
        "tunegate:v1",
        "nocolon",
        ":::::",
        "",
    ],
)
def test_the_memoised_kind_is_the_key_parsers(key: str) -> None:
    assert _kind_of(key) == split_key(key)
    assert _kind_of(key) == split_key(key)  # memoised


@given(st.text(alphabet=":ab", max_size=12))
def test_the_memoised_kind_is_the_key_parsers_for_any_key(key: str) -> None:
    assert _kind_of(key) == split_key(key)


def test_a_string_not_ours_is_refused() -> None:
    for raw in (b"plain", b"TG1 1 2 0", b"TG2 1 2 0\n{}"):
        with pytest.raises(ValueError, match="not a tunegate cache entry"):
            unpack("tunegate:v1:spotify:search:a", raw)
    with pytest.raises(ValueError, match="not a tunegate cache entry"):
        unpack("no-kind", b"TG1 1 2 0\n{}")
