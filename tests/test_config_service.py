"""One configuration file for every command: ``tunegate serve``'s own settings
(``admin_token``, ``token_key``, ``drain``, ``[api_keys]``) live in the CLI's TOML file, the
environment wins over it, secrets stay masked and out of every message, and ``enrich``
runs on a file shared with ``serve``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tunegate.config import SERVICE_FIELDS, load, service_config
from tunegate.exceptions import ConfigurationError

ADMIN = "canary-admin-from-file-5d2e8a91"
ADMIN_ENV = "canary-admin-from-env-c4f07b36"
TOKEN_KEY = "canary-token-key-19ab7e44"
KEY_A = "canary-key-app-a-8e13f0d2"
KEY_B = "canary-key-app-b-2b7c94e6"
CANARIES = (ADMIN, ADMIN_ENV, TOKEN_KEY, KEY_A, KEY_B)
SERVICE_ENV = ("TUNEGATE_ADMIN_TOKEN", "TUNEGATE_TOKEN_KEY", "TUNEGATE_DRAIN", "TUNEGATE_API_KEYS")
FILE = (
    f'concurrency = 3\nadmin_token = "{ADMIN}"\ntoken_key = "{TOKEN_KEY}"\ndrain = 7\n'
    f'[api_keys]\napp-a = "{KEY_A}"\napp-b = "{KEY_B}"\n'
)


@pytest.fixture(autouse=True)
def _no_service_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*SERVICE_ENV, "TUNEGATE_CONFIG", "TUNEGATE_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)


def _env(**extra: str) -> dict[str, str]:
    drop = (*SERVICE_ENV, "TUNEGATE_CONFIG", "TUNEGATE_REDIS_URL")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def tg(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunegate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(**env),
        cwd=cwd,
    )


def test_the_file_holds_the_service_settings_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("starlette", reason="ServiceOptions needs the 'serve' extra")
    from tunegate.service import ServiceOptions

    toml = tmp_path / "tunegate.toml"
    toml.write_text(FILE)
    loaded = load(None, toml)
    assert {loaded.origins[n] for n in SERVICE_FIELDS} == {"file"}
    opts = ServiceOptions.from_config(loaded.config)
    assert opts.admin_token == ADMIN
    assert opts.token_key == TOKEN_KEY.encode()
    assert opts.drain == 7
    assert (opts.api_keys.app_of(KEY_A), opts.api_keys.app_of(KEY_B)) == ("app-a", "app-b")
    assert not any(c in repr(loaded.config) + repr(opts) for c in CANARIES)

    monkeypatch.setenv("TUNEGATE_ADMIN_TOKEN", f" {ADMIN_ENV} ")
    monkeypatch.setenv("TUNEGATE_DRAIN", "3")
    monkeypatch.setenv("TUNEGATE_API_KEYS", f"only={KEY_B}")
    monkeypatch.setenv("TUNEGATE_TOKEN_KEY", "")  # empty: not set, the file's stands
    loaded = load(None, toml)
    assert loaded.origins["admin_token"] == loaded.origins["api_keys"] == "env"
    assert loaded.origins["token_key"] == "file"
    opts = ServiceOptions.from_config(loaded.config)
    assert (opts.admin_token, opts.drain) == (ADMIN_ENV, 3)
    assert opts.api_keys.apps() == {"only"}  # the variable replaces the table, no merge
    assert opts.token_key == TOKEN_KEY.encode()

    # No key configured anywhere: an open service, a random signing key, the default drain.
    for name in SERVICE_ENV:
        monkeypatch.delenv(name)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    bare = ServiceOptions.from_config(load(None, empty).config)
    assert (bare.admin_token, bool(bare.api_keys), bare.drain) == (None, False, 10)


def test_bad_service_values_name_the_key_never_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "bad.toml"
    files = {
        "drain = 0\n": "drain (from",
        "drain = 2.5\n": "drain (from",
        "drain = true\n": "drain (from",
        'drain = "ten"\n': "drain (from",
        'admin_token = "  "\n': "admin_token (from",
        "token_key = 5\n": "token_key (from",
        f'[api_keys]\na = "{KEY_A}"\nb = "{KEY_A}"\n': "entries 1 and 2 share one key",
        f'[api_keys]\n"{KEY_A} x" = "k"\n': "entry 1: the name is not a plain name",
        '[api_keys]\na = ""\n': "entry 1: the key is empty",
        f'api_keys = ["{KEY_A}"]\n': "api_keys (from",
        f'admin_tokn = "{ADMIN}"\n': "unknown key 'admin_tokn'",
    }
    for text, expected in files.items():
        toml.write_text(text)
        with pytest.raises(ConfigurationError) as refused:
            load(None, toml)
        message = str(refused.value)
        assert expected in message, (text, message)
        assert "\n" not in message
        assert not any(c in message for c in CANARIES), message
    toml.write_text("")
    variables = {
        "TUNEGATE_DRAIN": ("99999", "drain (from environment variable TUNEGATE_DRAIN)"),
        "TUNEGATE_API_KEYS": (KEY_A, "entry 1 is not app=KEY"),
    }
    for name, (value, expected) in variables.items():
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError, match=re.escape(expected)) as refused:
            load(None, toml)
        assert KEY_A not in str(refused.value)
        monkeypatch.delenv(name)


def test_service_config_reads_the_service_variables_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``create_app()`` without options: the given variables, no file, no other variable."""
    monkeypatch.setenv("TUNEGATE_CONFIG", str(tmp_path / "elsewhere.toml"))
    monkeypatch.setenv("TUNEGATE_ADMIN_TOKEN", ADMIN)  # not in the mapping given: not read
    cfg = service_config({"TUNEGATE_DRAIN": " 4 ", "TUNEGATE_CONCURRENCY": "not a number"})
    assert (cfg.drain, cfg.admin_token, cfg.concurrency) == (4, None, 8)
    assert service_config().secret("admin_token") == ADMIN  # default: the process's own
    with pytest.raises(ConfigurationError, match=r"api_keys \(from environment variable"):
        service_config({"TUNEGATE_API_KEYS": f"a={KEY_A},b={KEY_A}"})


