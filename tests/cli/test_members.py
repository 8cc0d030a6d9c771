"""``tunegate enrich --members N`` (``TUNEGATE_MEMBERS``, config key ``members``): the fleet's
size, handed to the limiter, so that a process that loses Redis takes at most 1/N of each
quota. As a user runs it (subprocesses against the emulator); bad values exit 2 with one
line naming the option before any request; the summary shows each provider's limiter mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests._redis_server import RedisServer, free_port
from tests.cli.test_cli import records, run
from tests.enrich.test_stages import write_rows
from tunegate.clients import Gateway, Settings
from tunegate.clients.settings import MAX_MEMBERS
from tunegate.emulator import Emulator, RateLimit
from tunegate.exceptions import ConfigurationError

PROVIDERS = ("spotify", "musicbrainz", "lastfm")


def _lifted() -> Emulator:
    return Emulator(
        catalog_size=200,
        seed=3,
        musicbrainz_rate=RateLimit(1000, 1.0),
        lastfm_rate=RateLimit(1000, 1.0),
        spotify_rate=RateLimit(10_000, 30.0),
    )


def _env(emu: Emulator, **extra: str) -> dict[str, str]:
    return emu.env() | {"TUNEGATE_MUSICBRAINZ_RATE": "100", "TUNEGATE_MEMBERS": ""} | extra


def _limiters(summary: Path) -> dict[str, Any]:
    data = orjson.loads(summary.read_bytes())
    return {name: data["providers"][name]["limiter"] for name in PROVIDERS}


@pytest.mark.parametrize(
    ("args", "env", "toml", "message"),
    [
        (["--members", "0"], {}, None, "--members"),
        (["--members", str(MAX_MEMBERS + 1)], {}, None, "--members"),
        (["--members", "four"], {}, None, "--members"),
        ([], {"TUNEGATE_MEMBERS": "0"}, None, "TUNEGATE_MEMBERS"),
        ([], {"TUNEGATE_MEMBERS": "2.5"}, None, "TUNEGATE_MEMBERS"),
        ([], {"TUNEGATE_MEMBERS": "lots"}, None, "TUNEGATE_MEMBERS"),
        ([], {}, "members = true\n", "members (from"),
        ([], {}, "members = 0\n", "members (from"),
        ([], {}, f"members = {MAX_MEMBERS + 1}\n", "members (from"),
    ],
)
def test_bad_members_exit_2_before_any_request(
    tmp_path: Path, args: list[str], env: dict[str, str], toml: str | None, message: str
) -> None:
    (tmp_path / "in.csv").write_text("artist,title\nMuse,Psycho\n")
    config: list[str] = []
    if toml is not None:
        (tmp_path / "c.toml").write_text(toml)
        config = ["--config", str(tmp_path / "c.toml")]
    with Emulator(catalog_size=50, seed=3) as emu:
        argv = [*config, "enrich", "in.csv", "-o", "o.jsonl", "--cache", "memory", *args]
        result = run(argv, tmp_path, _env(emu, **env))
        seen = emu.stats()["requests"]
    assert result.returncode == 2, result.stderr
    text = " ".join(result.stderr.split())
    assert message in text, text
    if not args:  # the library's rule, named by where the value came from
        assert f"1..{MAX_MEMBERS}" in text, text
    assert "Traceback" not in result.stderr
    assert sum(p["total"] for p in seen.values()) == 0
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.redis
def test_members_from_flag_env_and_file_reach_the_limiter(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    """The flag beats the variable, which beats the file; the summary shows each provider's
    limiter shared through Redis with the configured size."""
    (tmp_path / "c.toml").write_text("members = 5\n")
    with _lifted() as emu:
        write_rows(emu, tmp_path / "in.csv", 3, ("isrc",))
        base = ["--config", str(tmp_path / "c.toml"), "enrich", "in.csv", "--cache", "memory"]
        base += ["--redis", redis_url, "--quiet"]
        cases = [
            ([], {}, 5),
            ([], {"TUNEGATE_MEMBERS": "4"}, 4),
            (["--members", "3"], {"TUNEGATE_MEMBERS": "4"}, 3),
        ]
        for n, (args, env, expected) in enumerate(cases):
            out, summary = f"o{n}.jsonl", tmp_path / f"s{n}.json"
            argv = [*base, "-o", out, "--summary-json", str(summary), *args]
            result = run(argv, tmp_path, _env(emu, **env))
            assert result.returncode == 0, result.stderr
            assert [r["status"] for r in records(tmp_path / out)] == ["ok"] * 3
            for name, limiter in _limiters(summary).items():
                assert limiter["mode"] == "shared", (name, limiter)
                assert limiter["members_configured"] == expected, (name, limiter)
                assert limiter["members_seen"] >= 1
                assert limiter["fallbacks"] == 0


def test_without_redis_the_limiter_is_local(tmp_path: Path) -> None:
    with _lifted() as emu:
        write_rows(emu, tmp_path / "in.csv", 2, ("isrc",))
        argv = ["enrich", "in.csv", "-o", "o.jsonl", "--cache", "memory", "--quiet"]
        argv += ["--summary-json", "s.json", "--members", "2"]
        result = run(argv, tmp_path, _env(emu))
    assert result.returncode == 0, result.stderr
    for limiter in _limiters(tmp_path / "s.json").values():
        assert limiter["mode"] == "local"
        assert limiter["fallbacks"] == 0


def test_a_process_whose_redis_is_down_takes_its_share_of_the_configured_fleet(
    tmp_path: Path,
) -> None:
    """Redis unreachable from the start: with --members 2 each provider's limiter falls back
    (the summary says so) and still finishes every row."""
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with _lifted() as emu:
        write_rows(emu, tmp_path / "in.csv", 2, ("isrc",))
        argv = ["enrich", "in.csv", "-o", "o.jsonl", "--cache", "memory", "--quiet"]
        argv += ["--summary-json", "s.json", "--members", "2", "--redis", down]
        result = run(argv, tmp_path, _env(emu))
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in records(tmp_path / "o.jsonl")] == ["ok"] * 2
    for name, limiter in _limiters(tmp_path / "s.json").items():
        assert limiter["mode"] == "fallback", (name, limiter)
        assert limiter["members_configured"] == 2
        assert limiter["fallbacks"] == 1
        assert limiter["phase"] is None  # never heard from Redis: its turn came from its id


def test_settings_members_from_the_environment_reach_the_gateways_limiter() -> None:
    gw = Gateway(Settings.from_env({"TUNEGATE_MEMBERS": " 3 "}))
    assert gw.settings.members == 3
    assert gw.limiter._expected == 3
    gw.close()
    assert Settings.from_env({}).members == 1
    for bad in ("0", "-1", "2.5", "x", str(MAX_MEMBERS + 1)):
        with pytest.raises(ConfigurationError, match="TUNEGATE_MEMBERS"):
            Settings.from_env({"TUNEGATE_MEMBERS": bad})
    with pytest.raises(ConfigurationError, match=r"Settings\.members"):
        Gateway(Settings(members=0))
