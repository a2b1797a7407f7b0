"""A warning that can fire on every request, logged at most once per interval.

Under overload every request may miss its recall deadline; one log line per
request then costs the event loop a measurable share of its time (formatting
and writing ~150 lines/s took ~13% of it in ``memproxy bench load``) exactly
when it has none to spare. The first occurrence is logged at once; the ones
that follow within :data:`INTERVAL_S` are counted and reported with the next
line logged.
"""

from __future__ import annotations

import logging
import time

INTERVAL_S = 10.0


class RateLimitedWarning:
    def __init__(self, logger: logging.Logger, interval_s: float = INTERVAL_S) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._next_at = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next_at:
            self._suppressed += 1
            return
        self._next_at = now + self._interval_s
        if self._suppressed:
            suppressed, self._suppressed = self._suppressed, 0
            self._log.warning(message + " (and %d more like it in the last %.0f s)", *args, suppressed, self._interval_s)
        else:
            self._log.warning(message, *args)