def test_config_show_masks_the_service_secrets(tmp_path: Path) -> None:
    toml = tmp_path / "tunegate.toml"
    toml.write_text(FILE)
    out = tg("--config", str(toml), "config", "show", TUNEGATE_ADMIN_TOKEN=ADMIN_ENV)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert not any(c in text or c[:-4] in text for c in CANARIES)
    assert "app-a" not in text  # names are not shown either: one may be a misplaced key
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert lines["admin_token"].split()[1:] == ["****7b36", "[env", "TUNEGATE_ADMIN_TOKEN]"]
    assert lines["token_key"].split()[1:] == ["****7e44", "[file]"]
    assert lines["drain"].split()[1:] == ["7", "[file]"]
    assert lines["api_keys"].split()[1:] == ["<2", "keys>", "[file]"]


def test_enrich_runs_on_a_file_shared_with_serve(tmp_path: Path) -> None:
    """The service's keys are accepted, not used, and never printed by ``enrich``."""
    toml = tmp_path / "tunegate.toml"
    toml.write_text(FILE)
    out_file = tmp_path / "o.jsonl"
    out = tg(
        "--config",
        str(toml),
        "enrich",
        "--sandbox",
        "--rows",
        "1",
        "--cache",
        "memory",
        "-o",
        str(out_file),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert len(out_file.read_text().splitlines()) == 1
    assert not any(c in out.stdout + out.stderr for c in CANARIES)
    toml.write_text(FILE.replace("drain = 7", "drain = 0"))  # a bad value is bad anywhere
    out = tg("--config", str(toml), "enrich", "--sandbox", "--rows", "1", cwd=tmp_path)
    assert out.returncode == 2
    assert f"drain (from {toml})" in out.stderr


def test_serve_takes_its_settings_from_the_one_file(tmp_path: Path) -> None:
    """A live ``tunegate serve --sandbox --config FILE``: the file's caller keys are
    required, the environment's admin token beats the file's, nothing secret is logged."""
    pytest.importorskip("starlette", reason="the service needs the 'serve' extra")
    from tests.service._proc import serve_process

    toml = tmp_path / "tunegate.toml"
    toml.write_text(FILE)
    env = _env(TUNEGATE_ADMIN_TOKEN=ADMIN_ENV)
    with serve_process("--sandbox", "--config", str(toml), env=env) as (url, proc):
        with httpx.Client(base_url=url, timeout=30) as c:
            path = "/v1/spotify/search"
            query = {"artist": "a", "title": "b"}
            refused = c.get(path, params=query)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            served = c.get(path, params=query, headers={"X-API-Key": KEY_A})
            assert served.status_code in (200, 404), served.text
            filed = c.get("/admin/stats", headers={"Authorization": f"Bearer {ADMIN}"})
            assert filed.status_code == 401  # the variable replaced the file's token
            stats = c.get("/admin/stats", headers={"Authorization": f"Bearer {ADMIN_ENV}"})
            assert stats.status_code == 200
            everything = stats.text + c.get("/metrics").text + c.get("/status.json").text
        log = proc.log()
    assert not any(k in everything + log for k in CANARIES)


def test_serve_exits_2_with_one_line_on_a_bad_service_value(tmp_path: Path) -> None:
    toml = tmp_path / "tunegate.toml"
    toml.write_text(f'[api_keys]\na = "{KEY_A}"\nb = "{KEY_A}"\n')
    from tests._redis_server import free_port

    for args in (("--config", str(toml)), ("--sandbox", "--config", str(toml))):
        out = tg("serve", "--port", str(free_port()), *args)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().count("\n") == 0
        assert f"api_keys (from {toml}): caller key entries 1 and 2 share one key" in out.stderr
        assert KEY_A not in out.stdout + out.stderr
