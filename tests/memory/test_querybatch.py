"""memory/querybatch.py: concurrent recall queries share model calls, with the real embedder."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from memory.embedder import Embedder
from memory.querybatch import QueryBatcher

QUESTIONS = [f"What did I tell you about the trip number {n} to Lisbon?" for n in range(20)]


def test_concurrent_queries_share_calls_and_get_their_own_vectors(embedder: Embedder) -> None:
    sent: list[list[str]] = []

    async def embed(texts: list[str]) -> np.ndarray:
        sent.append(list(texts))
        return await embedder.embed_query(texts)

    async def scenario() -> None:
        batcher = QueryBatcher(embed)
        alone = await batcher.embed(QUESTIONS[0])
        assert sent == [[QUESTIONS[0]]]  # a lone query goes at once, on its own
        together = await asyncio.gather(*(batcher.embed(q) for q in [*QUESTIONS, QUESTIONS[3]]))
        assert len(sent) - 1 < len(QUESTIONS)  # fewer calls than queries
        assert all(len(set(batch)) == len(batch) for batch in sent)  # a repeated text is embedded once
        separately = await embedder.embed_query(QUESTIONS)
        np.testing.assert_allclose(np.stack(together[:-1]), separately, atol=1e-5)
        np.testing.assert_allclose(together[-1], separately[3], atol=1e-5)
        np.testing.assert_allclose(alone, separately[0], atol=1e-5)

    asyncio.run(scenario())


def test_a_query_whose_caller_gave_up_is_not_embedded(embedder: Embedder) -> None:
    sent: list[list[str]] = []

    async def scenario() -> None:
        opened = asyncio.Event()

        async def embed(texts: list[str]) -> np.ndarray:
            sent.append(list(texts))
            await opened.wait()
            return await embedder.embed_query(texts)

        batcher = QueryBatcher(embed)
        first = asyncio.create_task(batcher.embed("first"))
        await asyncio.sleep(0)
        kept = asyncio.create_task(batcher.embed("kept"))
        late = asyncio.create_task(asyncio.wait_for(batcher.embed("gave up"), timeout=0.01))
        with pytest.raises(TimeoutError):
            await late  # its deadline passed while the first call was running
        opened.set()
        await asyncio.gather(first, kept)
        assert sent == [["first"], ["kept"]]

    asyncio.run(scenario())


def test_a_failed_call_fails_its_callers_and_the_next_batch_still_runs(embedder: Embedder) -> None:
    async def scenario() -> None:
        calls = 0

        async def embed(texts: list[str]) -> np.ndarray:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("model failed")
            return await embedder.embed_query(texts)

        batcher = QueryBatcher(embed)
        with pytest.raises(RuntimeError, match="model failed"):
            await batcher.embed("first")
        assert (await batcher.embed("second")).shape == (384,)

    asyncio.run(scenario())
