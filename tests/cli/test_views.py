"""What a user sees and what a machine reads around a run: pending rows, the terminal view,
JSON logs, breaker openings in the summary, and what the help screens import."""

from __future__ import annotations

import base64
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.cli.test_cli import TUNEGATE, records, run
from tunegate._cli_run import summary_lines
from tunegate.emulator import Emulator

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def test_a_long_retry_after_leaves_rows_pending(tmp_path: Path) -> None:
    """Spotify's search asks for a 5 h wait: the rows are not waited for but recorded
    ``pending`` with ``retry_at``, the run exits 1, and both summaries count them."""
    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\nMuse,Psycho\nU2,One\n")
    with Emulator(catalog_size=200, seed=3, faults="spotify/search:error=429,retry_after=5h") as e:
        env = e.env()
        env.pop("MUSICBRAINZ_USER_AGENT")  # not needed here; its 1 request/s is slow
        before = time.time()
        result = run(
            ["enrich", str(inp), "-o", "o.jsonl", "--cache", "memory", "--summary-json", "s.json"],
            tmp_path,
            env=env,
        )
        searches = e.stats()["requests"]["spotify"]["endpoints"]["search"]["total"]
    assert result.returncode == 1, result.stderr
    recs = records(tmp_path / "o.jsonl")
    assert [r["status"] for r in recs] == ["partial", "partial"]  # Last.fm answered
    for rec in recs:
        part = rec["providers"]["spotify"]
        assert part["status"] == "pending"
        wait = datetime.fromisoformat(part["retry_at"]).timestamp() - before
        assert 5 * 3600 - 120 <= wait <= 5 * 3600 + 120, part
        assert rec["providers"]["lastfm"]["status"] == "found"
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    spotify = summary["providers"]["spotify"]
    assert spotify["statuses"]["pending"] == 2
    assert spotify["pauses"] == 2
    assert spotify["calls"] == searches  # what reached the emulator's search
    assert summary["status"]["partial"] == 2
    assert re.search(r"spotify: .* 2 pending;", result.stderr), result.stderr


def _run_in_a_terminal(
    args: list[str], cwd: Path, cols: int, extra_env: dict[str, str] | None = None
) -> tuple[int, str]:
    """The command under a pseudo-terminal of ``cols`` columns; what it drew (escape
    sequences removed) and its exit code. Bounded: 120 s."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    drop = ("COLUMNS", "LINES", "NO_COLOR", "SPOTIFY_", "LASTFM_", "MUSICBRAINZ_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra_env or {})
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [*TUNEGATE, *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(timeout=30), ANSI.sub("", out.decode("utf-8", "replace"))


def test_terminal_view_live_lines_and_an_unwrapped_summary(tmp_path: Path) -> None:
    rc, drawn = _run_in_a_terminal(
        ["enrich", "--sandbox", "--rows", "20", "--cache", "memory", "--concurrency", "1"],
        tmp_path,
        cols=160,
    )
    assert rc == 0, drawn
    lines = [line for line in re.split(r"[\r\n]", drawn) if line.strip()]
    bars = [line for line in lines if line.startswith("enrich ") and "/20" in line]
    assert any("━" in line for line in bars), lines[:10]
    # Redrawn while it works: the bar shows more than the start and the end.
    assert len({line.split("/20")[0].split()[-1] for line in bars}) > 2, bars
    live = [line for line in lines if re.match(r"\s+spotify\s+[\d.]+ calls/s", line)]
    assert live
    assert all("cache" in line and "breaker closed" in line for line in live)
    # The end summary: one line per provider, wider than 80 columns and not broken.
    assert any(line.startswith("20 rows in ") for line in lines)
    ends = [line for line in lines if line.startswith("  spotify: ")]
    assert len(ends) == 1
    assert len(ends[0]) > 80
    assert "breaker closed, opened 0x, 0 rejected; errors: none" in ends[0]
    assert "checked: every one of the 20 input rows has one record" in lines[-1]


def test_terminal_view_shows_a_paused_provider(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("artist,title\nMuse,Psycho\nU2,One\n")
    with Emulator(catalog_size=200, seed=3, faults="spotify/search:error=429,retry_after=5h") as e:
        env = e.env()
        env.pop("MUSICBRAINZ_USER_AGENT")
        args = ["enrich", "in.csv", "-o", "o.jsonl", "--cache", "memory", "--concurrency", "1"]
        rc, drawn = _run_in_a_terminal(args, tmp_path, cols=120, extra_env=env)
    assert rc == 1, drawn
    lines = [line for line in re.split(r"[\r\n]", drawn) if line.strip()]
    live = [line for line in lines if re.match(r"\s+spotify\s+[\d.]+ calls/s", line)]
    assert live[-1].endswith("paused (2 pending)"), live[-1]
    assert not any("paused" in line for line in lines if re.match(r"\s+lastfm\s+[\d.]", line))


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run with Spotify and Last.fm answering 503 to everything, logs as JSON."""
    tmp = tmp_path_factory.mktemp("outage")
    inp = tmp / "in.csv"
    inp.write_text("artist,title\n" + "".join(f"Muse,Song {i}\n" for i in range(8)))
    with Emulator(catalog_size=200, seed=3, faults="*:error=503") as e:
        env = e.env()
        env.pop("MUSICBRAINZ_USER_AGENT")
        result = run(
            [
                "enrich",
                str(inp),
                "-o",
                "o.jsonl",
                "--cache",
                "memory",
                "--concurrency",
                "1",
                "--summary-json",
                "s.json",
                "--log-format",
                "json",
                "--progress-every",
                "0.2",
            ],
            tmp,
            env=env,
        )
        seen = e.stats()["requests"]
    return {
        "result": result,
        "env": env,
        "summary": orjson.loads((tmp / "s.json").read_bytes()),
        "seen": seen,
    }


