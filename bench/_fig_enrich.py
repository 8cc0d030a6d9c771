"""Figure 8: ``tunegate enrich`` of N catalogue rows against the emulator at real quotas
(its own HTTPS emulator process, quotas enforced), elapsed over the quota bound, and the
same rows through the plain sequential spotipy + musicbrainzngs + pylast script.

Quota bound = max over providers of (upstream calls the run made - the burst the client's
bucket may spend at once) / the provider's rate, with the client defaults from
``tunegate.providers.spec`` (Spotify 10/s, MusicBrainz 1/s, Last.fm 5/s, each with a burst of 1)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _ctx import Ctx
from _infra import EmulatorProcess, child_env, here

from tunegate.providers.spec import SPECS

# The client-side rate and burst per provider: the specs the clients default to.
RATES = {p: (SPECS[p].rate, SPECS[p].capacity) for p in ("spotify", "musicbrainz", "lastfm")}
FIRST_ROW = 5000  # catalogue rows no other figure touches
ROWS = {True: 5, False: 40}  # by --quick


def _calls(emu: EmulatorProcess) -> dict[str, int]:
    requests = emu.stats()["requests"]
    out = {}
    for name in RATES:
        endpoints = requests.get(name, {}).get("endpoints", {})
        # the token endpoint is not the API's quota
        out[name] = sum(v["total"] for k, v in endpoints.items() if "token" not in k)
    return out


def run(ctx: Ctx) -> dict[str, Any]:
    n = ROWS[ctx.quick]
    emu = EmulatorProcess(rate_limits=True, tls=True)
    try:
        with tempfile.TemporaryDirectory(prefix="tunegate-bench-enrich-") as tmp:
            src = Path(tmp) / "rows.csv"
            with src.open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["artist", "title"])
                for i in range(FIRST_ROW, FIRST_ROW + n):
                    t = ctx.catalog.describe_track(i)
                    w.writerow([t["artists"][0], t["title"]])
            env = child_env() | emu.env
            assert emu.ca is not None
            env |= {"SSL_CERT_FILE": emu.ca, "REQUESTS_CA_BUNDLE": emu.ca}
            env["XDG_CACHE_HOME"] = tmp  # nothing of ours outside tmp
            env.pop("TUNEGATE_REDIS_URL", None)

            emu.reset()
            summary = Path(tmp) / "summary.json"
            cmd = [sys.executable, "-m", "tunegate", "enrich", str(src), "-o"]
            cmd += [str(Path(tmp) / "tg.jsonl"), "--cache", "memory", "--quiet"]
            cmd += ["--summary-json", str(summary)]
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, timeout=600, cwd=tmp)
            wall = time.perf_counter() - t0
            data = json.loads(summary.read_text())
            elapsed = float(data.get("elapsed_s", wall))
            calls = _calls(emu)
            bound = max(max(0, calls[p] - burst) / rate for p, (rate, burst) in RATES.items())

            emu.reset()
            plain = subprocess.run(
                [
                    sys.executable,
                    str(here() / "_plain_enrich.py"),
                    str(src),
                    str(Path(tmp) / "plain.jsonl"),
                ],
                env=env,
                check=True,
                timeout=900,
                capture_output=True,
                text=True,
                cwd=tmp,
            )
            plain_elapsed = float(json.loads(plain.stdout.splitlines()[-1])["elapsed"])
            plain_calls = _calls(emu)
    finally:
        emu.close()
    return {
        "rows": n,
        "elapsed": elapsed,
        "wall_with_start": wall,
        "bound": bound,
        "calls": calls,
        "status": data.get("status"),
        "plain_elapsed": plain_elapsed,
        "plain_calls": plain_calls,
    }
