"""Resident memory of the memory backend, in a fresh process (run by ``bench/run``).

``ratio N``: RSS growth of a ``CacheManager.memory`` holding N search responses, over the RSS
growth of a dict holding the same body bytes (each measured in its own child process). The
dict's bytes are right-sized, as a body read from a socket is; ``dict_orjson`` beside it
holds ``orjson.dumps`` output as is, whose buffer (orjson 3.12+) is several times its length.
``bound N [MiB]``: RSS growth of filling a ``max_bytes`` cache (64 MiB unless given) with N
responses (far more than fit), over ``max_bytes``. Prints one JSON object.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from typing import Any

import orjson
import psutil


def body(i: int) -> dict[str, Any]:
    """A Spotify search answer of 3 tracks, about 4 KB of JSON like the anchors' body."""
    return {
        "tracks": {
            "href": f"https://api.spotify.com/v1/search?query=track%3Asong+{i}&type=track",
            "items": [
                {
                    "album": {
                        "album_type": "album",
                        "artists": [{"id": f"{i:022d}", "name": f"Artist {i}", "type": "artist"}],
                        "id": f"{i + j:022d}",
                        "images": [
                            {"height": h, "url": f"https://i.scdn.co/image/{i:040x}{h}", "width": h}
                            for h in (640, 300, 64)
                        ],
                        "name": f"Album {i}",
                        "release_date": "1999-01-01",
                        "total_tracks": 10,
                    },
                    "artists": [{"id": f"{i:022d}", "name": f"Artist {i}", "type": "artist"}],
                    "available_markets": ["US", "GB", "DE", "FR", "SE", "JP"],
                    "duration_ms": 200_000 + i % 1000,
                    "explicit": False,
                    "external_ids": {"isrc": f"USRC1{i:07d}"},
                    "id": f"{i * 3 + j:022d}",
                    "name": f"Song {i} ({j})",
                    "popularity": i % 100,
                    "track_number": j + 1,
                    "uri": f"spotify:track:{i * 3 + j:022d}",
                }
                for j in range(3)
            ],
            "limit": 3,
            "offset": 0,
            "total": 3,
        }
    }


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def child(mode: str, n: int, cap_mib: int = 64) -> None:
    from tunegate import CacheManager

    body_bytes = 0
    before = rss()
    if mode in ("dict", "dict_orjson"):
        d = {}
        for i in range(n):
            payload = orjson.dumps(body(i))
            body_bytes += len(payload)
            d[f"spotify:search:{i}"] = (
                payload if mode == "dict_orjson" else bytes(memoryview(payload))
            )
        grown = rss() - before
    else:
        cap = cap_mib * 1024 * 1024 if mode == "bound" else 1 << 40
        cache = CacheManager.memory(max_entries=10 * n, max_bytes=cap)
        for i in range(n):
            payload = orjson.dumps(body(i))
            body_bytes += len(payload)
            # Decoded from bytes, as a real response is: no strings shared with the literals.
            cache.store(cache.key("spotify:search", str(i)), orjson.loads(payload))
        grown = rss() - before
    print(json.dumps({"grown": grown, "body_bytes": body_bytes}))


def start_child(mode: str, n: int, cap_mib: int = 64) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "child", mode, str(n), str(cap_mib)],
        stdout=subprocess.PIPE,
        text=True,
    )


def result_of(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, _ = proc.communicate(timeout=900)
    if proc.returncode:
        raise RuntimeError(f"memory probe child exited with {proc.returncode}")
    result: dict[str, int] = json.loads(out)
    return result


def main() -> None:
    if sys.argv[1] == "child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    mode, n = sys.argv[1], int(sys.argv[2])
    if mode == "ratio":
        # The children at once (each measures only its own RSS): a third of the wall time.
        procs = {m: start_child(m, n) for m in ("cache", "dict", "dict_orjson")}
        tg, dct, raw = (result_of(p) for p in procs.values())
        ratio = tg["grown"] / dct["grown"]
        print(json.dumps({"ratio": ratio, "tunegate": tg, "dict": dct, "dict_orjson": raw}))
    else:
        cap_mib = int(sys.argv[3]) if len(sys.argv) > 3 else 64
        tg = result_of(start_child("bound", n, cap_mib))
        print(json.dumps({"ratio": tg["grown"] / (cap_mib * 1024 * 1024), "tunegate": tg}))


if __name__ == "__main__":
    main()
