"""Settings precedence: defaults < YAML file < MEMPROXY_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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

    def check(section: dict, expected: dict, path: str) -> None:
        assert set(section) == set(expected), f"{path}: keys differ"
        for key, value in expected.items():
            if isinstance(value, dict):
                check(section[key], value, f"{path}.{key}")
            else:
                assert section[key] == value, f"{path}.{key}"

    check(example, defaults, "")
    assert load_settings(ROOT / "config.example.yaml").model_dump() == defaults
