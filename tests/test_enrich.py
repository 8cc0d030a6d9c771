"""``tunegate enrich``: the batch job, against the sandbox emulator."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tunegate.clients import AsyncGateway
from tunegate.enrich import Providers, enrich, read_rows, scan_output
from tunegate.exceptions import ConfigurationError
from tunegate.sandbox import sandbox, write_sample_input


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def run_enrich(tmp_path: Path, input_path: Path, output: Path, **kw: Any) -> Any:
    async def go() -> Any:
        async with AsyncGateway(settings, cache_manager=None) as gateway:
            return await enrich(Providers.of(gateway), input_path, output, **kw)

    with sandbox() as (_emu, settings):
        return asyncio.run(go())


def test_sample_run_joins_the_three_providers(tmp_path: Path) -> None:
    """Every row gets a record; a well-known track is joined through its ISRC."""
    with sandbox() as (emu, _):
        inp = write_sample_input(emu, tmp_path / "in.csv", rows=30)
    out = tmp_path / "out.jsonl"
    summary = run_enrich(tmp_path, inp, out)
    recs = records(out)
    assert [r["row"] for r in recs] == sorted(r["row"] for r in recs)
    assert len(recs) == summary.total == 30
    strobe = [r for r in recs if r["input"]["title"].lower() == "strobe"]
    assert strobe, "the sample starts with the catalogue's real tracks"
    s = strobe[0]
    assert s["status"] == "ok"
    assert s["spotify"]["isrc"]
    assert s["musicbrainz"]["id"]
    assert s["lastfm_tags"]
    missing = recs[-1]
    assert missing["input"]["artist"] == "Nobody Anywhere"
    assert missing["spotify"] is None
    assert missing["status"] == "not_found"
    assert missing["providers"]["lastfm"] == {"status": "not_found"}
    assert missing["lastfm_tags"] is None
    assert s["match"]["spotify"]["method"] == "search"
    assert s["match"]["musicbrainz"]["method"] == "isrc"
    assert s["match"]["spotify"]["score"] > 0.9
    assert summary.complete


def test_resume_skips_done_rows_and_cuts_a_torn_line(tmp_path: Path) -> None:
    """A re-run after a kill mid-write writes only the missing rows, one record per row."""
    with sandbox() as (emu, _):
        inp = write_sample_input(emu, tmp_path / "in.csv", rows=12)
    out = tmp_path / "out.jsonl"
    run_enrich(tmp_path, inp, out)
    full = records(out)
    # As if killed: only the first 5 records, and half of the 6th.
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    summary = run_enrich(tmp_path, inp, out)
    assert summary.skipped == 5
    assert sum(summary.status.values()) == 7
    assert records(out) == full


def test_killed_process_resumes_to_a_complete_output(tmp_path: Path) -> None:
    """SIGKILL in the middle of a real run leaves an output that a re-run completes: no
    row lost, none doubled, and the rows finished before the kill are neither asked again
    nor rewritten (the summary counts them as already done)."""
    with sandbox() as (emu, _):
        inp = write_sample_input(emu, tmp_path / "in.csv", rows=60)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "tunegate", "enrich", str(inp), "-o", str(out), "--sandbox"]
    cmd += ["--cache", str(tmp_path / "cache.db"), "--concurrency", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 5:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    # Whole lines only (a torn last line is the resume's to cut off).
    kept = [orjson.loads(line) for line in out.read_bytes().split(b"\n")[:-1] if line.strip()]
    assert 5 <= len(kept) < 60
    done_before = {r["row"]: r for r in kept if r["status"] in ("ok", "not_found")}
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [*cmd, "--summary-json", str(summary)], capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    recs = records(out)
    assert [r["row"] for r in recs] == list(range(60))  # each row once, none lost
    assert orjson.loads(summary.read_bytes())["already_done"] == len(done_before)
    for r in recs:
        if r["row"] in done_before:
            assert r == done_before[r["row"]]


def test_rows_without_artist_fail_without_a_call(tmp_path: Path) -> None:
    """A blank artist is recorded as an input error; the job carries on."""
    inp = tmp_path / "in.csv"
    inp.write_text("Artist,Title\n,Strobe\ndeadmau5,Strobe\n")
    out = tmp_path / "out.jsonl"
    run_enrich(tmp_path, inp, out)
    bad, good = records(out)
    assert bad["status"] == "invalid"
    assert "artist" in bad["errors"]["input"]
    assert good["status"] == "ok"
    assert good["spotify"] is not None


def test_input_without_columns_is_a_clear_error(tmp_path: Path) -> None:
    """A CSV without an artist column names the columns it accepts."""
    inp = tmp_path / "in.csv"
    inp.write_text("singer,song\nx,y\n")
    with pytest.raises(ConfigurationError, match="artist"):
        list(read_rows(inp))


def test_output_of_another_input_is_refused(tmp_path: Path) -> None:
    """Resuming into an output written for a different input is an error, not a mix."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("artist,title\ndeadmau5,Strobe\n")
    b.write_text("artist,title\nMuse,Uprising\n")
    out = tmp_path / "out.jsonl"
    run_enrich(tmp_path, a, out)
    with pytest.raises(ConfigurationError, match="another input"):
        run_enrich(tmp_path, b, out)