def test_json_logs_are_one_object_a_line_with_the_run_id_and_no_secret(
    outage: dict[str, Any],
) -> None:
    result, env = outage["result"], outage["env"]
    assert result.returncode == 1
    items = [orjson.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert items
    assert all(isinstance(i, dict) for i in items)
    for item in items:
        assert {"time", "level", "logger", "event", "correlation_id"} <= item.keys(), item
    run_id = outage["summary"]["correlation_id"]
    assert run_id
    assert {i["correlation_id"] for i in items} == {run_id}
    pipeline = [i for i in items if i["logger"] == "tunegate.pipeline"]
    assert any(i.get("provider") == "lastfm" and i.get("status") == 503 for i in pipeline)
    progress = [i["progress"] for i in items if "progress" in i]
    assert progress
    assert all(p["total"] == 8 and p["done"] <= 8 for p in progress)
    assert {p["providers"]["lastfm"]["breaker_state"] for p in progress} <= {"closed", "open"}
    assert "musicbrainz" not in progress[-1]["providers"]  # not configured in this run
    (end,) = [i for i in items if "summary" in i]
    assert end["summary"]["status"] == outage["summary"]["status"]
    basic = base64.b64encode(
        f"{env['SPOTIFY_CLIENT_ID']}:{env['SPOTIFY_CLIENT_SECRET']}".encode()
    ).decode()
    for secret in (env["SPOTIFY_CLIENT_SECRET"], env["LASTFM_API_KEY"], basic):
        assert secret not in result.stderr


def test_every_row_failed_exits_1_and_the_summary_counts_breaker_openings(
    outage: dict[str, Any],
) -> None:
    result, summary = outage["result"], outage["summary"]
    assert result.returncode == 1
    assert summary["status"]["failed"] == 8
    lastfm = summary["providers"]["lastfm"]
    # Each breaker opened once (the run is shorter than its open timeout) and stayed open;
    # the rows after it were refused without a call. Spotify's token endpoint failed, so
    # its accounts breaker opened, not the API's.
    assert summary["breakers"]["lastfm"] == {"opened": 1, "state": "open"}
    assert summary["breakers"]["spotify:accounts"] == {"opened": 1, "state": "open"}
    assert summary["breakers"]["spotify"] == {"opened": 0, "state": "closed"}
    assert lastfm["breaker_opened"] == 1
    assert lastfm["breaker_state"] == "open"
    assert lastfm["breaker_rejections"] >= 1
    assert lastfm["calls"] == outage["seen"]["lastfm"]["total"]
    # The text summary (what a run without --log-format json prints) says the same.
    lines = summary_lines(summary)
    (spotify_line,) = [line for line in lines if line.startswith("  spotify: ")]
    (lastfm_line,) = [line for line in lines if line.startswith("  lastfm: ")]
    assert "breaker open, opened 1x" in lastfm_line
    assert "breaker closed, opened 0x" in spotify_line
    assert spotify_line.endswith("; accounts breaker open, opened 1x")


def test_help_screens_do_not_import_the_emulator(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from tunegate.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('EMULATOR' if 'tunegate.emulator' in sys.modules else 'NO-EMULATOR')\n"
    )
    for args in (["--help"], ["enrich", "--help"], ["--version"]):
        out = subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip().endswith("NO-EMULATOR"), (args, out.stdout[-200:])
    faults = run(["emulator", "--help"], tmp_path, env={"COLUMNS": "200"}).stdout
    assert "Durations D: 300ms" in faults
    assert "spotify/search:error=503@0.2,latency=300ms" in faults


def test_sources_per_provider_are_counted_in_the_summary(tmp_path: Path) -> None:
    """Two runs over one cache file: the second's answers come from the cache, and the
    summary's counts equal the records' own ``sources``."""
    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\nMuse,Psycho\nU2,One\n")
    with Emulator(catalog_size=200, seed=3) as e:
        env = e.env()
        env.pop("MUSICBRAINZ_USER_AGENT")
        for name in ("a", "b"):
            result = run(
                [
                    *("enrich", str(inp), "-o", f"{name}.jsonl", "--cache", "c.db"),
                    "--summary-json",
                    f"{name}.json",
                ],
                tmp_path,
                env=env,
            )
            assert result.returncode == 0, result.stderr
    second = records(tmp_path / "b.jsonl")
    assert "sources" in second[0]
    summary = orjson.loads((tmp_path / "b.json").read_bytes())
    for provider in ("spotify", "lastfm"):
        counted = summary["providers"][provider]["sources"]
        mine = [r["sources"][provider] for r in second if provider in r["sources"]]
        assert counted == {s: mine.count(s) for s in ("api", "cache", "stale")}, provider
        assert counted["cache"] == 2, provider


def test_every_command_and_group_has_an_example_in_its_help() -> None:
    """Walks the command tree, so a command added later is checked too."""
    import typer
    from typer.testing import CliRunner

    from tunegate.cli import app

    runner = CliRunner()
    paths: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    assert ["cache", "invalidate"] in paths
    assert ["breaker", "reset"] in paths
    assert ["config", "show"] in paths
    for path in paths:
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert out.exit_code == 0, (path, out.output)
        assert "Example: tunegate " in out.output, path


def test_help_paragraphs_are_reflowed_not_broken_where_the_source_was() -> None:
    """rich keeps hard line breaks: a paragraph broken for the source would come out
    ragged. On a terminal wide enough each paragraph is one line."""
    from typer.testing import CliRunner

    from tunegate.cli import app

    runner = CliRunner()
    root = runner.invoke(app, ["--help"], env={"COLUMNS": "2000"}).output
    enrich = runner.invoke(app, ["enrich", "--help"], env={"COLUMNS": "2000"}).output
    assert "input-file error; 130 interrupted (Ctrl+C)." in root
    assert "optional isrc and spotify_id. A row that cannot be read (broken quoting" in enrich
    assert "TUNEGATE_LASTFM_URL point them elsewhere (see 'tunegate emulator')" in enrich
