"""Cached values that callers cannot corrupt, and the codec the persistent backends use.

A value is frozen once, on write: every dict becomes a :class:`FrozenDict` and every list
(or tuple) a :class:`FrozenList`. They are real ``dict`` and ``list`` subclasses, so
``track["artists"][0]["name"]``, ``isinstance(x, dict)``, ``json.dumps`` and ``orjson.dumps``
all work, but every mutating method raises ``TypeError``. The in-memory backend can then
hand the very same object to every caller with no copy and no decode. (A guard against
accidents, not a sandbox: ``dict.__setitem__(d, k, v)`` still gets through.) ``.copy()``,
``d | other`` and ``lst + other`` return plain (shallow) mutable copies; :func:`thaw` and
``copy.deepcopy`` return deep ones.
"""

from __future__ import annotations

from typing import Any, NoReturn

import orjson

__all__ = ["FrozenDict", "FrozenList", "decode", "encode", "freeze", "thaw"]


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(
        f"cached {type(self).__name__} values are read-only; use tunegate.cache.thaw() "
        "or copy.deepcopy() for a mutable copy"
    )


class FrozenDict(dict[str, Any]):
    """A dict that refuses mutation (values come from the cache and are shared)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thaw(self)


class FrozenList(list[Any]):
    """A list that refuses mutation."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thaw(self)


_SCALARS = (str, int, float, bool, type(None))


def freeze(value: Any) -> Any:
    """A deep, immutable copy of a JSON-like value (dict with str keys, list, tuple, str, int,
    float, bool, None). Anything else raises ``TypeError``; already frozen parts are reused."""
    t = type(value)
    if t is FrozenDict or t is FrozenList or t in _SCALARS:
        return value
    if isinstance(value, dict):
        for k in value:
            if type(k) is not str:
                raise TypeError(f"cached dict keys must be str, got {type(k).__name__}")
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return FrozenList([freeze(v) for v in value])
    if isinstance(value, _SCALARS):  # str/int/float subclasses (e.g. enum.StrEnum)
        return value
    raise TypeError(f"cannot cache a {t.__name__}: values must be JSON-like")


def thaw(value: Any) -> Any:
    """A deep, plain, mutable copy of a (frozen) JSON-like value."""
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value


def encode(frozen: Any) -> bytes:
    """The stored form: orjson bytes (orjson writes dict/list subclasses as plain JSON)."""
    return orjson.dumps(frozen)


_store = dict.__setitem__


def _freeze_decoded(value: Any) -> Any:
    # freeze() for orjson's output, which holds exact dicts, lists and scalars only: the
    # scalars are copied at C speed and only nested containers recurse (about 1.5x faster).
    t = type(value)
    if t is dict:
        out = FrozenDict(value)
        for k, v in value.items():
            tv = type(v)
            if tv is dict or tv is list:
                _store(out, k, _freeze_decoded(v))
        return out
    if t is list:
        return FrozenList(
            [_freeze_decoded(v) if type(v) is dict or type(v) is list else v for v in value]
        )
    return value


def decode(payload: bytes | bytearray | memoryview | str) -> Any:
    """Stored bytes back to a frozen value."""
    return _freeze_decoded(orjson.loads(payload))
