"""The command line's configuration: flags > environment > a TOML file > defaults.

The environment keeps the names the library reads (``SPOTIFY_CLIENT_ID``,
``TUNEGATE_REDIS_URL``... see :mod:`tunegate.clients.settings`); the file takes the field
names as flat keys::

    # ~/.config/tunegate/config.toml (platformdirs' user config dir)
    spotify_client_id = "..."
    redis_url = "redis://localhost:6379/0"
    concurrency = 16

    # tunegate serve's own settings live in the same file (enrich and the rest ignore them)
    admin_token = "..."
    token_key = "..."
    drain = 10
    [api_keys]
    app-a = "KEY1"

:func:`load` also says where each value came from, for ``tunegate config show``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tunegate.clients import Settings
from tunegate.clients.settings import MAX_MEMBERS, parse_members
from tunegate.exceptions import ConfigurationError

__all__ = [
    "CliConfig",
    "Loaded",
    "caller_keys",
    "default_config_path",
    "load",
    "mask",
    "parse_caller_keys",
    "service_config",
]

_TOML: ContextVar[Path | None] = ContextVar("tunegate_config_toml", default=None)
# service_config(): the given values alone (no environment, no file).
_GIVEN_ONLY: ContextVar[bool] = ContextVar("tunegate_config_given_only", default=False)
DEFAULT_DRAIN = 10
_APP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def parse_caller_keys(text: str) -> dict[str, str]:
    """``TUNEGATE_API_KEYS``: comma-separated ``app=KEY`` entries, split at the first ``=``
    (a key may hold ``=``, base64 padding for one). An entry without ``=`` is refused: a
    bare key would be taken for a name. Errors name the entry by its position only."""
    apps: dict[str, str] = {}
    entries = [e.strip() for e in text.split(",") if e.strip()]
    for n, entry in enumerate(entries, 1):
        app, sep, key = entry.partition("=")
        if not sep:
            raise ConfigurationError(f"caller key entry {n} is not app=KEY")
        if app.strip() in apps:
            raise ConfigurationError(f"caller key entry {n}: that name is given twice")
        apps[app.strip()] = key
    return apps


def caller_keys(apps: Mapping[Any, Any]) -> dict[str, str]:
    """``application name -> key``, checked: a plain name, a key that is a non-blank
    string (stripped), no key given to two applications. The message names the entry by
    its position only: a name and key written the wrong way round must not put the key in
    a log line."""
    seen: dict[str, int] = {}
    checked: dict[str, str] = {}
    for n, (app, key) in enumerate(apps.items(), 1):
        if not isinstance(app, str) or not _APP_NAME.fullmatch(app):
            raise ConfigurationError(f"caller key entry {n}: the name is not a plain name")
        if not isinstance(key, str) or not key.strip():
            raise ConfigurationError(f"caller key entry {n}: the key is empty or not a string")
        key = key.strip()
        if key in seen:
            raise ConfigurationError(f"caller key entries {seen[key]} and {n} share one key")
        seen[key] = n
        checked[app] = key
    return checked


def default_config_path() -> Path:
    """``<user config dir>/tunegate/config.toml``."""
    import platformdirs

    return Path(platformdirs.user_config_dir("tunegate")) / "config.toml"


class CliConfig(BaseSettings):
    """Every setting ``enrich``, ``serve`` and the state commands take; the alias is its
    variable. One file serves every command: the service's settings (``admin_token``,
    ``token_key``, ``drain``, ``api_keys``) are checked wherever the file is read and used
    by ``serve`` only."""

    model_config = SettingsConfigDict(
        extra="forbid", env_ignore_empty=True, populate_by_name=True, frozen=True
    )

    spotify_client_id: str | None = Field(None, alias="SPOTIFY_CLIENT_ID")
    spotify_client_secret: SecretStr | None = Field(None, alias="SPOTIFY_CLIENT_SECRET")
    musicbrainz_user_agent: str | None = Field(None, alias="MUSICBRAINZ_USER_AGENT")
    lastfm_api_key: SecretStr | None = Field(None, alias="LASTFM_API_KEY")
    redis_url: SecretStr | None = Field(None, alias="TUNEGATE_REDIS_URL")
    spotify_api_url: str | None = Field(None, alias="TUNEGATE_SPOTIFY_API_URL")
    spotify_auth_url: str | None = Field(None, alias="TUNEGATE_SPOTIFY_AUTH_URL")
    musicbrainz_url: str | None = Field(None, alias="TUNEGATE_MUSICBRAINZ_URL")
    lastfm_url: str | None = Field(None, alias="TUNEGATE_LASTFM_URL")
    musicbrainz_rate: float | None = Field(None, gt=0, alias="TUNEGATE_MUSICBRAINZ_RATE")
    cache: str | None = Field(None, alias="TUNEGATE_CACHE")  # SQLite path or 'memory'
    concurrency: int = Field(8, ge=1, le=1024, alias="TUNEGATE_CONCURRENCY")
    format: Literal["jsonl", "csv"] = Field("jsonl", alias="TUNEGATE_FORMAT")
    progress_every: float = Field(5.0, ge=0.1, le=3600, alias="TUNEGATE_PROGRESS_EVERY")
    log_format: Literal["text", "json"] = Field("text", alias="TUNEGATE_LOG_FORMAT")
    # processes sharing the quota through Redis: the limiter's share while Redis is lost
    members: int = Field(1, alias="TUNEGATE_MEMBERS")
    # tunegate serve's own: the admin endpoints' bearer token (unset: every admin call 401),
    # the key signing the tokens the Spotify pass-through issues, SIGTERM's drain in
    # seconds, and the callers' keys (application -> key; env: app=KEY,app2=KEY2).
    admin_token: SecretStr | None = Field(None, alias="TUNEGATE_ADMIN_TOKEN")
    token_key: SecretStr | None = Field(None, alias="TUNEGATE_TOKEN_KEY")
    drain: int = Field(DEFAULT_DRAIN, alias="TUNEGATE_DRAIN")
    api_keys: dict[str, SecretStr] | None = Field(None, alias="TUNEGATE_API_KEYS")

    @field_validator("admin_token", "token_key", mode="before")
    @classmethod
    def _stripped(cls, value: object) -> object:
        # A blank admin token would match "Authorization: Bearer " (an empty token).
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("must not be blank")
            return value.strip()
        return value

    @field_validator("drain", mode="before")
    @classmethod
    def _whole_seconds(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 3600:
            raise ValueError("must be whole seconds in 1..3600")
        return value

    @field_validator("members", mode="before")
    @classmethod
    def _fleet_size(cls, value: object) -> object:
        try:
            return parse_members(value)
        except ConfigurationError:  # pydantic's message, without the variable's name
            raise ValueError(f"must be a whole number of processes in 1..{MAX_MEMBERS}") from None

    @field_validator("api_keys", mode="before")
    @classmethod
    def _caller_keys(cls, value: object) -> object:
        if isinstance(value, str):  # the variable's app=KEY list
            value = parse_caller_keys(value)
        if isinstance(value, Mapping):
            return caller_keys(value)
        return value  # pydantic refuses it, naming only the key

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _GIVEN_ONLY.get():
            return (init_settings,)
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_TOML.get())
        return (init_settings, env_settings, toml)

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def caller_key_table(self) -> dict[str, str]:
        """``api_keys`` in the clear, application -> key (for the service only)."""
        return {app: key.get_secret_value() for app, key in (self.api_keys or {}).items()}

    def client_settings(self) -> Settings:
        """The library's :class:`Settings` for these values."""
        return Settings(
            spotify_client_id=self.spotify_client_id,
            spotify_client_secret=self.secret("spotify_client_secret"),
            musicbrainz_user_agent=self.musicbrainz_user_agent,
            lastfm_api_key=self.secret("lastfm_api_key"),
            redis_url=self.secret("redis_url"),
            spotify_api_url=self.spotify_api_url,
            spotify_auth_url=self.spotify_auth_url,
            musicbrainz_url=self.musicbrainz_url,
            lastfm_url=self.lastfm_url,
            musicbrainz_rate=self.musicbrainz_rate,
            members=self.members,
        )


