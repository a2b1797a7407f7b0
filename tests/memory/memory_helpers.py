"""Helpers shared by the memory engine tests (a uniquely named module, so it
never collides with another directory's ``conftest``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from memory.embedder import Embedder
from memory.engine import MemoryEngine
from memory.recall import DEFAULT_MIN_SCORE
from memory.settings import MemorySettings

T = TypeVar("T")

# The floor calibrated for all-MiniLM-L6-v2 (see memory/recall.py).
MIN_SCORE = DEFAULT_MIN_SCORE


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


class EngineFactory:
    """The ``open_engine`` fixture.

    ``await open_engine(**settings)`` opens an engine on the test's fresh
    embedded store; ``open_engine.run(scenario())`` runs the test's coroutine
    and then closes, in the same event loop, every engine it opened, also
    when the scenario fails. Closing twice is harmless, so a scenario may
    still close an engine itself when closing is what it tests.
    """

    def __init__(self, embedder: Embedder, data_dir: Path) -> None:
        self.embedder = embedder
        self.data_dir = data_dir
        self.open: list[MemoryEngine] = []

    async def __call__(self, **overrides: Any) -> MemoryEngine:
        settings = MemorySettings(**{"min_score": MIN_SCORE, **overrides})
        engine = await MemoryEngine.open(settings, self.data_dir, embedder=self.embedder)
        self.open.append(engine)
        return engine

    def run(self, scenario: Coroutine[Any, Any, T]) -> T:
        async def main() -> T:
            try:
                return await scenario
            finally:
                while self.open:
                    await self.open.pop().aclose()

        return asyncio.run(main())
