"""Hybrid recall against a real embedded Chroma and the real embedder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memory.cube import Owner
from memory.engine import NewMemory
from tests.memory.memory_helpers import EngineFactory

ALICE = Owner(user="alice")

FACTS = [
    "User: I'm allergic to peanuts.",
    "User: I work as a nurse at St. Mary's hospital.",
    "User: My dog is called Biscuit, a golden retriever.",
    "User: I'm vegetarian and I love spicy food.",
    "User: I have a cat named Luna.",
    "User: I'm training for a marathon in October.",
    "User: I drive a 2015 Honda Civic.",
]

UNRELATED = [
    "write a haiku about autumn",
    "what is 2+2",
    "explain quantum entanglement",
    "translate 'hello' into French",
    "what's the capital of Australia?",
    "write a python function to reverse a list",
    "tell me a joke",
    "how does photosynthesis work?",
    "summarize the plot of Hamlet",
    "what year did World War II end?",
    "convert 5 miles to km",
    "hello",
    "thanks!",
    "what's the weather like?",
]


def test_write_then_recall(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        when = datetime(2023, 5, 8, 12, tzinfo=UTC)
        [stored] = await engine.add(ALICE, [NewMemory("User: I'm allergic to peanuts.", event_time=when)])
        result = await engine.search("alice", "can I eat a Snickers bar with peanuts?")
        assert [item.cube.id for item in result.items] == [stored.id]
        item = result.items[0]
        assert item.text == "[2023-05-08] User: I'm allergic to peanuts."
        assert item.tokens == stored.tokens == engine.counter.count(item.text)
        assert result.tokens == item.tokens

    open_engine.run(scenario())


def test_relevant_prompts_recall_the_right_memory(open_engine: EngineFactory) -> None:
    expected = {
        "what's my dog's name?": "Biscuit",
        "where do I work?": "nurse",
        "what car do I have?": "Honda",
        "what should I cook tonight?": "vegetarian",
        "any tips for my running plan?": "marathon",
        "is a peanut butter sandwich safe for me?": "peanuts",
    }

    async def scenario() -> None:
        engine = await open_engine()
        await engine.add(ALICE, [NewMemory(f) for f in FACTS])
        for prompt, word in expected.items():
            result = await engine.search("alice", prompt)
            assert result.items, prompt
            assert word in result.items[0].cube.content, (prompt, result.items[0].text)

    open_engine.run(scenario())


def test_relevance_floor_injects_nothing_for_unrelated_prompts(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        await engine.add(ALICE, [NewMemory(f) for f in FACTS])
        for prompt in UNRELATED:
            result = await engine.search("alice", prompt)
            assert result.items == [], (prompt, [(i.text, round(i.score, 3)) for i in result.items])
            assert result.tokens == 0

    open_engine.run(scenario())


def test_recall_respects_budget_and_orders_by_score(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(min_score=0.0)
        notes = [NewMemory(f"User: my garden has {n} tomato plants and {n + 3} basil pots") for n in range(40)]
        await engine.add(ALICE, notes + [NewMemory(f) for f in FACTS])
        full = await engine.search("alice", "tomato plants in my garden", token_budget=10_000, limit=100)
        per_item = full.items[0].tokens
        budget = per_item * 5 + per_item // 2
        result = await engine.search("alice", "tomato plants in my garden", token_budget=budget, limit=100)
        assert 0 < len(result.items) <= 5
        assert result.tokens == sum(i.tokens for i in result.items) <= budget
        scores = [i.score for i in result.items]
        assert scores == sorted(scores, reverse=True)
        capped = await engine.search("alice", "tomato plants in my garden", token_budget=10_000, limit=3)
        assert len(capped.items) == 3

    open_engine.run(scenario())


def test_near_duplicates_are_recalled_once_newest_first(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        old = datetime(2022, 1, 1, tzinfo=UTC)
        text = "User: I'm allergic to peanuts."
        first = await engine.add(ALICE, [NewMemory(text, event_time=old)])
        second = await engine.add(ALICE, [NewMemory(text, event_time=old + timedelta(days=30))])
        result = await engine.search("alice", "peanut allergy")
        assert [i.cube.id for i in result.items] == [second[0].id]
        assert first[0].id != second[0].id

    open_engine.run(scenario())


def test_users_are_isolated(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        await engine.add(ALICE, [NewMemory("User: my secret locker code is 4512")])
        await engine.add(Owner("bob"), [NewMemory("User: I collect vintage stamps")])
        query = "what is my secret locker code?"
        assert (await engine.search("alice", query)).items
        bob = await engine.search("bob", query)
        assert all(i.cube.owner.user == "bob" for i in bob.items)
        assert "4512" not in " ".join(i.text for i in bob.items)
        assert (await engine.search("carol", query)).items == []
        page = await engine.list("bob", limit=100)
        assert [c.owner.user for c in page.items] == ["bob"]

    open_engine.run(scenario())


def test_inactive_memories_are_not_recalled(open_engine: EngineFactory) -> None:
    from memory.engine import MemoryPatch

    async def scenario() -> None:
        engine = await open_engine()
        [cube] = await engine.add(ALICE, [NewMemory("User: my dog is called Biscuit")])
        assert (await engine.search("alice", "what's my dog's name?")).items
        await engine.update(cube.id, MemoryPatch(state="archived"))
        assert (await engine.search("alice", "what's my dog's name?")).items == []

    open_engine.run(scenario())


def test_lexical_index_rebuilds_for_a_new_engine(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        await engine.add(ALICE, [NewMemory("User: my wifi network is called zebra-quartz-77")])
        await engine.aclose()
        reopened = await open_engine()
        result = await reopened.search("alice", "zebra-quartz-77")
        assert result.items and "zebra-quartz-77" in result.items[0].text

    open_engine.run(scenario())


def test_relative_dates_are_stored_and_a_named_time_ranks_first(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        may = datetime(2023, 5, 8, 12, tzinfo=UTC)
        july = datetime(2023, 7, 20, 12, tzinfo=UTC)
        in_may, in_july, mentioned = await engine.add(ALICE, [
            NewMemory("User: I went hiking with my sister at Bear Lake.", event_time=may),
            NewMemory("User: I went hiking with my brother at Bear Lake.", event_time=july),
            NewMemory("User: Last month I went hiking with my cousin at Bear Lake.", event_time=july),
        ])
        assert in_may.metadata == {} and in_july.metadata == {}
        assert mentioned.metadata == {"_memproxy": {"dates": ["2023-06"]}}
        assert (await engine.get(mentioned.id)).metadata == mentioned.metadata  # stored, not only returned

        async def best(query: str) -> str:  # items come day by day; the score says how each ranked
            items = (await engine.search("alice", query)).items
            assert len(items) == 3
            return max(items, key=lambda item: item.score).cube.id

        assert await best("Who did I go hiking at Bear Lake with in May 2023?") == in_may.id
        assert await best("Who did I go hiking at Bear Lake with on 20 July, 2023?") in (in_july.id, mentioned.id)
        assert await best("Who did I go hiking at Bear Lake with in June 2023?") == mentioned.id  # "last month"

    open_engine.run(scenario())
