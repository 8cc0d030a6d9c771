"""``MemoryBackend.put`` of real search answers, beside the put it replaces, in one run.

Usage: ``.venv/bin/python bench/bench_memory_put.py [--repeats 5] [--seconds 0.3]``

Figures, in microseconds per put (median of ``--repeats`` loops, interleaved), each putting
the emulator's answers to 200 distinct ``search_track`` queries in turn (frozen values and
orjson bytes, as the manager puts them) into a default ``MemoryBackend``:

- before: the backend as of commit ``5c296dd`` (read with ``git show``), which walks every
  decoded value (``resident_size``);
- after: this clone's backend, which estimates most sizes from the payload's length;
- the walk alone: ``resident_size`` of the same values.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from _infra import EmulatorProcess  # bench/ is on sys.path when a script runs
from _timing import timed

from tunegate._policy.freshness import CacheEntry
from tunegate.cache.frozen import encode, freeze
from tunegate.cache.memory import MemoryBackend, resident_size
from tunegate.emulator import DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET, Emulator

BEFORE = "5c296dd"  # the last commit whose put walked every value
ROOT = Path(__file__).resolve().parents[1]


def answers(n: int) -> list[tuple[str, CacheEntry, bytes]]:
    """``n`` search answers from the emulator (its own process, loopback), as puts."""
    emu = EmulatorProcess(rate_limits=False)
    try:
        with httpx.Client() as http:
            token = http.post(
                f"{emu.root}/api/token",
                data={"grant_type": "client_credentials"},
                auth=(DEFAULT_SPOTIFY_CLIENT_ID, DEFAULT_SPOTIFY_CLIENT_SECRET),
            ).json()["access_token"]
            catalog = Emulator(rate_limits=False)
            puts = []
            for i in range(n):
                t = catalog.describe_track(i)
                q = f'track:"{t["title"]}" artist:"{t["artists"][0]}"'
                resp = http.get(
                    f"{emu.root}/v1/search",
                    params={"q": q, "type": "track", "limit": "10"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                resp.raise_for_status()
                value = freeze(orjson.loads(resp.content))
                entry = CacheEntry(value, False, False, "spotify", "spotify:search", 1e12, 1e12)
                puts.append((f"tunegate:v1:spotify:search:q{i}", entry, encode(value)))
            return puts
    finally:
        emu.close()


def backend_before() -> type[Any] | None:
    """The memory backend as of :data:`BEFORE`, or None without git (said so)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BEFORE}:src/tunegate/cache/memory.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"before: skipped, no git history here ({exc})")
        return None
    module = types.ModuleType("tunegate_memory_before")
    exec(compile(source, f"{BEFORE}:memory.py", "exec"), module.__dict__)
    backend: type[Any] = module.MemoryBackend
    return backend


def putting(backend: Any, puts: list[tuple[str, CacheEntry, bytes]]) -> Callable[[], None]:
    turn = itertools.cycle(puts).__next__
    put = backend.put

    def one() -> None:
        key, entry, payload = turn()
        put(key, entry, payload, 0.0)

    return one


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3)
    args = parser.parse_args()
    puts = answers(200)
    lengths = sorted(len(p) for _, _, p in puts)
    print(
        f"{len(puts)} search answers, payload {lengths[0]}-{lengths[-1]} B "
        f"(median {lengths[len(lengths) // 2]}); python {sys.version.split()[0]}"
    )
    before = backend_before()
    values = itertools.cycle([e.value for _, e, _ in puts]).__next__
    loops: dict[str, Callable[[], object]] = {"after": putting(MemoryBackend(), puts)}
    if before is not None:
        loops["before"] = putting(before(), puts)
    loops["walk alone"] = lambda: resident_size(values())
    for fn in loops.values():  # warm: every key present, classes learned
        for _ in range(2 * len(puts)):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, fn in loops.items():
            samples[name].append(timed(fn, args.seconds))
    for name, xs in samples.items():
        print(f"{name:>10}: {statistics.median(xs):7.2f} us/put  ({min(xs):.2f}-{max(xs):.2f})")
    if before is not None:
        ratio = statistics.median(samples["after"]) / statistics.median(samples["before"])
        print(f"after / before: {ratio:.3f}")


if __name__ == "__main__":
    main()
