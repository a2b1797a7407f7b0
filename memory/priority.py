"""Background work yields the CPU to requests.

The bulk embedding lane (memory/embedder.py) embeds every turn the writer
stores; under sustained chat it is busy all the time, and on two cores it
took CPU from the query lane and the event loop: recalls missed their
deadline while the writer embedded turns nobody was waiting for. Its thread
runs at a lower priority (:data:`BULK_NICENESS` above the process's nice
value; Linux schedules threads one by one), so a recall and the HTTP work
of a request go first and the writer uses what is left. The writer is not
starved: with nothing else to run it gets a core as before, and its batches
grow (one model call for more turns) while it waits.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

BULK_NICENESS = 5


def lower_this_thread(niceness: int = BULK_NICENESS) -> None:
    """Raise the calling thread's nice value by ``niceness`` (where the OS schedules threads by it)."""
    setpriority = getattr(os, "setpriority", None)
    if setpriority is None or niceness <= 0:
        return
    tid = threading.get_native_id()
    try:
        setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except OSError as exc:  # a sandbox may refuse it; the lane still works at normal priority
        log.warning("could not lower the bulk embedding thread's priority: %s", exc)
