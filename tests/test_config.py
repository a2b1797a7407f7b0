"""Settings precedence: defaults < YAML file < MEMPROXY_* environment < flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from adapters.hf_upstream import HFSettings
from adapters.llamacpp_upstream import LlamaCppSettings
from adapters.registry import UnknownUpstream, UpstreamRegistry
from adapters.settings import InvalidUpstreamSettings, UpstreamSettings
from proxy.config import load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_defaults():
    settings = load_settings()
    assert settings.port == 8000 and settings.host == "127.0.0.1"
    assert settings.memory.token_budget == 1024
    assert settings.memory.recall_deadline_ms == 200
    assert settings.memory.placement == "system"
    assert settings.resolved_provider() == "llamacpp"


def test_file_then_env_then_flags(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"port": 9000, "memory": {"token_budget": 512, "placement": "last_user"}}))
    assert load_settings(config).port == 9000
    monkeypatch.setenv("MEMPROXY_PORT", "9100")
    monkeypatch.setenv("MEMPROXY_MEMORY__TOKEN_BUDGET", "2048")
    settings = load_settings(config)
    assert settings.port == 9100
    assert settings.memory.token_budget == 2048
    assert settings.memory.placement == "last_user"  # file value kept beside the env one
    settings = load_settings(config, port=9200, memory={"token_budget": None})
    assert settings.port == 9200 and settings.memory.token_budget == 2048


def test_provider_resolution():
    assert load_settings(upstream={"base_url": "http://x/v1"}).resolved_provider() == "openai"
    assert load_settings(upstream={"model": "anthropic/claude"}).resolved_provider() == "litellm"
    assert load_settings(upstream={"provider": "litellm", "base_url": "http://x/v1"}).resolved_provider() == "litellm"


def test_unknown_keys_are_rejected(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("memory:\n  token_budgte: 10\n")
    with pytest.raises(ValueError):
        load_settings(config)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "absent.yaml")


def test_example_config_documents_every_key_with_its_default():
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    defaults = load_settings().model_dump()
    # each built-in backend documents its own section (declared by the backend)
    defaults["upstream"]["llamacpp"] = LlamaCppSettings().model_dump()
    defaults["upstream"]["hf"] = HFSettings().model_dump()

    def check(section: dict, expected: dict, path: str) -> None:
        assert set(section) == set(expected), f"{path}: keys differ"
        for key, value in expected.items():
            if isinstance(value, dict):
                check(section[key], value, f"{path}.{key}")
            else:
                assert section[key] == value, f"{path}.{key}"

    check(example, defaults, "")
    assert load_settings(ROOT / "config.example.yaml").model_dump() == defaults


def test_a_backend_validates_its_own_section():
    settings = load_settings(upstream={"llamacpp": {"n_ctx": 4096}})
    assert settings.upstream.options("llamacpp", LlamaCppSettings).n_ctx == 4096
    with pytest.raises(InvalidUpstreamSettings, match="upstream.llamacpp.n_ctxx"):
        load_settings(upstream={"llamacpp": {"n_ctxx": 1}}).upstream.options("llamacpp", LlamaCppSettings)


def test_a_section_no_backend_owns_is_refused_at_startup():
    registry = UpstreamRegistry.from_entry_points()
    registry.check(load_settings(upstream={"llamacpp": {"n_ctx": 512}}).upstream)
    with pytest.raises(UnknownUpstream, match="upstream.lamacpp"):
        registry.check(load_settings(upstream={"lamacpp": {"n_ctx": 512}}).upstream)
    with pytest.raises(ValueError, match="upstream.timout_s"):
        load_settings(upstream={"timout_s": 5})


def test_a_third_party_backend_declares_its_settings_like_the_built_ins(tmp_path):
    class EchoSettings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        greeting: str = "hi"

    made: list[EchoSettings] = []

    def create(settings: UpstreamSettings, data_dir: Path) -> Any:
        made.append(settings.options("echo", EchoSettings))
        return object()

    registry = UpstreamRegistry()
    registry.register("echo", create)
    settings = load_settings(upstream={"provider": "echo", "echo": {"greeting": "hello"}})
    registry.check(settings.upstream)
    registry.create(settings.resolved_provider(), settings.upstream, tmp_path)
    assert made == [EchoSettings(greeting="hello")]
