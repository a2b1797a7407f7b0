"""The embedded store in a process of its own: a private ``chroma run``.

Chroma's embedded ``add`` holds the GIL for its whole call (its Rust
bindings wait on their runtime without releasing it): tens of milliseconds
per writer batch during which the serving interpreter runs nothing else, so
the chat call that overlaps a write stalls. With ``memory.chroma_process:
child`` (what ``auto``, the default, means on Linux) the data folder's Chroma
runs as a child process, ``chroma run --path <data>/chroma`` on a free
loopback port, and the engine talks to it as to a Chroma server, with the
embedded store's semantics (one writer: vectors cached in process, no change
log polling, no scheduler lease). The folder's format is the same either
way, so a data folder moves between the settings. Measured in
docs/benchmarks.md ("Chroma in a child process": a 16-row add stalls a
ticker thread up to ~90 ms in process, ~11 ms against the child; ``memproxy
bench latency`` memory-on p95 about halves).

The child is this process's alone: it listens on 127.0.0.1 only, it is
stopped when the engine closes, and on Linux it is sent SIGTERM when the
thread that started it ends (``PR_SET_PDEATHSIG``), so a killed proxy does
not leave it behind. The proxy and the child hold one ``flock`` on
``chroma-child.lock`` beside the folder (the child inherits it), and a new
child is started only once it is free: never two Chroma processes on one
folder, even while the last child of a killed proxy is still stopping. Its
output goes to ``chroma-child.log`` beside the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx

from memory.errors import StoreUnavailable

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
ATTEMPTS = 3  # starts tried when the child exits while starting (its free port taken meanwhile)
PR_SET_PDEATHSIG = 1

__all__ = ["ChromaChild", "child_process"]


def child_process(setting: str) -> bool:
    """Whether ``memory.chroma_process`` runs the embedded store as a child: ``auto`` on
    Linux only, the one platform where the child is sure to die with the proxy."""
    return setting == "child" or (setting == "auto" and sys.platform.startswith("linux"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _chroma_command() -> str:
    beside = Path(sys.executable).with_name("chroma")  # the venv's own entry point
    return str(beside) if beside.exists() else "chroma"


class ChromaChild:
    """A running ``chroma run`` over one folder (see the module docstring)."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, path: Path, lock: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.path = path
        self._lock = lock

    @classmethod
    async def start(cls, path: Path, *, timeout_s: float = START_TIMEOUT_S) -> ChromaChild:
        """Start the child once the folder is free; a child that exits while starting (its
        port taken meanwhile) is started again on another port, up to :data:`ATTEMPTS` times."""
        path.mkdir(parents=True, exist_ok=True)
        lock = await _folder_lock(path.with_name(f"{path.name}-child.lock"), timeout_s)
        logfile = path.with_name(f"{path.name}-child.log")
        for attempt in range(1, ATTEMPTS + 1):
            port = _free_port()
            try:
                process = await _spawn(path, port, logfile, lock)
            except BaseException:
                os.close(lock)  # no chroma to run (not installed?): the folder is free again
                raise
            child = cls(process, port, path, lock)
            try:
                await child._ready(timeout_s, logfile)
            except StoreUnavailable:
                retry = attempt < ATTEMPTS and child.process.returncode is not None  # exited: port taken?
                await child.stop(release=not retry)
                if not retry:
                    raise
                continue
            except BaseException:
                await child.stop()
                raise
            log.info("embedded store: chroma pid %d on %s over %s", child.process.pid, child.url, path)
            return child
        raise AssertionError("unreachable")

    async def _ready(self, timeout_s: float, logfile: Path) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise StoreUnavailable(f"chroma exited with {self.process.returncode} at start; see {logfile}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/api/v2/heartbeat")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise StoreUnavailable(f"chroma did not answer within {timeout_s:.0f} s of its start; see {logfile}")

    async def stop(self, *, release: bool = True) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT_S`; then the folder's lock is
        let go (``release``); idempotent."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("chroma pid %d ignored SIGTERM for %.0f s; killing it", self.process.pid, STOP_TIMEOUT_S)
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if release and self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


async def _folder_lock(lockfile: Path, timeout_s: float) -> int:
    """An exclusive ``flock`` on ``lockfile``, waited for up to ``timeout_s``. The child
    inherits it, so the folder stays locked until both the proxy and its child are gone:
    a restarted proxy never starts a second Chroma while the last one is still stopping."""
    import fcntl

    fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise StoreUnavailable(f"{lockfile.with_suffix('')} is in use by another process "
                                       f"(another memproxy, or a Chroma child still stopping)") from None
            await asyncio.sleep(0.05)


async def _spawn(path: Path, port: int, logfile: Path, lock: int) -> asyncio.subprocess.Process:
    with logfile.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            _chroma_command(), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port),
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, pass_fds=(lock,),
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - async-signal-safe: one prctl call
            # its own log: warnings and errors only (RUST_LOG in the proxy's environment overrides)
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False", "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
