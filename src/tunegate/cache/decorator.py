"""``CacheManager.cached``: cache any function's answers by its arguments, sync or async.

The key is the cache's own key for ``key_prefix`` (a ``provider:type`` kind) and the call's
arguments: the positional ones in order, then ``name=value`` for each keyword argument in
name order, each normalised as :meth:`CacheManager.key` normalises parts (so a kind not
listed in ``case_sensitive_kinds`` folds case). :meth:`CacheManager.invalidate` with the
same prefix and arguments forgets the answer. ``f(1, b=2)`` and ``f(1, 2)`` are two keys,
as with :func:`functools.lru_cache`.

Arguments must be ``str``, ``int``, ``float``, ``bool`` or ``None``: anything else raises
:class:`~tunegate.exceptions.InvalidInput` before the function runs, since its ``str()``
could be unstable or carry data nobody meant to put in a key. The answer must be JSON-like
(it is stored frozen, and returned frozen on a miss as on a hit); ``None`` is an answer too.
There is no single-flight here: two concurrent misses both call the function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from tunegate.exceptions import InvalidInput

if TYPE_CHECKING:
    from tunegate.cache.manager import CacheManager

__all__ = ["cached", "call_parts"]

P = ParamSpec("P")
R = TypeVar("R")

_SCALARS = (str, int, float, bool, type(None))


def _part(name: str, value: object) -> str | int:
    if not isinstance(value, _SCALARS):
        raise InvalidInput(
            name, f"cached keys take str, int, float, bool or None, got {type(value).__name__}"
        )
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    return value


def call_parts(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[str | int, ...]:
    """The key parts of a call: positional arguments, then ``name=value`` by name."""
    parts = [_part(f"args[{i}]", value) for i, value in enumerate(args)]
    parts.extend(f"{name}={_part(name, kwargs[name])}" for name in sorted(kwargs))
    return tuple(parts)


def cached(
    manager: CacheManager, key_prefix: str, ttl: float | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The decorator behind :meth:`CacheManager.cached` (see the module)."""
    manager.key(key_prefix, "")  # a bad prefix fails at decoration, not at the first call

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def acached(*args: P.args, **kwargs: P.kwargs) -> Any:
                key = manager.key(key_prefix, *call_parts(args, kwargs))
                entry = await manager.alookup(key)
                if entry is not None and not entry.stale:
                    return entry.value
                return await manager.astore(key, await afn(*args, **kwargs), ttl=ttl)

            return cast(Callable[P, R], acached)

        @functools.wraps(fn)
        def scached(*args: P.args, **kwargs: P.kwargs) -> R:
            key = manager.key(key_prefix, *call_parts(args, kwargs))
            entry = manager.lookup(key)
            if entry is not None and not entry.stale:
                return cast(R, entry.value)
            return cast(R, manager.store(key, fn(*args, **kwargs), ttl=ttl))

        return scached

    return decorate
