"""Run an ASGI app on a real uvicorn server on loopback, in a background thread.

Used by the tests and benchmarks to stand up the proxy and the fake upstreams
on real ports. Starting and stopping fail loudly instead of giving up quietly.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# In-flight requests (a fake told to hang, say) get this long to finish once
# the server is asked to stop; then uvicorn cancels them.
GRACEFUL_SHUTDOWN_S = 5


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """``with ServerThread(app) as server: server.url`` — a live HTTP server."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self.server = uvicorn.Server(config)
        self.host = host
        self.port = port
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{id(self):x}", daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def native_id(self) -> int | None:
        """The OS thread id the server runs on (its CPU time is in ``/proc/self/task/<id>``)."""
        return self._thread.native_id

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not start within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.01)
        sockets = [s for server in self.server.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=STOP_TIMEOUT_S)
        if self._thread.is_alive():
            raise TimeoutError(f"server at {self.url} did not stop within {STOP_TIMEOUT_S:.0f} s")

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:  # surfaced to start() through self._error
            self._error = exc
            raise

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
