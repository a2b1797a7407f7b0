"""One MemScheduler across processes: a lease through the shared store.

Every process on a Chroma server (replicas, ``--workers``) runs the
scheduler's loop, but only the process holding the lease makes decisions.
Chroma has no compare-and-swap, so the lease is built from what it has: one
record (``lease:scheduler`` in the ``memproxy_control`` collection) holding
``{holder, expires, epoch, passes, last_pass}``.

Each tick (every ``memory.scheduler.interval_s``) a process reads the record:

* held by another process and not expired (by the reader's clock): stand by;
* absent, expired, or its own: write itself in as holder with
  ``expires = now + ttl`` (a new ``epoch`` when the holder changes), wait
  ``settle`` seconds, read it back. It holds the lease only if the record it
  reads back is still its own write (same holder and epoch) *and* its write
  returned within ``settle`` (a write still in flight could land later and
  overwrite a rival's). It then treats the lease as valid until
  ``ttl - 2 * settle`` after it started writing (its monotonic clock), a margin
  under the ``expires`` others see.

What this guarantees: with the Chroma server answering reads after writes
in order (one node does), clocks of the processes within ``settle`` of each
other, and no process paused longer than ``settle`` between reading back and
checking validity, at most one process makes scheduler decisions at a time
(two racing writers both read back the last write, so only one sees itself).
Outside those assumptions two passes can overlap; a pass is idempotent enough
for that to be harmless (the same promotions computed twice write the same
tiers; a memory promoted by one and demoted by the other ends in one tier,
the next pass decides again). If the holder dies, another process takes over
at its first tick after ``expires``: within ``ttl + interval_s``. Decisions
themselves are tier changes in the store, so they survive every restart.

The embedded store is one process by construction: :class:`LocalLease` is
always held.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

LEASE_ID = "lease:scheduler"
TTL_INTERVALS = 3.0  # the lease lasts this many scheduler intervals ...
MIN_TTL_S = 3.0  # ... and never less
MAX_SETTLE_S = 1.0


def process_id() -> str:
    """This process as a lease holder: host, pid and a nonce (a restarted process is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ControlStore(Protocol):
    async def control_get(
        self, ids: list[str] | None = None, *, prefix: str | None = None, timeout_s: float | None = None
    ) -> dict[str, str]: ...

    async def control_put(self, record_id: str, document: str, *, timeout_s: float | None = None) -> None: ...

    async def control_delete(self, ids: list[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str
    expires: float  # wall clock (epoch seconds)
    epoch: int  # +1 whenever the holder changes
    passes: int = 0  # scheduler passes made under the lease, all holders together
    last_pass: float = 0.0

    @classmethod
    def parse(cls, document: str) -> LeaseRecord | None:
        try:
            data = json.loads(document)
            return cls(str(data["holder"]), float(data["expires"]), int(data["epoch"]),
                       int(data.get("passes", 0)), float(data.get("last_pass", 0.0)))
        except (ValueError, KeyError, TypeError):
            return None

    def dump(self) -> str:
        return json.dumps(asdict(self))


class Lease(Protocol):
    holder: str

    async def acquire(self) -> bool:
        """Take or renew the lease; whether this process holds it now."""
        ...

    def valid(self) -> bool:
        """Whether this process may still act under the lease it last acquired."""
        ...

    async def note_pass(self) -> None:
        """Record a finished scheduler pass (on the shared record)."""
        ...

    def describe(self) -> dict[str, Any]: ...


class LocalLease:
    """One process owns the store (the embedded Chroma): always held."""

    def __init__(self, holder: str | None = None) -> None:
        self.holder = holder or process_id()
        self.passes = 0

    async def acquire(self) -> bool:
        return True

    def valid(self) -> bool:
        return True

    async def note_pass(self) -> None:
        self.passes += 1

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "holder": self.holder, "held": True, "passes": self.passes}


class StoreLease:
    def __init__(
        self,
        store: ControlStore,
        interval_s: float,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.holder = holder or process_id()
        self.ttl_s = max(MIN_TTL_S, TTL_INTERVALS * interval_s)
        self.settle_s = min(MAX_SETTLE_S, self.ttl_s / 10)
        self.clock = clock
        self._valid_until = 0.0  # monotonic
        self.epoch = 0
        self.passes = 0  # passes this process made
        self.last: LeaseRecord | None = None

    async def _read(self) -> LeaseRecord | None:
        found = await self.store.control_get([LEASE_ID])
        document = found.get(LEASE_ID)
        return LeaseRecord.parse(document) if document else None

    async def acquire(self) -> bool:
        record = await self._read()
        self.last = record
        now = self.clock()
        if record is not None and record.holder != self.holder and record.expires > now:
            self._valid_until = 0.0
            return False
        mine = record is not None and record.holder == self.holder
        epoch = record.epoch if mine and record is not None else (record.epoch + 1 if record else 1)
        claim = LeaseRecord(
            self.holder, now + self.ttl_s, epoch,
            record.passes if record else 0, record.last_pass if record else 0.0,
        )
        started = time.monotonic()
        try:
            await self.store.control_put(LEASE_ID, claim.dump(), timeout_s=self.settle_s)
        except Exception as exc:  # a write that did not return in time may still land: not held
            self._valid_until = 0.0
            log.warning("scheduler lease: could not write the lease (%s: %s)", type(exc).__name__, exc)
            return False
        if time.monotonic() - started > self.settle_s:
            self._valid_until = 0.0
            return False
        await asyncio.sleep(self.settle_s)
        back = await self._read()
        self.last = back
        if back is None or back.holder != self.holder or back.epoch != epoch:
            self._valid_until = 0.0
            return False
        if not mine:
            log.info("scheduler lease taken by %s (epoch %d)", self.holder, epoch)
        self.epoch = epoch
        self._valid_until = started + self.ttl_s - 2 * self.settle_s
        return True

    def valid(self) -> bool:
        return time.monotonic() < self._valid_until

    async def note_pass(self) -> None:
        if not self.valid() or self.last is None:
            return
        self.passes += 1
        record = LeaseRecord(self.holder, self.last.expires, self.epoch, self.last.passes + 1, self.clock())
        await self.store.control_put(LEASE_ID, record.dump())
        self.last = record

    def describe(self) -> dict[str, Any]:
        last = self.last
        return {
            "kind": "store",
            "holder": self.holder,
            "held": self.valid(),
            "passes": self.passes,
            "lease_holder": last.holder if last else None,
            "lease_epoch": last.epoch if last else None,
            "ttl_s": self.ttl_s,
        }
