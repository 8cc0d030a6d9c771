"""``tunegate config show`` and the order flags > environment > TOML file > defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tunegate.config import load
from tunegate.exceptions import ConfigurationError

CANARY = "canary-SECRET-do-not-print-7f3a9c"
NAMES = (
    "SPOTIFY_CLIENT_ID",
    "SPOTIFY_CLIENT_SECRET",
    "MUSICBRAINZ_USER_AGENT",
    "LASTFM_API_KEY",
    "TUNEGATE_REDIS_URL",
    "TUNEGATE_CONCURRENCY",
    "TUNEGATE_CONFIG",
    "TUNEGATE_LOG_FORMAT",
)


def tg(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in NAMES}
    return subprocess.run(
        [sys.executable, "-m", "tunegate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **env},
    )


def test_precedence_and_origins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    toml = tmp_path / "c.toml"
    toml.write_text('concurrency = 3\nlog_format = "json"\ncache = "from-file.db"\n')
    monkeypatch.setenv("TUNEGATE_CONCURRENCY", "5")
    loaded = load({"cache": "from-flag.db", "format": None}, toml)
    cfg = loaded.config
    assert (cfg.cache, cfg.concurrency, cfg.log_format, cfg.format) == (
        "from-flag.db",
        5,
        "json",
        "jsonl",
    )
    assert loaded.origins["cache"] == "flag"
    assert loaded.origins["concurrency"] == "env"
    assert loaded.origins["log_format"] == "file"
    assert loaded.origins["format"] == "default"


def test_show_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(f'lastfm_api_key = "{CANARY}"\nconcurrency = 4\n')
    out = tg(
        "--config",
        str(toml),
        "config",
        "show",
        SPOTIFY_CLIENT_SECRET=CANARY,
        TUNEGATE_REDIS_URL=f"redis://user:{CANARY}@127.0.0.1:6379/0",
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert CANARY not in text
    assert CANARY[:-4] not in text
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert "****3a9c" in lines["spotify_client_secret"]
    assert lines["spotify_client_secret"].endswith("[env SPOTIFY_CLIENT_SECRET]")
    assert "****" in lines["lastfm_api_key"]
    assert lines["lastfm_api_key"].endswith("[file]")
    assert "redis://user:****@127.0.0.1:6379/0" in lines["redis_url"]
    assert lines["concurrency"].split()[1:] == ["4", "[file]"]
    assert lines["format"].endswith("[default]")


def test_bad_toml_and_bad_values_exit_2_with_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("concurrency = \n")
    out = tg("--config", str(broken), "config", "show")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "not valid TOML" in out.stderr
    assert str(broken) in out.stderr

    unknown = tmp_path / "unknown.toml"
    unknown.write_text("concurency = 3\n")
    out = tg("--config", str(unknown), "config", "show")
    assert out.returncode == 2
    assert "unknown key 'concurency'" in out.stderr

    out = tg("config", "show", TUNEGATE_CONCURRENCY="many")
    assert out.returncode == 2
    assert "concurrency (from environment variable TUNEGATE_CONCURRENCY)" in out.stderr
    assert "Traceback" not in out.stderr

    out = tg("--config", str(tmp_path / "nope.toml"), "config", "show")
    assert out.returncode == 2
    assert "no such config file" in out.stderr


def test_enrich_reads_the_file_before_any_network_call(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('format = "xml"\n')
    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\nA,B\n")
    out = tg("--config", str(toml), "enrich", str(inp))
    assert out.returncode == 2
    assert f"format (from {toml})" in out.stderr
    assert not (tmp_path / "in.enriched.jsonl").exists()


def test_load_rejects_a_bad_flag() -> None:
    with pytest.raises(ConfigurationError, match=r"concurrency \(from the command line\)"):
        load({"concurrency": 0}, None)


def test_mask_keeps_secrets_out() -> None:
    from tunegate.config import mask

    assert mask("lastfm_api_key", "0123456789abcdef") == "****cdef"
    assert mask("lastfm_api_key", "short-key") == "<set>"
    assert mask("redis_url", "redis://u:pw-123@cache:6379/1") == "redis://u:****@cache:6379/1"
    assert mask("redis_url", "redis://:pw-123@cache:notaport/0") == "<set>"
    assert mask("redis_url", "redis://cache:6379/0") == "redis://cache:6379/0"
    assert mask("concurrency", "8") == "8"


def test_the_file_configures_enrich_cache_and_breaker(tmp_path: Path, redis_url: str) -> None:
    """Credentials and URLs from the file reach the providers; the file's redis_url is the
    backend of `cache` and `breaker`; a flag still beats the file."""
    from tunegate.cache import CacheManager
    from tunegate.emulator import Emulator

    inp = tmp_path / "in.csv"
    inp.write_text("artist,title\ndeadmau5,Strobe\n")
    with Emulator(catalog_size=50, seed=3) as emu:
        env = emu.env()
        toml = tmp_path / "c.toml"
        toml.write_text(
            f'lastfm_api_key = "{env["LASTFM_API_KEY"]}"\n'
            f'lastfm_url = "{env["TUNEGATE_LASTFM_URL"]}"\n'
            f'redis_url = "{redis_url}"\n'
            'cache = "memory"\n'
        )
        out = tg("--config", str(toml), "enrich", str(inp), "-o", str(tmp_path / "o.jsonl"))
        lastfm_calls = emu.stats()["requests"]["lastfm"]["total"]
    assert out.returncode == 0, out.stderr
    record = orjson.loads((tmp_path / "o.jsonl").read_bytes())
    assert record["providers"]["lastfm"]["status"] == "found"
    assert record["providers"]["spotify"]["status"] == "skipped"
    assert lastfm_calls >= 1

    with CacheManager(redis_url) as cm:
        cm.set(cm.key("lastfm:track_tags", "a", "b"), {"x": 1})
    toml.write_text(f'redis_url = "{redis_url}"\n')
    stats = tg("--config", str(toml), "cache", "stats")
    assert stats.returncode == 0, stats.stderr
    assert "backend redis" in stats.stdout
    assert "  lastfm: " in stats.stdout
    assert "lastfm            closed" in tg("--config", str(toml), "breaker", "status").stdout
    db = tmp_path / "c.db"
    with CacheManager.sqlite(db) as cm:
        cm.set(cm.key("spotify:search", "a", "b"), {"x": 1})
    flag = tg("--config", str(toml), "cache", "stats", "--cache", str(db))
    assert "backend sqlite, 1 entries" in flag.stdout  # the flag beats the file's Redis
