"""The real ``memproxy serve`` command, as a user runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from openai import OpenAI

from testing.processes import memproxy_exe, memproxy_serve


def test_memproxy_serve_answers_with_the_openai_client(tmp_path: Path, upstream_url: str, upstream) -> None:
    with memproxy_serve("--upstream-base-url", upstream_url, data_dir=tmp_path / "data") as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="sk-cli", max_retries=0)
        reply = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "ping"}])
        assert reply.choices[0].message.content == "Echo: ping"
        assert upstream.chat_requests()[-1].body["model"] == "fake-model"
    assert (tmp_path / "data").is_dir()


def test_bad_config_exits_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [memproxy_exe(), "serve", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "config file not found" in result.stderr
