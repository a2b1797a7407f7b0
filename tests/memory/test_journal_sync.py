"""What the journal fsyncs: every new write and every removal; never the writer's bookkeeping."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from memory.cube import MemCube, Owner
from memory.journal import WARM_WAL_BYTES, Entry, Journal, journal_path

ALICE = Owner(user="alice")


def cube(n: int) -> MemCube:
    return MemCube(id=f"mem_{ALICE.key}_{n:024x}", owner=ALICE, content=f"turn {n}")


def barrier_rows(path: Path) -> int:
    """The barrier row's count (a removal that found nothing still wrote it)."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM barrier").fetchone()[0])


def test_writes_and_removals_sync_the_writers_bookkeeping_does_not(tmp_path: Path) -> None:
    async def scenario() -> None:
        journal = await Journal(journal_path(tmp_path)).open()
        try:
            base = journal.syncs
            await journal.append([Entry(cube(1), "turn"), Entry(cube(2), "turn")])
            assert journal.syncs == base + 1  # acknowledged: fsync'd
            taken = await journal.next_unclaimed(10)
            assert [e.cube.id for e in taken] == [cube(1).id, cube(2).id]
            await journal.complete([cube(1).id])
            assert journal.syncs == base + 1  # claim and completion: written, not fsync'd
            assert await journal.pending_count("alice") == 1  # ... but committed
            await journal.drop_id(cube(1).id)  # already gone from the journal: syncs anyway
            assert journal.syncs == base + 2
            assert barrier_rows(journal_path(tmp_path)) == 1
            assert (await journal.drop_owner("alice")) == (1, 0)
            assert journal.syncs == base + 3
        finally:
            await journal.aclose()

    asyncio.run(scenario())


def test_a_completion_without_fsync_is_still_committed(tmp_path: Path) -> None:
    """``synchronous=NORMAL`` still hands the commit to the kernel: only an OS crash could lose it."""

    async def scenario() -> None:
        journal = await Journal(journal_path(tmp_path)).open()
        await journal.append([Entry(cube(1), "turn")])
        await journal.next_unclaimed(10)
        await journal.complete([cube(1).id])
        await journal.aclose()
        reopened = await Journal(journal_path(tmp_path)).open()
        try:
            assert await reopened.pending_count() == 0
            assert await reopened.next_unclaimed(10) == []
        finally:
            await reopened.aclose()

    asyncio.run(scenario())


def test_the_wal_is_given_its_working_size_at_open(tmp_path: Path) -> None:
    """Commits then overwrite allocated blocks instead of growing the file (a cheaper fsync)."""

    async def scenario() -> None:
        journal = await Journal(journal_path(tmp_path)).open()
        try:
            wal = Path(f"{journal_path(tmp_path)}-wal")
            assert wal.stat().st_size >= WARM_WAL_BYTES
            await journal.append([Entry(cube(n), "turn") for n in range(3)])
            assert await journal.pending_count("alice") == 3
        finally:
            await journal.aclose()
        reopened = await Journal(journal_path(tmp_path)).open()  # the WAL was deleted at close: warmed again
        try:
            assert Path(f"{journal_path(tmp_path)}-wal").stat().st_size >= WARM_WAL_BYTES
            assert await reopened.pending_count("alice") == 3
        finally:
            await reopened.aclose()

    asyncio.run(scenario())