FIELDS = tuple(CliConfig.model_fields)
SERVICE_FIELDS = ("admin_token", "token_key", "drain", "api_keys")


def _env_name(name: str) -> str:
    alias = CliConfig.model_fields[name].alias
    assert alias is not None
    return alias


@dataclass(frozen=True)
class Loaded:
    config: CliConfig
    origins: dict[str, str]  # field -> flag | env | file | default
    path: Path  # the TOML file consulted (it may not exist)


def _key_of(data: Mapping[str, Any], name: str) -> bool:
    return name in data or _env_name(name) in data


def load(flags: Mapping[str, Any] | None = None, config_path: Path | None = None) -> Loaded:
    """The effective configuration. ``flags``: field -> value given on the command line
    (``None`` = not given). ``config_path``: an explicit file (must exist), else the default.

    Raises ConfigurationError, one line naming the file or the key, on bad TOML or a bad value.
    """
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    path = config_path if config_path is not None else default_config_path()
    if config_path is not None and not config_path.is_file():
        raise ConfigurationError(f"{config_path}: no such config file")
    token = _TOML.set(path)
    try:
        try:
            file_data = TomlConfigSettingsSource(CliConfig, toml_file=path)()
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigurationError(f"{path}: {exc.strerror or exc}") from None
        env_data = EnvSettingsSource(CliConfig)()
        origins = {}
        for name in FIELDS:
            if name in given:
                origins[name] = "flag"
            elif _key_of(env_data, name):
                origins[name] = "env"
            elif _key_of(file_data, name):
                origins[name] = "file"
            else:
                origins[name] = "default"
        try:
            config = CliConfig(**given)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc, origins, path)) from None
    finally:
        _TOML.reset(token)
    return Loaded(config, origins, path)


