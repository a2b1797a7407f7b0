"""Real server processes, started on free ports and awaited until healthy:
``memproxy serve`` (as a user runs it) and ``chroma run`` (Chroma's server)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from testing.serving import free_port

START_TIMEOUT_S = 90.0


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
        wait_until_healthy(process, f"{url}/healthz", "memproxy serve")
        _drain(process)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


class ServeProcess:
    """``memproxy serve`` as a process this side can ``kill -9`` (crash tests, ``bench load``).

    It runs this checkout's code (``PYTHONPATH`` is set to the repository
    root), with ``env`` added to the environment (``MEMPROXY_*`` settings).
    """

    def __init__(self, *args: str, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root = str(Path(__file__).resolve().parents[1])
        command = [memproxy_exe(), "serve", "--port", str(self.port), "--data-dir", str(data_dir), *args]
        full_env = {**os.environ, "MEMPROXY_LOG_LEVEL": "warning", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_until_healthy(self.process, f"{self.url}/healthz", "memproxy serve")
        except BaseException:
            self.kill()
            raise
        _drain(self.process)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """A normal shutdown (SIGINT)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def chroma_binary() -> Path:
    return Path(sys.executable).parent / "chroma"


class ChromaServer:
    """``chroma run`` on a free port, in its own process group."""

    def __init__(self, path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(chroma_binary()), "run", "--path", str(path), "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
        try:
            wait_until_healthy(self.process, f"{self.url}/api/v2/heartbeat", "chroma run")
        except BaseException:
            self.stop()
            raise
        # Nobody reads its output from here on: let it go nowhere rather than
        # fill the pipe and block the server.
        _drain(self.process)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def wait_until_healthy(
    process: subprocess.Popen[bytes], health_url: str, name: str, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Poll ``health_url`` until it answers 200; raise AssertionError, with the
    process's output, if it exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    last: str = "no answer yet"
    while True:
        try:
            response = httpx.get(health_url, timeout=1)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last = repr(exc)
        if process.poll() is not None:
            raise AssertionError(f"{name} exited with {process.returncode} before {health_url} answered:\n{_output(process)}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(
                f"{name} did not answer {health_url} within {timeout_s:.0f} s (last: {last}):\n{_output(process)}"
            )
        time.sleep(0.2)


def _output(process: subprocess.Popen[bytes]) -> str:
    try:
        out, _ = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        return "(no output: its pipe stayed open)"
    return out.decode(errors="replace") if out else ""


def _drain(process: subprocess.Popen[bytes]) -> None:
    """Read and drop the output nobody reads any more, so a full pipe never blocks the server."""
    stream = process.stdout
    if stream is not None:
        threading.Thread(target=_discard, args=(stream,), name=f"drain-{process.pid}", daemon=True).start()


def _discard(stream: IO[bytes]) -> None:
    while stream.read(65536):
        pass


def stored_contents(url: str, user: str, timeout_s: float = 60.0) -> list[str]:
    """Every memory of ``user`` on the server at ``url``, paged through ``GET /v1/memories``."""
    out: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"user": user, "limit": 1000}
        if after:
            params["after"] = after
        page = httpx.get(f"{url}/v1/memories", params=params, timeout=timeout_s).json()
        out.extend(m["content"] for m in page["data"])
        if not page["has_more"]:
            return out
        after = page["last_id"]
