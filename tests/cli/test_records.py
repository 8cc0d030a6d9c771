"""Records and exit codes through the command: match methods from the optional columns,
Last.fm's "no tags" against "unknown", exit 0 for ok and not_found, numeric options and
unreadable input refused before any call, a stale lock taken over, and the sandbox's cache
in Redis."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import orjson
import pytest
import redis

from tests.cli.test_cli import records, run
from tunegate.emulator import Emulator

FAKE_ISRC = "QZZZZ2699999"  # well formed, in no catalogue


def _pick(emu: Emulator) -> tuple[list[int], list[int]]:
    """Tracks on every provider with one artist and a plain title: with tags, without."""
    tagged: list[int] = []
    untagged: list[int] = []
    for i in range(emu.catalog.size):
        t = emu.catalog.track(i)
        plain = len(t.artists) == 1 and t.title == t.display_title
        if plain and t.spotify_id and t.mbid and t.on_lastfm:
            (tagged if t.tags else untagged).append(i)
    return tagged, untagged


def test_methods_columns_no_tags_and_exit_0(tmp_path: Path) -> None:
    """Spotify by id, by ISRC and by search; MusicBrainz by ISRC and by fallback; Last.fm
    "found, no tags" apart from "not_found"; every row ok or not_found gives exit 0. A lock
    file left by a killed run is taken over and removed."""
    with Emulator(catalog_size=200, seed=3, rate_limits=False) as emu:
        tagged, untagged = _pick(emu)
        assert len(tagged) >= 3
        assert untagged
        cat = emu.catalog

        def names(i: int) -> tuple[str, str]:
            t = cat.track(i)
            return cat.artist(t.artists[0]).name, t.title

        by_id, by_isrc, fallback, no_tags = tagged[0], tagged[1], tagged[2], untagged[0]
        inp = tmp_path / "in.csv"
        with inp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["Artist Name", "Track Name", "ISRC", "Spotify ID"])  # synonyms
            w.writerow([*names(by_id), "", cat.track(by_id).spotify_id])
            w.writerow([*names(by_isrc), cat.track(by_isrc).isrc, ""])
            w.writerow([*names(fallback), FAKE_ISRC, ""])
            w.writerow([*names(no_tags), "", ""])
            w.writerow(["Nobody Anywhere", "Zzyzx Qwerty", "", ""])
        (tmp_path / ".out.jsonl.lock").write_text("")  # no process holds it
        env = {**emu.env(), "TUNEGATE_MUSICBRAINZ_RATE": "50"}
        result = run(["enrich", str(inp), "-o", "out.jsonl", "--cache", "memory"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".out.jsonl.lock").exists()
    recs = records(tmp_path / "out.jsonl")
    assert [r["status"] for r in recs] == ["ok", "ok", "ok", "ok", "not_found"]
    first, second, third, fourth, fifth = recs
    assert first["match"]["spotify"]["method"] == "id"
    assert first["spotify"]["id"] == cat.track(by_id).spotify_id
    assert first["match"]["musicbrainz"]["method"] == "isrc"
    assert first["musicbrainz"]["id"] == cat.track(by_id).mbid
    assert second["match"]["spotify"]["method"] == "isrc"
    assert second["spotify"]["isrc"] == cat.track(by_isrc).isrc
    assert third["providers"]["spotify"]["status"] == "not_found"
    assert third["match"]["musicbrainz"]["method"] == "fallback"
    assert third["musicbrainz"]["id"] == cat.track(fallback).mbid
    for rec in (first, second, third):
        assert rec["match"]["musicbrainz"]["score"] == 1.0
        assert rec["lastfm_tags"]
    assert fourth["providers"]["lastfm"] == {"status": "found", "tags": 0}
    assert fourth["lastfm_tags"] == []
    assert fourth["match"]["spotify"]["method"] == "search"
    assert {p["status"] for p in fifth["providers"].values()} == {"not_found"}
    assert fifth["match"] == {}
    assert fifth["lastfm_tags"] is None  # unknown, where fourth has [] (known, no tags)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--concurrency", "0", "concurrency (from the command line): Input should be greater"),
        ("--concurrency", "5000", "concurrency (from the command line): Input should be less"),
        ("--progress-every", "0", "progress_every (from the command line)"),
        ("--format", "xml", "format (from the command line): Input should be 'jsonl' or 'csv'"),
    ],
)
def test_bad_option_values_exit_2_before_any_call(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    (tmp_path / "in.csv").write_text("artist,title\nMuse,Psycho\n")
    with Emulator(catalog_size=50, seed=3) as emu:
        result = run(["enrich", "in.csv", "-o", "o.jsonl", option, value], tmp_path, emu.env())
        seen = emu.stats()["requests"]
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(p["total"] for p in seen.values()) == 0
    assert not (tmp_path / "o.jsonl").exists()


def test_unreadable_input_is_refused_before_any_call(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_bytes(b"artist,title\nMuse,Psycho\nU2,\xe9One\n")  # Latin-1
    with Emulator(catalog_size=50, seed=3) as emu:
        result = run(
            ["enrich", "in.csv", "-o", "o.jsonl", "--cache", "memory"], tmp_path, emu.env()
        )
        seen = emu.stats()["requests"]
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1].startswith("error: in.csv: line 3 is not UTF-8 text")
    )
    assert sum(p["total"] for p in seen.values()) == 0


def test_sandbox_with_redis_keeps_its_cache_in_redis(tmp_path: Path, redis_url: str) -> None:
    """Two sandbox runs with --redis: the second is served from Redis (no API request
    reaches its emulator) and no SQLite cache file is made."""
    for name in ("a", "b"):
        # A seed of this test's own: its emulator's stats count this test's requests only.
        seed = str(os.getpid() % 50_000 + 100_000)
        args = ["enrich", "--sandbox", "--sandbox-seed", seed, "--rows", "8", "--redis", redis_url]
        result = run([*args, "-o", f"{name}.jsonl", "--summary-json", f"{name}.json"], tmp_path)
        assert result.returncode == 0, result.stderr
    second = orjson.loads((tmp_path / "b.json").read_bytes())
    calls = {(p, ep) for p, eps in second["emulator_requests"].items() for ep in eps}
    assert calls <= {("spotify", "token")}, calls
    a, b = records(tmp_path / "a.jsonl"), records(tmp_path / "b.jsonl")
    # The same records, but for where the answers came from (once records carry it).
    b_sources = {s for r in b for s in r.pop("sources", {}).values()}
    a_sources = {s for r in a for s in r.pop("sources", {}).values()}
    assert b_sources <= {"cache"}
    assert a_sources <= {"api", "cache"}
    assert a == b
    assert not (tmp_path / ".tunegate" / "sandbox" / "cache.db").exists()
    client = redis.Redis.from_url(redis_url)
    try:
        assert any(client.scan_iter(match="tunegate:*:lastfm:*", count=1000))
    finally:
        client.close()


def test_emulator_port_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run(["emulator", "--port", str(port), "--catalog-size", "50"], tmp_path)
    assert busy.returncode == 2
    assert busy.stderr.startswith(f"error: emulator: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in busy.stderr
    for bad in ("-1", "70000"):
        out = run(["emulator", "--port", bad], tmp_path, env={"COLUMNS": "200"})
        assert out.returncode == 2, bad
        assert "Invalid value for '--port'" in out.stderr
