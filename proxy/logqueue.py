"""The log queue's listener: it looks at the queue every :data:`POLL_S` instead
of waiting on it.

A listener blocked on the queue is woken by every record: with the access log
that is a thread wake-up and a GIL hand-off in the middle of each request, on
the event loop's core. Polling lets a burst of records queue up and be written
together while the loop serves requests; a record reaches stderr at most
:data:`POLL_S` late.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import time
from typing import Any

POLL_S = 0.05


class PollingQueueListener(logging.handlers.QueueListener):
    """:class:`logging.handlers.QueueListener` that polls (``dequeue`` is its documented hook)."""

    def __init__(self, records: queue.SimpleQueue[Any], *handlers: logging.Handler) -> None:
        super().__init__(records, *handlers)
        self.records = records

    def dequeue(self, block: bool) -> Any:
        while True:
            try:
                return self.records.get_nowait()
            except queue.Empty:
                if not block:
                    raise
                time.sleep(POLL_S)
