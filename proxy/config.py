"""Settings: defaults < YAML file < ``MEMPROXY_*`` environment < CLI flags.

This module only assembles the sections; each is owned by the code that reads
it: ``memory:`` by :mod:`memory.settings`, ``upstream:`` by
:mod:`adapters.settings` (each backend declares its own ``upstream.<name>``
section), ``ollama:`` by :mod:`adapters.ollama_upstream`, ``auth:`` by
:mod:`proxy.auth.settings`, ``limits:`` by :mod:`proxy.limits`, ``observability:`` by
:mod:`proxy.observability.settings`.

Nested keys use ``__`` in the environment, e.g.
``MEMPROXY_MEMORY__TOKEN_BUDGET=2048`` or ``MEMPROXY_UPSTREAM__BASE_URL=...``.
Every key is documented in ``config.example.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from adapters.ollama_upstream import OllamaSettings
from adapters.settings import UpstreamSettings
from memory.settings import MemorySettings
from proxy.auth.settings import AuthSettings
from proxy.limits import LimitsSettings
from proxy.observability.settings import ObservabilitySettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEMPROXY_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: str = "./data"
    log_level: str = "info"
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("yaml_file"):
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    def resolved_auth_mode(self) -> str:
        """``none`` or ``keys``; raises ValueError where ``auth.mode: auto`` refuses this host."""
        return self.auth.resolved_mode(self.host)

    def resolved_provider(self) -> str:
        up = self.upstream
        if up.provider != "auto":
            return up.provider
        if up.base_url:
            return "openai"
        if up.model:
            return "litellm"
        return "llamacpp"


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from a YAML file, the environment and explicit overrides.

    ``overrides`` use nested dicts for sections, e.g.
    ``load_settings(upstream={"base_url": "http://..."})``; ``None`` values are
    ignored so CLI flags that were not given do not mask lower layers.
    """
    path = str(config) if config else os.environ.get("MEMPROXY_CONFIG")
    if path and not Path(path).is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    cls: type[Settings] = Settings
    if path:
        config_dict = SettingsConfigDict(**{**Settings.model_config, "yaml_file": path})
        cls = type("Settings", (Settings,), {"model_config": config_dict})
    return cls(**_drop_none(overrides))


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out
