"""The real ``memproxy serve`` command, as a user runs it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from openai import OpenAI

from tests.e2e.test_errors import free_port


def test_memproxy_serve_answers_with_the_openai_client(tmp_path: Path, upstream_url: str, upstream) -> None:
    port = free_port()
    exe = shutil.which("memproxy", path=str(Path(sys.executable).parent)) or "memproxy"
    env = {**os.environ, "MEMPROXY_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--upstream-base-url", upstream_url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "memproxy serve did not start"
            time.sleep(0.2)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-cli", max_retries=0)
        reply = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "ping"}])
        assert reply.choices[0].message.content == "Echo: ping"
        assert upstream.chat_requests()[-1].body["model"] == "fake-model"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert (tmp_path / "data").is_dir()


def test_bad_config_exits_with_a_message(tmp_path: Path) -> None:
    exe = shutil.which("memproxy", path=str(Path(sys.executable).parent)) or "memproxy"
    result = subprocess.run([exe, "serve", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "config file not found" in result.stderr
