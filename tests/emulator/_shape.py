"""Recursive comparison of JSON shapes: keys, types and nesting, not values."""

from __future__ import annotations

from typing import Any

# A recorded value of this type may be a JSON null at the other side: nullable fields.
_NULL_OK = True


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def shape_differences(
    ours: Any,
    real: Any,
    *,
    allow_extra: frozenset[str] = frozenset(),
    ignore: frozenset[str] = frozenset(),
    path: str = "$",
) -> list[str]:
    """Where ``ours`` differs from ``real`` in keys, types or nesting.

    Every key of a real object must exist in ours with the same kind of value (a null on
    either side matches anything: nullable fields); our extra keys must be in
    ``allow_extra`` (by key name). Lists are compared element-wise against the real
    list's first element. Keys in ``ignore`` (by name) are skipped, for recorded values
    their recorder redacted.
    """
    problems: list[str] = []
    k_ours, k_real = _kind(ours), _kind(real)
    if "null" in (k_ours, k_real):
        return problems
    if k_ours != k_real:
        return [f"{path}: {k_ours} here, {k_real} in the recording"]
    if k_real == "object":
        for key in real:
            if key in ignore:
                continue
            if key not in ours:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += shape_differences(
                    ours[key],
                    real[key],
                    allow_extra=allow_extra,
                    ignore=ignore,
                    path=f"{path}.{key}",
                )
        for key in ours:
            if key not in real and key not in allow_extra and key not in ignore:
                problems.append(f"{path}.{key}: not in the recording")
    elif k_real == "list" and real:
        for n, item in enumerate(ours):
            problems += shape_differences(
                item, real[0], allow_extra=allow_extra, ignore=ignore, path=f"{path}[{n}]"
            )
    return problems


def assert_same_shape(ours: Any, real: Any, **kwargs: Any) -> None:
    problems = shape_differences(ours, real, **kwargs)
    assert not problems, "shape differs from the recorded response:\n" + "\n".join(problems)
