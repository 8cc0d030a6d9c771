"""Shares of a py-spy profile by tunegate module: where the client's own time goes.

Usage: ``python bench/spy_shares.py out.txt [--within FUNC] [--top N]`` on the raw output of
``py-spy record -f raw -o out.txt -- python bench/profile_figure.py 3 --bare``.

Each sample is charged to the deepest tunegate frame on its stack (the emulator's frames
are not tunegate's here), or to "(aiohttp)" when the stack goes on into aiohttp or the
socket transport below that frame, or to "(loop, bench)" when no tunegate frame is on it.
``--within`` keeps only the samples whose stack holds that text (default ``_timing.py``:
the timed loops; ``tunegate_throughput`` for figure 4), ``--without`` drops those holding
that text (default ``_warm_emulator``: figure 4's untimed pass).
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_MODULE = re.compile(r"\((tunegate/[^:]+)")


def shares(path: Path, within: str, without: str) -> tuple[int, collections.Counter[str]]:
    by: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if within not in stack or without in stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        ours = [i for i, f in enumerate(frames) if "tunegate/" in f and "emulator" not in f]
        if not ours:
            by["(loop, bench)"] += n
            continue
        below = ";".join(frames[ours[-1] + 1 :])
        if "aiohttp/" in below or "asyncio/selector_events" in below:
            by["(aiohttp)"] += n
            continue
        found = _MODULE.search(frames[ours[-1]])
        by[found.group(1) if found else frames[ours[-1]]] += n
    return total, by


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--within", default="_timing.py")
    parser.add_argument("--without", default="_warm_emulator")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, by = shares(args.profile, args.within, args.without)
    print(f"{total} samples within {args.within!r}")
    for name, n in by.most_common(args.top):
        print(f"{100 * n / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
