"""One journal file shared by several processes (``memproxy serve --workers N``):
no item is taken by two live holders, and a dead holder's items are taken over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from memory.cube import MemCube, Owner
from memory.journal import Entry, Journal, journal_path


def entries(user: str, n: int, start: int = 0) -> list[Entry]:
    owner = Owner(user=user)
    return [Entry(MemCube(id=f"m_{user}_{i:04d}", owner=owner, content=f"{user} item {i}"), "turn") for i in range(start, start + n)]


def test_two_holders_never_take_the_same_item(tmp_path: Path) -> None:
    path = journal_path(tmp_path)

    async def scenario() -> None:
        one, two = await Journal(path).open(), await Journal(path).open()
        await one.append(entries("alice", 10))
        await two.append(entries("bob", 10))
        first = await one.next_unclaimed(15)
        second = await two.next_unclaimed(15)
        ids_one, ids_two = {e.cube.id for e in first}, {e.cube.id for e in second}
        assert ids_one.isdisjoint(ids_two) and len(ids_one | ids_two) == 20
        # a holder gets back what it took and has not stored yet; the other holder still not
        assert {e.cube.id for e in await one.next_unclaimed(50)} == ids_one
        assert {e.cube.id for e in await two.next_unclaimed(50)} == ids_two
        await one.complete(sorted(ids_one))
        assert await two.pending_count() == len(ids_two)
        await one.aclose()
        await two.aclose()

    asyncio.run(scenario())


CHILD = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from memory.cube import MemCube, Owner
    from memory.journal import Entry, Journal

    async def main():
        journal = await Journal(sys.argv[1]).open()
        owner = Owner(user="carol")
        cubes = [MemCube(id=f"m_carol_{i:04d}", owner=owner, content=f"carol item {i}") for i in range(6)]
        await journal.append([Entry(c, "api") for c in cubes[:3]], claimed=True)  # a request handler's
        await journal.append([Entry(c, "turn") for c in cubes[3:]])
        await journal.next_unclaimed(10)  # its writer took them
        print("taken", flush=True)
        time.sleep(600)

    asyncio.run(main())
    """
)


def test_the_items_of_a_killed_holder_are_taken_over_by_a_live_one(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], env=env, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"taken"

        async def while_alive() -> None:
            live = await Journal(path).open()
            assert await live.next_unclaimed(10) == []  # all six are the child's while it lives
            await live.aclose()

        asyncio.run(while_alive())
    finally:
        child.send_signal(signal.SIGKILL)  # kill -9: the kernel drops its lock, nothing else runs
        child.wait(timeout=30)

    async def after_death() -> None:
        survivor = await Journal(path).open()  # opening sweeps claims of dead holders
        taken = await survivor.next_unclaimed(10)
        assert sorted(e.cube.id for e in taken) == [f"m_carol_{i:04d}" for i in range(6)]
        assert survivor.depth == 6
        await survivor.aclose()

    asyncio.run(after_death())
    assert list((path.parent / "holders").iterdir()) == []  # the dead holder's and the survivor's lock files are gone
