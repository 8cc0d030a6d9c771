"""The command line's configuration: flags > environment > a TOML file > defaults.

The environment keeps the names the library reads (``SPOTIFY_CLIENT_ID``,
``TUNEGATE_REDIS_URL``... see :mod:`tunegate.clients.settings`); the file takes the field
names as flat keys::

    # ~/.config/tunegate/config.toml (platformdirs' user config dir)
    spotify_client_id = "..."
    redis_url = "redis://localhost:6379/0"
    concurrency = 16

:func:`load` also says where each value came from, for ``tunegate config show``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tunegate.clients import Settings
from tunegate.exceptions import ConfigurationError

__all__ = ["CliConfig", "Loaded", "default_config_path", "load", "mask"]

_TOML: ContextVar[Path | None] = ContextVar("tunegate_config_toml", default=None)


def default_config_path() -> Path:
    """``<user config dir>/tunegate/config.toml``."""
    import platformdirs

    return Path(platformdirs.user_config_dir("tunegate")) / "config.toml"


class CliConfig(BaseSettings):
    """Every setting ``enrich`` and the state commands take; the alias is its variable."""

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_TOML.get())
        return (init_settings, env_settings, toml)

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

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
        )


FIELDS = tuple(CliConfig.model_fields)


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


def _describe(exc: ValidationError, origins: Mapping[str, str], path: Path) -> str:
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
    return f"{name} (from {where}): {first['msg']}"


SECRETS = frozenset({"spotify_client_secret", "lastfm_api_key", "redis_url"})


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
        raw = cfg.secret(name)
        text = mask(name, None if raw is None else str(raw))
        origin = loaded.origins[name]
        via = f"env {_env_name(name)}" if origin == "env" else origin
        lines.append(f"{name:<{width}}  {text}  [{via}]")
    return lines
