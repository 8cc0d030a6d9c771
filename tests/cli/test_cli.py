"""``tunegate`` as a user runs it: subprocesses against the emulator (few rows: the machine
is slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tunegate.emulator import Emulator
from tunegate.enrich import read_rows

TUNEGATE = [sys.executable, "-m", "tunegate"]


def run(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "LASTFM_"))}
    full.update(env or {})
    return subprocess.run(
        [*TUNEGATE, *args],
        cwd=cwd,
        env=full,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(catalog_size=200, seed=3) as e:
        yield e


# -- input, read in-process (no network) ---------------------------------------------------


def test_broken_quote_is_one_invalid_row_and_the_next_rows_survive(tmp_path: Path) -> None:
    p = tmp_path / "in.csv"
    p.write_text('artist,title\ndeadmau5,Strobe\nMuse,"Hysteria\nMuse,Psycho\nU2,One,x\nU2,One\n')
    rows = list(read_rows(p))
    assert [(r.line, r.artist, r.title, r.error is None) for r in rows] == [
        (2, "deadmau5", "Strobe", True),
        (3, "", "", False),
        (4, "Muse", "Psycho", True),
        (5, "", "", False),
        (6, "U2", "One", True),
    ]
    assert rows[1].error is not None
    assert "line 3" in rows[1].error
    assert rows[3].error is not None
    assert "3 fields" in rows[3].error


def test_jsonl_bad_line_and_synonyms(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_bytes(b'{"Artist Name":"Muse","track":"Psycho","ISRC":"GBAHT1500001"}\n{oops\n\n[1]\n')
    rows = list(read_rows(p))
    assert (rows[0].artist, rows[0].title, rows[0].isrc) == ("Muse", "Psycho", "GBAHT1500001")
    assert [r.line for r in rows] == [1, 2, 4]
    assert rows[1].error == "line 2: not a JSON object"
    assert rows[2].error == "line 4: not a JSON object"


def test_tsv_is_sniffed_and_headers_are_forgiving(tmp_path: Path) -> None:
    p = tmp_path / "tracks.txt"
    p.write_text("ARTIST NAME\tSong_Name\tSpotify ID\nMuse\tPsycho, live\t4abc\n")
    (row,) = read_rows(p)
    assert (row.artist, row.title, row.spotify_id, row.line) == ("Muse", "Psycho, live", "4abc", 2)


# -- the command ---------------------------------------------------------------------------


def test_version_and_help_have_an_example(tmp_path: Path) -> None:
    from tunegate import __version__

    assert run(["--version"], tmp_path).stdout.strip() == f"tunegate {__version__}"
    for cmd in ([], ["enrich"], ["emulator"]):
        out = run([*cmd, "--help"], tmp_path)
        assert out.returncode == 0
        assert "Example:" in out.stdout, cmd
    assert "130" in run(["enrich", "--help"], tmp_path).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "missing.csv: no such input file"),
        (["."], "is a directory"),
        (["in.csv", "-o", "afile/out.jsonl"], "afile is not a directory"),
        (["-", "--rows", "0"], "--rows"),
    ],
)
def test_bad_paths_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "in.csv").write_text("artist,title\nMuse,Psycho\n")
    (tmp_path / "afile").write_text("")
    key = "0123456789abcdef" * 2
    out = run(["enrich", *args], tmp_path, env={"LASTFM_API_KEY": key})
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_run_against_the_emulator_records_and_summary_match_its_stats(
    tmp_path: Path, emu: Emulator
) -> None:
    """Mixed input on stdin: exit 1 for the invalid rows, one record per row, the summary's
    upstream calls equal the emulator's count, and no lock file is left."""
    track = emu.catalog.track(0)
    artist = emu.catalog.artist(track.artists[0]).name
    text = f'artist,title\n{artist},{track.title}\nMuse,"Hyst\nNobody Anywhere,Zzyzx Qwerty\n'
    emu.reset_stats()
    out = tmp_path / "out.jsonl"
    result = run(
        ["enrich", "-", "-o", str(out), "--cache", "memory", "--summary-json", "s.json"],
        tmp_path,
        env=emu.env(),
        stdin=text.encode(),
    )
    assert result.returncode == 1, result.stderr
    recs = records(out)
    assert [(r["line"], r["status"]) for r in recs] == [(2, "ok"), (3, "invalid"), (4, "not_found")]
    assert recs[0]["match"]["spotify"]["method"] == "search"
    assert recs[0]["providers"]["lastfm"]["status"] == "found"
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["one_record_per_row"] is True
    assert summary["status"]["invalid"] == 1
    seen = emu.stats()["requests"]
    for name in ("musicbrainz", "lastfm"):
        assert summary["providers"][name]["calls"] == seen[name]["total"], name
    # Spotify's token request reaches the emulator but is not an API call of the client.
    assert summary["providers"]["spotify"]["calls"] <= seen["spotify"]["total"]
    assert "checked: every one of the 3 input rows has one record" in result.stderr
    assert not list(tmp_path.glob(".*.lock"))


