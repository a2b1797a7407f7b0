"""Running the server: one process or ``--workers N``, and graceful drain.

``memproxy serve`` runs uvicorn in this process; ``--workers N`` (N > 1)
runs uvicorn's supervisor, which binds the port once and starts N worker
processes, each building the app with :func:`worker_app` from the same
settings (the CLI's overrides travel in ``MEMPROXY_SERVE_ARGS``; YAML and
``MEMPROXY_*`` are read again by each worker, identically). A worker that
dies is replaced by the supervisor.

Workers share nothing in memory, so everything shared must be shared
outside: the store must be a Chroma server (``memory.chroma_url``; the
embedded store is one process's files, see :func:`workers_problem`), the
write journal is one SQLite file every worker claims rows in
(memory/journal.py), and the scheduler runs under the store's lease
(memory/lease.py).

Drain: on SIGTERM (or SIGINT) uvicorn stops accepting connections, lets
requests in flight finish (streams included) for up to ``--drain-timeout``
seconds, then the app shuts down: the journal's pending writes are flushed
into the store (bounded), and the process exits 0. From the signal on,
``/readyz`` answers 503 ``draining`` on connections still open.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import os
import queue
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from fastapi import FastAPI

from proxy.logqueue import PollingQueueListener

ARGS_ENV = "MEMPROXY_SERVE_ARGS"
DRAIN_TIMEOUT_S = 30.0

log = logging.getLogger("memproxy")


def workers_problem(workers: int, chroma_url: str | None) -> str | None:
    """Why ``--workers`` cannot run with these settings, or None."""
    if workers < 1:
        return f"--workers must be at least 1 (got {workers})"
    if workers > 1 and not chroma_url:
        return (
            f"--workers {workers} needs a Chroma server shared by the workers: set memory.chroma_url "
            "(MEMPROXY_MEMORY__CHROMA_URL, e.g. http://127.0.0.1:8001 for `chroma run --port 8001`). "
            "The embedded store (memory.chroma_path) belongs to one process; run one worker with it."
        )
    return None


def worker_app() -> FastAPI:
    """The app of one ``--workers`` process (uvicorn's factory), built from the parent's settings."""
    from proxy.app import create_app
    from proxy.config import load_settings
    from proxy.environment import prepare_environment

    prepare_environment()
    spec = json.loads(os.environ.get(ARGS_ENV, "{}"))
    settings = load_settings(spec.get("config"), **spec.get("overrides", {}))
    configure_logging(settings.log_level)
    return create_app(settings)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that say at INFO what the access log already says, once per request
# (httpx: "HTTP Request: POST .../chat/completions 200"): kept at WARNING unless
# the level is DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore")
_listener: PollingQueueListener | None = None


def configure_logging(level: str) -> None:
    """The server's logging: ``level`` on the root logger, to stderr, unless the
    host program configured logging already.

    Records are handed to a queue on the calling thread and written to stderr
    by a listener thread, so the event loop never waits on a write to a slow
    pipe (the access log is a line per request); the listener polls the queue
    rather than being woken per record (proxy/logqueue.py). Records carry no
    caller, thread or process fields (the format prints none; computing them
    is most of a record's cost). The listener is stopped, and what it holds
    written, at exit.
    """
    global _listener
    quiet_chatty_loggers(level)
    root = logging.getLogger()
    if root.handlers:
        return
    stderr = logging.StreamHandler()
    stderr.setFormatter(logging.Formatter(LOG_FORMAT))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    root.addHandler(logging.handlers.QueueHandler(records))
    root.setLevel(level.upper())
    skip_unused_record_fields()
    _listener = PollingQueueListener(records, stderr)
    _listener.start()
    atexit.register(stop_logging)


def skip_unused_record_fields() -> None:
    """Make records without the fields :data:`LOG_FORMAT` does not print: the
    caller's file and line (a stack walk per record), thread and process names
    (the logging HOWTO's "Optimization" section names these switches)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def stop_logging() -> None:
    """Write what the log queue holds and stop its thread (at exit)."""
    global _listener
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()


def quiet_chatty_loggers(level: str) -> None:
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)


def run(
    config: str | None,
    overrides: dict[str, Any],
    *,
    workers: int,
    drain_timeout_s: float,
) -> int:
    """Serve until stopped; the process's exit status."""
    import uvicorn

    from proxy.app import create_app
    from proxy.config import load_settings

    settings = load_settings(config, **overrides)
    configure_logging(settings.log_level)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "timeout_graceful_shutdown": drain_timeout_s,
        # with the h11 parser, let headers up to limits.max_header_bytes reach the limits middleware (431, OpenAI shape)
        "h11_max_incomplete_event_size": settings.limits.max_header_bytes + 1024,
    }
    # uvicorn re-raises the signal that stopped it once it is done: a graceful stop is a success
    signal.signal(signal.SIGTERM, _stopped)
    if workers == 1:
        uvicorn.run(create_app(settings), **common)
        return 0
    os.environ[ARGS_ENV] = json.dumps({"config": config, "overrides": overrides})
    if settings.resolved_provider() in ("llamacpp", "hf"):
        log.warning("--workers %d with a local model loads the model once per worker", workers)
    uvicorn.run("proxy.serving:worker_app", factory=True, workers=workers, **common)
    return 0


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn finished draining: nothing left to do."""


class Drain:
    """Whether this process is draining: set from the first SIGTERM/SIGINT uvicorn receives."""

    def __init__(self) -> None:
        self.draining = False

    def watch(self) -> None:
        """Chain onto the stop signals' handlers (uvicorn's, installed by the time the app starts).

        Only the main thread can set signal handlers; an app served from
        another thread (tests) is simply never draining.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if callable(previous):
                signal.signal(sig, self._chain(previous))

    def _chain(self, previous: Callable[[int, FrameType | None], Any]) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            if not self.draining:
                log.info("draining: no new connections; finishing requests in flight")
            self.draining = True
            previous(signum, frame)

        return handler
