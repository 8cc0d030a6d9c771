"""``tunegate enrich``'s stage flags as a user runs them (subprocesses against the emulator):
``--window``, ``--isrc-batch-size``, ``--no-isrc-batching``, ``--stage-timeout`` and
``--ca-bundle``; bad values exit 2 with one line before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import records, run
from tests.enrich.test_stages import write_rows
from tunegate.emulator import Emulator, RateLimit
from tunegate.providers.musicbrainz import ISRC_BATCH_MAX


def _lifted(tls: bool = False) -> Emulator:
    """The emulator with its quotas lifted (these tests count requests, not pace them)."""
    return Emulator(
        catalog_size=500,
        seed=3,
        tls=tls,
        musicbrainz_rate=RateLimit(1000, 1.0),
        lastfm_rate=RateLimit(1000, 1.0),
        spotify_rate=RateLimit(10_000, 30.0),
    )


def _rows(emu: Emulator, path: Path, n: int) -> None:
    """``n`` catalogue tracks every provider knows, with their ISRC column."""
    write_rows(emu, path, n, ("isrc",))


def _env(emu: Emulator) -> dict[str, str]:
    return emu.env() | {"TUNEGATE_MUSICBRAINZ_RATE": "100", "SSL_CERT_FILE": ""}


def _mb(emu: Emulator, endpoint: str) -> int:
    entry = emu.stats()["requests"].get("musicbrainz", {}).get("endpoints", {})
    return int(entry.get(endpoint, {}).get("total", 0))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "0"], "--window"),
        (["--isrc-batch-size", "0"], "--isrc-batch-size"),
        (["--isrc-batch-size", str(ISRC_BATCH_MAX + 1)], "--isrc-batch-size"),
        (["--isrc-batch-size", "10", "--no-isrc-batching"], "no effect with --no-isrc-batching"),
        (["--stage-timeout", "deezer=5"], "PROVIDER one of spotify, musicbrainz, lastfm"),
        (["--stage-timeout", "lastfm=soon"], "'lastfm=soon'"),
        (["--stage-timeout", "lastfm=0"], "SECONDS above 0"),
        (["--stage-timeout", "lastfm"], "give PROVIDER=SECONDS"),
        (["--ca-bundle", "missing.pem"], "missing.pem: not a usable CA bundle"),
        (["--ca-bundle", "in.csv"], "in.csv: not a usable CA bundle"),
    ],
)
def test_bad_stage_flags_exit_2_before_any_request(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "in.csv").write_text("artist,title\nMuse,Psycho\n")
    with Emulator(catalog_size=50, seed=3) as emu:
        result = run(
            ["enrich", "in.csv", "-o", "o.jsonl", "--cache", "memory", *args], tmp_path, emu.env()
        )
        seen = emu.stats()["requests"]
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
    assert sum(p["total"] for p in seen.values()) == 0
    assert not (tmp_path / "o.jsonl").exists()


def test_isrc_batch_size_and_no_batching_reach_musicbrainz(tmp_path: Path) -> None:
    """30 ISRC rows: ``--isrc-batch-size 10`` makes 3 searches of 10; ``--no-isrc-batching``
    one ``/ws/2/isrc`` lookup a row; the records are the same."""
    with _lifted() as emu:
        _rows(emu, tmp_path / "in.csv", 30)
        base = ["enrich", "in.csv", "--cache", "memory", "--quiet", "--window", "64"]
        batched = run([*base, "-o", "b.jsonl", "--isrc-batch-size", "10"], tmp_path, _env(emu))
        assert batched.returncode == 0, batched.stderr
        assert (_mb(emu, "recording.search"), _mb(emu, "isrc")) == (3, 0)
        emu.reset_stats()
        single = run([*base, "-o", "s.jsonl", "--no-isrc-batching"], tmp_path, _env(emu))
        assert single.returncode == 0, single.stderr
        assert (_mb(emu, "recording.search"), _mb(emu, "isrc")) == (0, 30)

    def parts(name: str) -> list[object]:
        return [(r["row"], r["musicbrainz"], r["match"]) for r in records(tmp_path / name)]

    assert parts("b.jsonl") == parts("s.jsonl")
    assert {r["match"]["musicbrainz"]["method"] for r in records(tmp_path / "b.jsonl")} == {"isrc"}


def test_stage_timeout_cuts_one_provider_alone(tmp_path: Path) -> None:
    """Last.fm slower than ``--stage-timeout lastfm=0.5``: its part is an error in every
    row, Spotify and MusicBrainz fill them, the run exits 1 (partial rows)."""
    with _lifted() as emu:
        _rows(emu, tmp_path / "in.csv", 4)
        emu.set_faults("lastfm:latency=3s")
        args = ["enrich", "in.csv", "-o", "o.jsonl", "--cache", "memory", "--quiet"]
        result = run([*args, "--stage-timeout", "lastfm=0.5"], tmp_path, _env(emu))
    assert result.returncode == 1, result.stderr
    recs = records(tmp_path / "o.jsonl")
    assert [r["status"] for r in recs] == ["partial"] * 4
    for r in recs:
        assert "no answer within 0.5 s" in r["errors"]["lastfm"]
        assert r["providers"]["spotify"]["status"] == "found"
        assert r["providers"]["musicbrainz"]["status"] == "found"


def test_ca_bundle_trusts_the_emulators_tls(tmp_path: Path) -> None:
    """Against the emulator's HTTPS: without a trusted CA every call fails (exit 1);
    ``--ca-bundle`` (or TUNEGATE_CA_BUNDLE) with its CA makes the rows ok (exit 0)."""
    with _lifted(tls=True) as emu:
        assert emu.ca_path is not None
        _rows(emu, tmp_path / "in.csv", 3)
        env = _env(emu) | {"SSL_CERT_FILE": "", "REQUESTS_CA_BUNDLE": ""}
        args = ["enrich", "in.csv", "--cache", "memory", "--quiet"]
        untrusted = run([*args, "-o", "u.jsonl"], tmp_path, env)
        trusted = run([*args, "-o", "t.jsonl", "--ca-bundle", str(emu.ca_path)], tmp_path, env)
        by_env = run([*args, "-o", "e.jsonl"], tmp_path, env | {"TUNEGATE_CA_BUNDLE": emu.ca_path})
    assert untrusted.returncode == 1
    assert {r["status"] for r in records(tmp_path / "u.jsonl")} == {"failed"}
    assert trusted.returncode == 0, trusted.stderr
    assert [r["status"] for r in records(tmp_path / "t.jsonl")] == ["ok"] * 3
    assert by_env.returncode == 0, by_env.stderr
    assert [r["status"] for r in records(tmp_path / "e.jsonl")] == ["ok"] * 3


def test_help_shows_the_stage_flags_with_an_example(tmp_path: Path) -> None:
    result = run(["enrich", "--help"], tmp_path, {"COLUMNS": "200"})
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag in ("--window", "--isrc-batch-size", "--no-isrc-batching", "--stage-timeout"):
        assert flag in text
    assert "--ca-bundle" in text
    assert "Example (tuning the stages): tunegate enrich tracks.csv --window 512" in text
