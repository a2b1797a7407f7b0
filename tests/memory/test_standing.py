"""Standing facts (allergies, diets, …) reach the requests of their life domain only."""

from __future__ import annotations

from memory.cube import MemCube, Owner
from memory.engine import NewMemory
from memory.standing import is_standing, user_side
from tests.memory.memory_helpers import EngineFactory
from tests.memory.test_memory_recall import UNRELATED

ANN = Owner(user="ann")


def test_user_side_of_a_turn():
    turn = "User: I'm allergic to peanuts.\nAssistant: Noted, I will avoid them."
    assert user_side(turn) == "I'm allergic to peanuts."
    assert user_side("A plain fact.") == "A plain fact."


def test_standing_fact_detection():
    def cube(text: str) -> MemCube:
        return MemCube(id="mem_0000000000000000_1", owner=ANN, content=text)

    assert is_standing(cube("User: I'm allergic to peanuts.\nAssistant: ok"))
    assert is_standing(cube("User: we don't eat pork at home"))
    assert is_standing(cube("User: I live in Porto"))
    assert not is_standing(cube("User: what is the weather like?\nAssistant: I'm allergic to guessing."))
    assert not is_standing(cube("User: the meeting moved to 3pm"))


def test_dinner_request_recalls_allergy_and_diet(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        await engine.add(
            ANN,
            [
                NewMemory("User: Just so you know, I'm allergic to peanuts.\nAssistant: Thanks, noted."),
                NewMemory("User: I am vegetarian.\nAssistant: Great."),
                NewMemory("User: The quarterly report is due on Friday.\nAssistant: Good luck."),
            ],
        )
        found = await engine.search("ann", "Can you suggest a dinner recipe for tonight?")
        texts = " ".join(item.text for item in found.items)
        assert "peanuts" in texts and "vegetarian" in texts
        assert "quarterly" not in texts
        for prompt in UNRELATED:
            assert (await engine.search("ann", prompt)).items == [], prompt

    open_engine.run(scenario())
