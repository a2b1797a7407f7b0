"""Run the real ``memproxy serve`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memproxy_exe() -> str:
    return shutil.which("memproxy", path=str(Path(sys.executable).parent)) or "memproxy"


@contextmanager
def memproxy_serve(*args: str, data_dir: Path) -> Iterator[str]:
    """Start ``memproxy serve ARGS`` on a free port; yield its base URL once healthy."""
    port = free_port()
    command = [memproxy_exe(), "serve", "--port", str(port), "--data-dir", str(data_dir), *args]
    env = {**os.environ, "MEMPROXY_LOG_LEVEL": "warning"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, url)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def _wait_healthy(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"memproxy serve exited early:\n{output}")
        if time.monotonic() > deadline:
            raise AssertionError("memproxy serve did not start in time")
        time.sleep(0.2)
