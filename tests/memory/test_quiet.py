"""Background work steps aside for searches (memory/quiet.py): a deferred save starts
only once searches pause, and a saver's slices wait while one runs."""

from __future__ import annotations

import asyncio
import pickle
import threading

from memory import snapshot
from memory.quiet import Activity
from memory.snapshot import encoded
from tests.memory.test_large_owners import _owner


def test_quiet_waits_for_searches_to_pause() -> None:
    async def scenario() -> list[str]:
        activity = Activity()
        events: list[str] = []
        release = asyncio.Event()

        async def search() -> None:
            with activity.search():
                events.append("search")
                await release.wait()
            events.append("search done")

        async def deferred() -> None:
            await activity.quiet(for_s=0.05, at_most_s=30.0)
            events.append("save")

        searching = asyncio.create_task(search())
        await asyncio.sleep(0)
        assert activity.busy()
        saving = asyncio.create_task(deferred())
        await asyncio.sleep(0.2)  # the search is still running: the save has not started
        assert events == ["search"]
        release.set()
        await asyncio.gather(searching, saving)
        assert not activity.busy()
        return events

    assert asyncio.run(scenario()) == ["search", "search done", "save"]


def test_quiet_gives_up_waiting_at_its_bound() -> None:
    async def scenario() -> bool:
        activity = Activity()
        with activity.search():  # a search that never ends before the bound
            await activity.quiet(for_s=1.0, at_most_s=0.05)
            return activity.busy()

    assert asyncio.run(scenario())


def test_pause_blocks_a_thread_only_while_a_search_runs() -> None:
    activity = Activity()
    activity.pause(at_most_s=5.0)  # idle: returns at once (else this test would hang for 5 s)
    done = threading.Event()
    with activity.search():
        worker = threading.Thread(target=lambda: (activity.pause(at_most_s=30.0), done.set()))
        worker.start()
        assert not done.wait(0.1)  # held while the search runs
    assert done.wait(10.0)  # released once it ends
    worker.join()


def test_encoding_pauses_between_slices_and_saves_the_same_state(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(snapshot, "ENCODE_SLICE", 50)
    index = _owner(400)
    calls: list[int] = []
    paused = encoded(index.state(), lambda: calls.append(1))  # type: ignore[arg-type]
    plain = encoded(index.state())  # type: ignore[arg-type]
    assert len(calls) >= 400 // 50
    assert pickle.dumps(paused) == pickle.dumps(plain)