def test_failed_rows_exit_1_and_csv_output(tmp_path: Path, emu: Emulator) -> None:
    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\nMuse,Psycho\n")
    env = {**emu.env(), "TUNEGATE_LASTFM_URL": "http://127.0.0.1:9/2.0/"}
    env.pop("SPOTIFY_CLIENT_ID")  # Spotify skipped, MusicBrainz asked, Last.fm unreachable
    out = tmp_path / "out.csv"
    result = run(
        ["enrich", str(inp), "-o", str(out), "--cache", "memory", "--format", "csv"],
        tmp_path,
        env=env,
    )
    assert result.returncode == 1, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("row,line,status,artist,title,spotify_status")
    assert ",skipped," in lines[1]
    assert ",error," in lines[1]


def test_without_a_terminal_progress_is_logged_while_it_works(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            [
                *TUNEGATE,
                "enrich",
                "--sandbox",
                "--rows",
                "40",
                "--cache",
                "memory",
                "--concurrency",
                "1",
                "--progress-every",
                "0.3",
                "-o",
                "o.jsonl",
            ],
            cwd=tmp_path,
            stderr=f,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "enrich " not in log.read_text():
            time.sleep(0.1)
        during = log.read_text()
        assert proc.wait(timeout=120) == 0
    assert "INFO tunegate.cli: enrich " in during
    assert "/40 " in during
    assert all(len(line) < 1000 for line in log.read_text().splitlines())


def test_sandbox_second_run_is_served_from_cache(tmp_path: Path) -> None:
    # A seed of this test's own: other runs on the machine share the default sandbox.
    seed = str(os.getpid() % 50_000 + 50_000)
    for name in ("a", "b"):
        result = run(
            [
                "enrich",
                "--sandbox",
                "--sandbox-seed",
                seed,
                "--rows",
                "12",
                "-o",
                f"{name}.jsonl",
                "--summary-json",
                f"{name}.json",
            ],
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
    first = orjson.loads((tmp_path / "a.json").read_bytes())
    second = orjson.loads((tmp_path / "b.json").read_bytes())
    assert first["emulator_requests"]["lastfm"]
    # The new emulator's Spotify token is fetched again; no API request reaches it.
    calls = {(p, ep) for p, eps in second["emulator_requests"].items() for ep in eps}
    assert calls <= {("spotify", "token")}, calls
    assert second["providers"]["lastfm"]["calls"] == 0
    assert records(tmp_path / "a.jsonl") == records(tmp_path / "b.jsonl")


def test_ctrl_c_exits_130_and_removes_the_lock(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            *TUNEGATE,
            "enrich",
            "--sandbox",
            "--rows",
            "300",
            "--cache",
            "memory",
            "--concurrency",
            "1",
            "-o",
            "o.jsonl",
        ],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    out = tmp_path / "o.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size == 0):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert not list(tmp_path.glob(".*.lock"))


def test_emulator_prints_the_export_block(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*TUNEGATE, "emulator", "--catalog-size", "50", "--print-env"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(8)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    env = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    assert env["SPOTIFY_CLIENT_ID"]
    assert env["LASTFM_API_KEY"]
    assert env["TUNEGATE_LASTFM_URL"].startswith("http://127.0.0.1:")
