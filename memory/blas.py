"""numpy's BLAS on one thread.

Recall's one big array operation is a matrix-vector product (every memory's
vector against the query's), run on the recall pool's threads. numpy's
bundled OpenBLAS splits it over every core and its worker threads spin while
they wait; on a busy 2-core machine (recall pool, embedding lanes, Chroma,
the HTTP server) that turned a 10,000 x 384 product from 0.56 ms (one thread)
into 16 ms p50 and 35 ms p90, and at 100,000 memories 50 ms against 34 ms
(a one-off measurement, load average ~13). Parallelism comes from serving
several requests at once, not from splitting one product, so the process
keeps BLAS on one thread (:func:`single_threaded_blas`, called when an
engine is built).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_done = False


def single_threaded_blas() -> None:
    """Limit numpy's BLAS to one thread, process-wide (idempotent)."""
    global _done
    if _done:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    _done = True
