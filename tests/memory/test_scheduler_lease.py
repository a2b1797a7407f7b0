"""One MemScheduler across processes sharing a Chroma server (memory/lease.py):
the lease is held by one engine at a time, a racing pair never both hold it,
it moves when the holder's lease expires, and the holder decides on every
process's recall evidence."""

from __future__ import annotations

import asyncio
import time

from memory.chroma_store import ChromaStore
from memory.cube import Owner
from memory.engine import MemoryEngine, NewMemory
from memory.lease import LocalLease, StoreLease
from testing.processes import ChromaServer
from tests.memory.memory_helpers import EngineFactory

ANN = Owner(user="ann")
POLICY = {"interval_s": 1.0, "window_requests": 10, "promote_min_recalls": 4, "demote_idle_s": 3600}


def test_the_embedded_store_holds_the_lease_trivially(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        assert isinstance(engine.scheduler.lease, LocalLease) and engine.scheduler.shared is None
        assert await engine.scheduler.tick() == [] and engine.scheduler.passes == 1

    open_engine.run(scenario())


def test_racing_processes_never_both_hold_the_lease(chroma_server: ChromaServer) -> None:
    async def scenario() -> None:
        store = ChromaStore.remote(chroma_server.url)
        rounds_held = 0
        try:
            for round_ in range(4):
                # each round's clocks run past every earlier lease: the record is expired for all three
                skew = 1000.0 * (round_ + 1)
                leases = [StoreLease(store, 5.0, clock=lambda s=skew: time.time() + s) for _ in range(3)]
                held = await asyncio.gather(*(lease.acquire() for lease in leases))
                assert sum(held) <= 1, held
                assert [lease.valid() for lease in leases] == list(held)
                rounds_held += sum(held)
        finally:
            await store.aclose()
        # a write slower than the settle delay gives the lease up: on a loaded machine a round may have no holder
        assert rounds_held >= 1, "no round had a holder: the race proved nothing"

    asyncio.run(scenario())


def test_one_engine_decides_on_every_engines_evidence_and_the_lease_moves_when_it_expires(
    open_engine: EngineFactory, chroma_server: ChromaServer
) -> None:
    async def scenario() -> None:
        a: MemoryEngine = await open_engine(chroma_url=chroma_server.url, scheduler=POLICY)
        b: MemoryEngine = await open_engine(chroma_url=chroma_server.url, scheduler=POLICY)
        assert isinstance(a.scheduler.lease, StoreLease) and isinstance(b.scheduler.lease, StoreLease)
        [cello] = await a.add(ANN, [NewMemory("Ann plays the cello in a string quartet.")])

        assert await a.scheduler.tick() == []  # A takes the lease (nothing to decide yet)
        assert a.scheduler.lease.valid()
        # two recalls through each process: neither alone reaches promote_min_recalls (4)
        for engine in (a, b):
            for _ in range(2):
                engine.recalls.note("ann", [cello.id])
        assert await b.scheduler.tick() is None  # B stands by, and publishes its evidence
        assert not b.scheduler.lease.valid() and b.scheduler.standby == 1
        made = await a.scheduler.tick()
        assert made is not None and [(d.action, d.memory_id) for d in made] == [("promote", cello.id)]
        assert (await b.get(cello.id)).tier == "core"
        epoch = a.scheduler.lease.epoch

        # A stops ticking (as if dead); by the time its lease has expired B takes it
        later = b.scheduler.lease
        b.scheduler.lease = StoreLease(b.store, 1.0, holder=later.holder, clock=lambda: time.time() + 60)  # type: ignore[arg-type]
        assert await b.scheduler.tick() is not None
        assert b.scheduler.lease.valid() and b.scheduler.lease.epoch == epoch + 1
        assert await a.scheduler.tick() is None and not a.scheduler.lease.valid()  # A, back, stands by

    open_engine.run(scenario())