def test_jsonl_input(tmp_path: Path) -> None:
    """JSON Lines input with artist and title keys works like CSV."""
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"artist": "deadmau5", "title": "Strobe"}\n\n')
    assert [(r.artist, r.title) for r in read_rows(inp)] == [("deadmau5", "Strobe")]


def test_scan_output_rejects_foreign_files(tmp_path: Path) -> None:
    """An output path that holds something else is not silently appended to."""
    out = tmp_path / "out.jsonl"
    out.write_text("hello\n")
    with pytest.raises(ConfigurationError, match="not a tunegate enrich record"):
        scan_output(out)


class _StubSpotify:
    """A provider double for the job's own logic (the emulator tests above cover the real
    clients): answers every search, or raises what it is told to."""

    def __init__(self, error: BaseException | None = None, jitter: bool = False) -> None:
        self.error = error
        self.jitter = jitter
        self.calls = 0

    async def search_track(self, artist: str, title: str) -> dict[str, Any]:
        self.calls += 1
        if self.jitter:  # finish out of order: later rows are sometimes faster
            await asyncio.sleep((sum(map(ord, title)) % 5) * 0.002)
        if self.error is not None:
            raise self.error
        return {"id": "x" * 22, "name": title, "artists": [{"name": artist}]}


def _run_stub(inp: Path, out: Path, spotify: _StubSpotify, **kw: Any) -> Any:
    return asyncio.run(enrich(Providers(spotify=spotify), inp, out, **kw))


def test_a_bug_in_one_row_does_not_stop_the_run(tmp_path: Path) -> None:
    """An unexpected exception is recorded against its row; the run finishes."""
    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\na,b\nc,d\n")
    out = tmp_path / "out.jsonl"
    summary = _run_stub(inp, out, _StubSpotify(RuntimeError("boom")), concurrency=1)
    recs = records(out)
    assert summary.status["failed"] == 2
    assert [r["errors"]["internal"] for r in recs] == ["RuntimeError: boom"] * 2


def test_foreign_output_file_is_left_untouched(tmp_path: Path) -> None:
    """Pointing -o at a file that is not an enrich output changes nothing in it."""
    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\na,b\n")
    out = tmp_path / "songs.csv"
    out.write_bytes(b"artist,title\nU2,One")  # no final newline: looks torn
    with pytest.raises(ConfigurationError, match="not a tunegate enrich"):
        _run_stub(inp, out, _StubSpotify())
    assert out.read_bytes() == b"artist,title\nU2,One"


def test_output_cannot_be_the_input(tmp_path: Path) -> None:
    """Writing into the input file is refused before anything is written."""
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"artist": "a", "title": "b"}\n')
    with pytest.raises(ConfigurationError, match="cannot be the input"):
        _run_stub(inp, inp, _StubSpotify())


def test_two_runs_cannot_write_one_output(tmp_path: Path) -> None:
    """A second run on the same output is refused while the first holds it."""
    from tunegate.enrich import _locked

    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\na,b\n")
    out = tmp_path / "out.jsonl"
    with _locked(out), pytest.raises(ConfigurationError, match="another tunegate enrich"):
        _run_stub(inp, out, _StubSpotify())
    _run_stub(inp, out, _StubSpotify())  # free again afterwards
    assert len(records(out)) == 1


def test_invalid_rows_are_not_retried(tmp_path: Path) -> None:
    """Bad input never gets better: a resume skips it, while failed rows are tried again."""
    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\n,no artist\na,b\n")
    out = tmp_path / "out.jsonl"
    _run_stub(inp, out, _StubSpotify(RuntimeError("down")))
    stub = _StubSpotify()
    summary = _run_stub(inp, out, stub)
    assert stub.calls == 1
    assert summary.skipped == 1
    assert [r["status"] for r in records(out)] == ["invalid", "ok"]


def test_latin1_input_is_a_clear_error(tmp_path: Path) -> None:
    """A CSV that is not UTF-8 says so in one line instead of a traceback."""
    inp = tmp_path / "in.csv"
    inp.write_bytes("artist,title\nBjörk,Jóga\n".encode("latin-1"))
    with pytest.raises(
        ConfigurationError, match=r"line 2 is not UTF-8 text \(byte 3 of the line\)"
    ):
        list(read_rows(inp))


def test_out_of_order_results_are_rewritten_in_row_order(tmp_path: Path) -> None:
    """Rows finishing out of order end up in row order, one record each."""
    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\n" + "".join(f"a{i},t{i}\n" for i in range(40)))
    out = tmp_path / "out.jsonl"
    summary = _run_stub(inp, out, _StubSpotify(jitter=True), concurrency=8)
    assert summary.compacted, "the rows should have finished out of order"
    assert [r["row"] for r in records(out)] == list(range(40))
