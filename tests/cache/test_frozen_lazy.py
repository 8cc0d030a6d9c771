"""Decoded values freeze lazily (``tunegate.cache.frozen``): every public way of reading a
decoded value hands out frozen containers only, and the value reads, copies, pickles and
serializes as the eagerly frozen one does."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tunegate.cache import FrozenDict, FrozenList, thaw
from tunegate.cache.frozen import adopt, decode

TRACK: dict[str, Any] = {
    "name": "Strobe",
    "album": {"name": "For Lack of a Better Name", "images": [{"w": 640}, {"w": 64}]},
    "artists": [{"name": "deadmau5", "genres": ["house"]}, {"name": "Kaskade"}],
    "markets": ["US", "GB"],
    "nested": [[{"x": 1}], []],
    "popularity": 71,
    "preview_url": None,
}
PAYLOAD = orjson.dumps(TRACK)

# Each read returns a container reached from a fresh decoded value.
READS: dict[str, Callable[[Any], Any]] = {
    "index": lambda d: d["album"],
    "get": lambda d: d.get("album"),
    "values": lambda d: list(d.values())[1],
    "items": lambda d: list(d.items())[1][1],
    "dict()": lambda d: dict(d)["album"],
    "{**d}": lambda d: {**d}["album"],
    "f(**d)": lambda d: (lambda **kw: kw)(**d)["album"],
    "{} | d": lambda d: ({} | d)["album"],
    "d | {}": lambda d: (d | {})["album"],
    "update": lambda d: _updated(d)["album"],
    "d.copy()": lambda d: d.copy()["album"],
    "copy.copy": lambda d: copy.copy(d)["album"],
    "pickle": lambda d: pickle.loads(pickle.dumps(d))["album"],
    "list index": lambda d: d["artists"][0],
    "list negative index": lambda d: d["artists"][-1],
    "list slice": lambda d: d["artists"][:1][0],
    "list iter": lambda d: next(iter(d["artists"])),
    "list()": lambda d: list(d["artists"])[1],
    "tuple()": lambda d: tuple(d["artists"])[1],
    "[*lst]": lambda d: [*d["artists"]][1],
    "unpacking": lambda d: _first(*d["artists"]),
    "reversed": lambda d: list(reversed(d["artists"]))[-1],
    "sorted": lambda d: sorted(d["artists"], key=lambda a: a["name"])[0],
    "lst + []": lambda d: (d["artists"] + [])[0],
    "[] + lst": lambda d: ([] + d["artists"])[0],
    "lst * 2": lambda d: (d["artists"] * 2)[0],
    "2 * lst": lambda d: (2 * d["artists"])[0],
    "lst.copy()": lambda d: d["artists"].copy()[0],
    "nested list": lambda d: d["nested"][0],
}


def _updated(d: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out.update(d)
    return out


def _first(first: Any, *rest: Any) -> Any:
    return first


def _all_frozen(value: Any) -> bool:
    """Is every container under ``value`` frozen? (Read with dict's and list's own
    methods, which see what is stored, frozen or not.)"""
    if isinstance(value, dict):
        return type(value) is FrozenDict and all(_all_frozen(v) for v in dict.values(value))
    if isinstance(value, list):
        return type(value) is FrozenList and all(_all_frozen(v) for v in list.__iter__(value))
    return True


@pytest.mark.parametrize("made", ["decoded", "adopted"])
@pytest.mark.parametrize("read", list(READS))
def test_every_read_of_a_decoded_or_adopted_value_hands_out_frozen_containers(
    read: str, made: str
) -> None:
    """A hit's decoded value, and a miss's parsed one (``adopt``: freshly decoded, held by
    nobody else), read alike: frozen on the way out, equal to the data."""
    value = decode(PAYLOAD) if made == "decoded" else adopt(orjson.loads(PAYLOAD))
    assert type(value) is FrozenDict
    got = READS[read](value)
    assert type(got) in (FrozenDict, FrozenList)  # its own children freeze when read
    if isinstance(got, dict):
        with pytest.raises(TypeError):
            got["name"] = "changed"
    else:
        with pytest.raises(TypeError):
            got.append("x")
    assert value == TRACK
    assert orjson.dumps(value) == PAYLOAD
    assert decode(PAYLOAD) == TRACK


@pytest.mark.parametrize("top", [[{"a": [1]}], "text", 7, None, ({"a": 1},)])
def test_adopted_tops_other_than_dicts(top: Any) -> None:
    value = adopt(top)
    if isinstance(top, list | tuple):  # a tuple is not JSON's: copied deeply, as freeze does
        assert type(value) is FrozenList
        assert type(value[0]) is FrozenDict
    else:
        assert value is top


def test_a_decoded_value_walked_through_its_reads_is_frozen_all_the_way_down() -> None:
    value = decode(PAYLOAD)

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k in v:
                walk(v[k])
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(value)
    assert _all_frozen(value)
    assert value == TRACK


def test_a_decoded_value_serializes_copies_and_thaws_as_data() -> None:
    value = decode(PAYLOAD)
    assert orjson.loads(orjson.dumps(value)) == TRACK
    assert json.loads(json.dumps(value)) == TRACK
    assert _all_frozen(pickle.loads(pickle.dumps(decode(PAYLOAD))))
    for mutable in (thaw(decode(PAYLOAD)), copy.deepcopy(decode(PAYLOAD))):
        assert mutable == TRACK
        assert type(mutable["artists"]) is list
        mutable["artists"][0]["name"] = "x"  # plain, deep, mutable
    assert decode(PAYLOAD)["artists"][0]["name"] == "deadmau5"
    assert type(value | {"a": 1}) is dict
    assert type(value["markets"] + ["FR"]) is list
    assert value["markets"][:1] == ["US"]


def test_a_read_container_is_the_same_object_on_every_read() -> None:
    """Frozen in place: a decoded value shared by several hits gives each the same child."""
    value = decode(PAYLOAD)
    assert value["album"] is value["album"]
    assert value["artists"][0] is value["artists"][0]
    assert value.get("album") is value["album"]
    assert value.get("missing", {"a": 1}) == {"a": 1}
    assert type(value.get("missing", {"a": 1})) is dict  # a caller's default is its own


@pytest.mark.parametrize("top", [[{"a": [1]}], "text", 7, None])
def test_decoded_tops_other_than_dicts(top: Any) -> None:
    value = decode(orjson.dumps(top))
    assert value == top
    if isinstance(top, list):
        assert type(value) is FrozenList
        assert type(value[0]) is FrozenDict
        assert type(value[0]["a"]) is FrozenList
