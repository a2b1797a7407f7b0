"""memory/admission.py: past the backlog limit, requests wait and are let in, in order, as the writer makes room."""

from __future__ import annotations

import asyncio

from memory.admission import Admission


def test_waiters_are_let_in_first_come_first_served_only_as_far_as_there_is_room() -> None:
    async def scenario() -> None:
        backlog = {"depth": 0}
        admission = Admission(lambda: backlog["depth"])
        assert await admission.wait(limit=4, timeout_s=1.0)  # room: no wait
        backlog["depth"] = 4
        order: list[int] = []

        async def request(n: int) -> bool:
            let_in = await admission.wait(limit=4, timeout_s=5.0)
            order.append(n)
            backlog["depth"] += 1  # it journals its turn
            return let_in

        tasks = [asyncio.create_task(request(n)) for n in range(3)]
        await asyncio.sleep(0.05)
        assert order == [] and admission.waiting == 3
        backlog["depth"] = 2  # the writer stored two turns
        admission.stored(2)
        await asyncio.sleep(0.3)
        assert order == [0, 1] and admission.waiting == 1  # the backlog is full again: the third still waits
        backlog["depth"] = 0
        admission.stored(5)
        assert await asyncio.gather(*tasks) == [True, True, True]
        assert order == [0, 1, 2]

    asyncio.run(scenario())


def test_no_room_in_time_is_false_and_leaves_no_waiter() -> None:
    async def scenario() -> None:
        admission = Admission(lambda: 10)
        assert not await admission.wait(limit=4, timeout_s=0.02)
        assert admission.waiting == 0

    asyncio.run(scenario())


def test_room_made_without_a_stored_batch_still_lets_waiters_in() -> None:
    async def scenario() -> None:
        backlog = {"depth": 8}
        admission = Admission(lambda: backlog["depth"])
        waiter = asyncio.create_task(admission.wait(limit=4, timeout_s=5.0))
        await asyncio.sleep(0.01)
        backlog["depth"] = 0  # e.g. a forget removed journaled turns
        assert await waiter

    asyncio.run(scenario())
