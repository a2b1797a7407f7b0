"""memory/recallgate.py: recalls start a few at a time, in arrival order; the limit follows their time."""

from __future__ import annotations

import asyncio

from memory.recallgate import RecallGate


def test_recalls_beyond_the_limit_wait_and_start_in_arrival_order() -> None:
    async def scenario() -> None:
        gate = RecallGate(0.2, initial=2, minimum=1)
        assert await gate.enter(1.0) and await gate.enter(1.0)
        order: list[int] = []

        async def waiter(n: int) -> None:
            assert await gate.enter(5.0)
            order.append(n)

        tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
        await asyncio.sleep(0.01)
        assert gate.waiting == 3 and order == []  # two running: the others wait before their recall starts
        gate.leave(0.08)  # neither fast nor slow: the limit stays
        await asyncio.sleep(0.01)
        assert order == [0]
        gate.leave(0.08)
        gate.leave(0.08)
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2] and gate.running == 2 and gate.limit == 2

    asyncio.run(scenario())


def test_a_request_that_waited_too_long_goes_on_without_a_place() -> None:
    async def scenario() -> None:
        gate = RecallGate(0.2, initial=2, minimum=2)
        assert await gate.enter(1.0) and await gate.enter(1.0)
        assert not await gate.enter(0.01)  # shed: it goes on without memory
        assert gate.shed == 1 and gate.waiting == 0 and gate.running == 2
        gate.leave(0.01)
        assert gate.running == 1  # nobody was waiting: the place is free
        assert await gate.enter(0.01)

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_no_place_taken() -> None:
    async def scenario() -> None:
        gate = RecallGate(0.2, initial=2, minimum=2)
        assert await gate.enter(1.0) and await gate.enter(1.0)
        task = asyncio.create_task(gate.enter(5.0))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert gate.waiting == 0
        gate.leave(0.01)
        gate.leave(0.01)
        assert gate.running == 0

    asyncio.run(scenario())


def test_the_limit_falls_when_recalls_miss_and_rises_when_they_are_fast_and_others_wait() -> None:
    async def scenario() -> None:
        gate = RecallGate(0.2, initial=8, minimum=2, maximum=10)
        for _ in range(8):
            assert await gate.enter(1.0)
        gate.leave(0.15)  # slow, but inside the deadline: the limit stays
        assert gate.limit == 8
        gate.leave(0.25, missed=True)
        assert gate.limit == 7
        for _ in range(6):
            gate.leave(0.25, missed=True)
        assert gate.limit == 2  # never below the minimum
        assert await gate.enter(1.0) and await gate.enter(1.0)
        waiting = [asyncio.create_task(gate.enter(5.0)) for _ in range(3)]
        await asyncio.sleep(0.01)
        gate.leave(0.01)  # fast, with requests waiting: one more may run
        assert gate.limit == 3
        await asyncio.sleep(0.01)
        assert sum(t.done() for t in waiting) == 2  # the place that was left and the new one
        gate.leave(0.01)
        await asyncio.gather(*waiting)

    asyncio.run(scenario())
