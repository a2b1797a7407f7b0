"""A large owner's recall scores candidates (memory/candidates.py): the store's
nearest memories, the best lexical matches and their neighbours. On a real
store with real embeddings it returns the same top results as the full scan."""

from __future__ import annotations

import itertools
import math

import pytest

from memory import candidates, recall
from memory import engine as engine_module
from memory.cube import Owner
from memory.embedder import Embedder
from memory.engine import MemoryEngine, NewMemory
from memory.explain import RecallTrace
from memory.recall import candidate_count
from memory.timeparse import query_time
from tests.memory.memory_helpers import EngineFactory

PEOPLE = ("Caroline", "Melanie", "Jon", "Gina", "Deborah", "Andrew", "Audrey", "Evan")
DOINGS = (
    "signed up for a pottery class",
    "ran the Porto half marathon",
    "adopted a rescue dog called Pixel",
    "started painting sunsets by the lake",
    "booked a camping trip to the mountains",
    "joined a support group on Tuesdays",
    "baked sourdough bread for the neighbours",
    "took the kids to the science museum",
    "began learning the violin",
    "volunteered at the animal shelter",
)
WHEN = ("last week", "yesterday", "in May", "over the weekend", "after work", "this morning", "on Friday", "in June")
QUESTIONS = (
    "When did Caroline sign up for pottery?",
    "Who adopted a rescue dog?",
    "What did Melanie bake for the neighbours?",
    "Which race did Jon run?",
    "Where did Gina go camping?",
    "What instrument is Deborah learning?",
    "Who volunteers at the animal shelter?",
    "What does Andrew paint?",
    "When does Audrey go to the support group?",
    "Where did Evan take the kids?",
)
TOP = 10


def _texts() -> list[str]:
    combos = itertools.product(PEOPLE, DOINGS, WHEN)
    return [f"{who}: I {what} {when}." for who, what, when in combos]  # 640 distinct turns


async def _top_ids(engine: MemoryEngine, question: str) -> list[str]:
    embedding = (await engine.embedder.embed_query([question]))[0]
    ranked = await engine._ranked("owner", question, embedding, candidate_count(32), query_time(question))
    return [cube.id for cube, _ in ranked[:TOP]]


def test_candidates_give_the_full_scans_top_results(
    open_engine: EngineFactory, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = _texts()

    async def scenario() -> None:
        engine = await open_engine()
        await engine.add(Owner("owner"), [NewMemory(t) for t in texts])
        full = {q: await _top_ids(engine, q) for q in QUESTIONS}
        # small candidate sets, so that most of the 640 memories are left out
        monkeypatch.setattr(engine_module, "ANN_MIN_MEMORIES", 100)
        monkeypatch.setattr(engine_module, "DENSE_CANDIDATES", 48)
        monkeypatch.setattr(candidates, "LEXICAL_CANDIDATES", 48)
        seen: list[int] = []
        real = candidates.candidate_positions

        def counted(*args: object) -> object:
            positions = real(*args)  # type: ignore[arg-type]
            seen.append(len(positions))
            return positions

        monkeypatch.setattr(recall, "candidate_positions", counted)
        for question in QUESTIONS:
            assert full[question], question
            assert await _top_ids(engine, question) == full[question], question
        assert len(seen) == len(QUESTIONS) and max(seen) < len(texts) // 2  # most memories were left out
        trace = RecallTrace()  # an explanation of a candidates ranking shows only scored memories
        explained = await engine.search("owner", QUESTIONS[0], trace=trace)
        parts = [value for entry in trace.candidates.values() for value in entry.parts.values()]
        assert explained.items and parts and all(math.isfinite(value) for value in parts)

    open_engine.run(scenario())
