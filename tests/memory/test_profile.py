"""The user's profile: first-person self-disclosures, newest per topic, byte-stable."""

from __future__ import annotations

from datetime import UTC, datetime

from memory.cube import MemCube, Owner
from memory.engine import NewMemory
from memory.profile import build_profile, disclosures
from memory.tokens import TokenCounter
from tests.memory.memory_helpers import EngineFactory

COUNT = TokenCounter().count
ANA = Owner(user="ana")


def turn(text: str, memory_id: str, day: int, reply: str = "Noted!") -> MemCube:
    return MemCube(
        id=memory_id,
        owner=ANA,
        content=f"User: {text}\nAssistant: {reply}",
        event_time=datetime(2024, 3, day, tzinfo=UTC),
    )


def texts(cube: MemCube) -> list[str]:
    return [d.text for d in disclosures(cube)]


def test_disclosures_are_the_users_first_person_statements() -> None:
    assert texts(turn("Please remember that I drive a teal 1987 Volvo 240 estate", "a", 1)) == [
        "I drive a teal 1987 Volvo 240 estate"
    ]
    assert texts(turn("My daughter Zephyrine starts kindergarten next week. Any tips?", "b", 1)) == [
        "My daughter Zephyrine starts kindergarten next week."
    ]
    assert texts(turn("My cat is called Mr. Pickles, he hates the vet. How do I calm him?", "c", 1)) == [
        "My cat is called Mr. Pickles, he hates the vet."
    ]
    # questions, requests, reactions and the assistant's words are not disclosures
    assert texts(turn("Thanks! I love that idea. Can you recommend a brand? Tell me more.", "d", 1, "I live in Oslo.")) == []
    assert texts(MemCube(id="e", owner=ANA, content="Assistant: I work as a chef.")) == []


def test_a_change_supersedes_the_older_statement_it_speaks_of() -> None:
    found = [
        *disclosures(turn("I drive a teal 1987 Volvo 240 estate.", "m1", 1)),
        *disclosures(turn("My sister lives in Oslo.", "m2", 2)),
        *disclosures(turn("I tore my left ACL skiing two years ago.", "m4", 2)),
        *disclosures(turn("I finally sold the Volvo and bought a white Nissan Leaf.", "m3", 3)),
        *disclosures(turn("I finally left teaching last week.", "m5", 4)),
    ]
    profile = build_profile(found, 256, COUNT)
    assert profile.lines == (
        "[2024-03-02] My sister lives in Oslo.",
        "[2024-03-02] I tore my left ACL skiing two years ago.",
        "[2024-03-03] I finally sold the Volvo and bought a white Nissan Leaf.",
        "[2024-03-04] I finally left teaching last week.",
    ), "a change replaces only what it speaks of (not what merely shares an everyday word)"
    assert profile.superseded == {"m1": ("I drive a teal 1987 Volvo 240 estate.",)}


def test_a_newer_value_of_a_topic_supersedes_the_older_one() -> None:
    found = [
        *disclosures(turn("I live in Porto, near the river.", "m1", 1)),
        *disclosures(turn("I'm allergic to peanuts.", "m2", 2)),
        *disclosures(turn("By the way, I moved from Porto to Lisbon last month.", "m3", 3)),
    ]
    profile = build_profile(found, 256, COUNT)
    assert profile.lines == (
        "[2024-03-02] I'm allergic to peanuts.",
        "[2024-03-03] I moved from Porto to Lisbon last month.",
    )
    # the order the memories are read in does not matter
    assert build_profile(list(reversed(found)), 256, COUNT) == profile
    assert profile.superseded == {"m1": ("I live in Porto, near the river.",)}


def test_rendering_is_byte_stable_until_a_disclosure_changes_and_respects_the_budget() -> None:
    found = [d for n in range(1, 20) for d in disclosures(turn(f"I have {n} bikes in my garage.", f"m{n:02}", n))]
    assert len({d.topic for d in found}) == 19, "facts on no one-value topic stack side by side"
    small = build_profile(found, 60, COUNT)
    assert 0 < small.tokens <= 60 and small.lines[-1] == "[2024-03-19] I have 19 bikes in my garage."
    assert build_profile(found, 60, COUNT) == small, "same disclosures, same lines and version"
    more = build_profile([*found, *disclosures(turn("I work as a nurse.", "m99", 20))], 60, COUNT)
    assert more.version != small.version and more.lines[-1] == "[2024-03-20] I work as a nurse."


def test_the_profile_is_kept_current_and_survives_a_restart(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        await engine.add(ANA, [
            NewMemory("User: I live in Porto.\nAssistant: Lovely city!", event_time=datetime(2024, 1, 5, tzinfo=UTC)),
            NewMemory("User: What is 2+2?\nAssistant: 4.", event_time=datetime(2024, 1, 6, tzinfo=UTC)),
        ])
        first = await engine.core("ana")
        assert first.items == [] and first.profile == ("[2024-01-05] I live in Porto.",)
        assert (await engine.core("ana")).version == first.version, "unchanged: same version"
        [moved] = await engine.add(ANA, [NewMemory("I moved from Porto to Lisbon.", event_time=datetime(2024, 2, 1, tzinfo=UTC))])
        second = await engine.core("ana")
        assert second.profile == ("[2024-02-01] I moved from Porto to Lisbon.",) and second.version != first.version
        await engine.aclose()

        reopened = await open_engine()
        again = await reopened.core("ana")
        assert again.profile == second.profile and again.version == second.version
        await reopened.delete(moved.id)
        assert (await reopened.core("ana")).profile == first.profile

    open_engine.run(scenario())