def service_config(environ: Mapping[str, str] | None = None) -> CliConfig:
    """The service's settings (:data:`SERVICE_FIELDS`) from the variables of ``environ``
    (default: the process's) alone, no file: what ``create_app()`` reads when given no
    options. ``tunegate serve`` uses :func:`load` instead (flags > environment > file)."""
    env = os.environ if environ is None else environ
    given: dict[str, Any] = {
        n: v for n in SERVICE_FIELDS if (v := (env.get(_env_name(n)) or "").strip())
    }
    token = _GIVEN_ONLY.set(True)
    try:
        return CliConfig(**given)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, dict.fromkeys(FIELDS, "env"), None)) from None
    finally:
        _GIVEN_ONLY.reset(token)


def _describe(exc: ValidationError, origins: Mapping[str, str], path: Path | None) -> str:
    """One line naming the key and where it came from; pydantic's message only, never the
    input (it may be a secret)."""
    first = exc.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else "?"
    name = next((n for n in FIELDS if key in (n, _env_name(n))), None)
    if name is None:  # an unknown key can only come from the file
        return f"{path}: unknown key {key!r}"
    where = {
        "flag": "the command line",
        "env": f"environment variable {_env_name(name)}",
        "file": f"{path}",
        "default": "the default",
    }[origins[name]]
    msg = first["msg"].removeprefix("Value error, ")
    return f"{name} (from {where}): {msg}"


SECRETS = frozenset(
    {"spotify_client_secret", "lastfm_api_key", "redis_url", "admin_token", "token_key"}
)


def mask(name: str, value: str | None) -> str:
    """A secret shown by its last four characters when long enough, else ``<set>``; a Redis
    URL keeps its host but not its password."""
    if value is None:
        return "-"
    if name == "redis_url":
        parts = urlsplit(value)
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:  # not a URL we can take apart: show nothing of it
            return "<set>"
        if parts.password is None:
            return value
        host = parts.hostname or ""
        user = parts.username or ""
        rest = value.split(parts.netloc, 1)[1]
        return f"{parts.scheme}://{user}:****@{host}{port}{rest}"
    if name not in SECRETS:
        return value
    return f"****{value[-4:]}" if len(value) >= 16 else "<set>"


def show_lines(loaded: Loaded) -> list[str]:
    """``tunegate config show``: one line per setting, secrets masked."""
    cfg = loaded.config
    exists = "" if loaded.path.is_file() else " (not found)"
    lines = [f"config file: {loaded.path}{exists}"]
    width = max(len(n) for n in FIELDS)
    for name in FIELDS:
        if name == "api_keys":  # how many only: a name may be a key written in its place
            text = "-" if cfg.api_keys is None else f"<{len(cfg.api_keys)} keys>"
        else:
            raw = cfg.secret(name)
            text = mask(name, None if raw is None else str(raw))
        origin = loaded.origins[name]
        via = f"env {_env_name(name)}" if origin == "env" else origin
        lines.append(f"{name:<{width}}  {text}  [{via}]")
    return lines
