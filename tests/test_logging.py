"""Logging belongs to the host program: building the app configures none of it."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from proxy.logqueue import PollingQueueListener
from proxy.mcp.tools import build_server
from proxy.serving import configure_logging, stop_logging


def test_building_the_mcp_server_leaves_root_logging_alone() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = []  # as in a program that configured nothing (pytest's own handlers set aside)
    try:

        @asynccontextmanager
        async def connect(ctx: Any) -> AsyncIterator[httpx.AsyncClient]:
            async with httpx.AsyncClient() as client:
                yield client

        build_server(connect)
        assert root.handlers == []
        assert root.level == saved_level
    finally:
        root.handlers = saved_handlers


def test_serve_logging_keeps_httpx_request_lines_out_of_info() -> None:
    saved = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    try:
        configure_logging("info")
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
        configure_logging("debug")
        assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


RECORD_SWITCHES = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


def test_serve_logging_writes_from_a_queue_thread_and_flushes_at_stop(capfd: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_switches = {name: getattr(logging, name) for name in RECORD_SWITCHES}
    root.handlers = []
    try:
        configure_logging("info")
        (handler,) = root.handlers
        assert isinstance(handler, logging.handlers.QueueHandler)  # the caller only enqueues
        logging.getLogger("memproxy.access").info("POST %s %d", "/v1/chat/completions", 200)
        logging.getLogger("memproxy").debug("not at info")
        stop_logging()  # what the queue held is written
        err = capfd.readouterr().err
        assert "INFO memproxy.access: POST /v1/chat/completions 200" in err
        assert "not at info" not in err
    finally:
        stop_logging()
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        for name, value in saved_switches.items():
            setattr(logging, name, value)


def test_the_polling_listener_writes_a_burst_in_order_without_being_stopped() -> None:
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    written: list[str] = []
    seen = threading.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            written.append(record.getMessage())
            if len(written) == 50:
                seen.set()

    listener = PollingQueueListener(records, Collect())
    listener.start()
    try:
        handler = logging.handlers.QueueHandler(records)
        for n in range(50):
            handler.handle(logging.LogRecord("memproxy.access", logging.INFO, __file__, 1, "line %d", (n,), None))
        assert seen.wait(timeout=30)  # written while the listener runs, not only at stop
        assert written == [f"line {n}" for n in range(50)]
    finally:
        listener.stop()
