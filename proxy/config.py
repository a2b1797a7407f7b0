"""Settings: defaults < YAML file < ``MEMPROXY_*`` environment < CLI flags.

Nested keys use ``__`` in the environment, e.g.
``MEMPROXY_MEMORY__TOKEN_BUDGET=2048`` or ``MEMPROXY_UPSTREAM__BASE_URL=...``.
Every key is documented in ``config.example.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field
from memory.settings import MemorySettings
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class LlamaCppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None  # default: the packaged Gemma 3 270M, assembled under data_dir/models
    model_alias: str = "gemma-3-270m"
    chat_format: str = "gemma"
    n_ctx: int = 8192
    n_threads: int | None = None
    max_tokens: int = 256  # default completion length when the client sends none
    kv_cache: bool = True  # activation memory: reuse the KV state of [system + core memories]
    kv_cache_ram_mb: int = 1024  # RAM LRU cap for prefix KV states
    kv_cache_disk: bool = True  # also keep them under data_dir/kvcache


class HFSettings(BaseModel):
    """A local Hugging Face transformers model directory (provider ``hf``)."""

    model_config = ConfigDict(extra="forbid")


    model_path: str | None = None  # a directory with config.json, weights and tokenizer (required)
    model_alias: str = "hf-local"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto: float32 on CPU, bfloat16 on CUDA
    max_tokens: int = 256  # default completion length when the client sends none
    kv_cache: bool = True  # activation memory: reuse the KV cache of [system + core memories]
    kv_cache_ram_mb: int = 1024  # RAM cap of the prefix KV LRU


class UpstreamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # auto: ``openai`` when base_url is set, ``litellm`` when only model is set,
    # else the embedded ``llamacpp`` model.
    provider: str = "auto"
    base_url: str | None = None
    model: str | None = None  # overrides the client's model when set
    api_key: str | None = None  # when unset, the client's bearer token is forwarded
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    models: list[str] = Field(default_factory=list)  # listed by /v1/models if set
    # /v1/responses: ``native`` forwards to the upstream's Responses API,
    # ``bridge`` translates onto chat completions, ``auto`` tries native once
    # and bridges when the upstream has no Responses endpoint.
    responses: Literal["auto", "native", "bridge"] = "auto"
    llamacpp: LlamaCppSettings = Field(default_factory=LlamaCppSettings)
    hf: HFSettings = Field(default_factory=HFSettings)


class OllamaSettings(BaseModel):
    """The Ollama server behind memproxy's native ``/api/*`` routes."""

    model_config = ConfigDict(extra="forbid")


    base_url: str = "http://127.0.0.1:11434"
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0


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
    import os

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
