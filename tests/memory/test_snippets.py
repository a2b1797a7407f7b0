"""Snippets: a long memory is injected as the part that matters to the query."""

from __future__ import annotations

from datetime import UTC, datetime

from memory.cube import MemCube, Owner, Provenance
from memory.snippets import ELLIPSIS, EXCERPT_FROM, OTHER_TOKENS, USER_TOKENS, excerpted
from memory.tokens import TokenCounter

COUNT = TokenCounter().count
FILLER = " ".join(f"Option {i} is a fine brand of sandal with sturdy straps and a good warranty." for i in range(40))
LONG = (
    "User: I'm buying sandals for the summer. By the way, I keep my old sneakers in a shoe rack in my closet.\n"
    f"Assistant: Great question! {FILLER} For sneakers, a shoe rack keeps them aired and in shape. {FILLER}"
)


def cube(content: str, memory_id: str = "m1") -> MemCube:
    made = MemCube(
        id=memory_id,
        owner=Owner(user="ana", session="s1"),
        content=content,
        event_time=datetime(2023, 5, 2, tzinfo=UTC),
        provenance=Provenance(request_id="req-1", model="gpt", roles=("user", "assistant")),
        metadata={"session_id": "s1", "turns": [4, 5]},
    )
    return made.evolve(tokens=COUNT(f"[2023-05-02] {content}"))


def test_long_memory_keeps_identity_user_words_and_relevant_sentences_within_budget() -> None:
    long = cube(LONG)
    assert long.tokens > 4 * EXCERPT_FROM
    [(short, score)] = excerpted([(long, 0.9)], "Where do I keep my old sneakers?", lambda term: 1.0, COUNT)
    assert score == 0.9
    # the same memory: id, owner, metadata, provenance and time kept
    assert (short.id, short.owner, short.metadata, short.provenance, short.event_time) == (
        long.id, long.owner, long.metadata, long.provenance, long.event_time,
    )
    user, assistant = short.content.split("\n")
    assert user == "User: I'm buying sandals for the summer. By the way, I keep my old sneakers in a shoe rack in my closet."
    assert "For sneakers, a shoe rack keeps them aired and in shape." in assistant
    assert "Option 3 is" not in assistant and ELLIPSIS in assistant
    assert short.tokens == COUNT(f"[2023-05-02] {short.content}")
    assert short.tokens <= USER_TOKENS + OTHER_TOKENS + 20 < long.tokens // 4


def test_short_memories_are_injected_whole() -> None:
    short = cube("User: I drive a teal 1987 Volvo 240 estate.\nAssistant: Noted, a classic!")
    [(same, _)] = excerpted([(short, 0.5)], "What colour is my car?", lambda term: 1.0, COUNT)
    assert same is short


def test_a_reply_sharing_no_query_term_keeps_its_first_sentence() -> None:
    long = cube("User: Tell me about straps.\nAssistant: " + FILLER)
    [(short, _)] = excerpted([(long, 0.5)], "zebra migration", lambda term: 1.0, COUNT)
    assert short.content.startswith("User: Tell me about straps.\nAssistant: Option 0 is a fine brand")
    assert short.content.endswith(ELLIPSIS)


def test_rarer_query_terms_choose_the_sentence() -> None:
    reply = "The warranty covers straps. " + FILLER + " The Zermatt store repairs straps for free."
    long = cube("User: Any advice?\nAssistant: " + reply)
    rare = {"zermatt": 5.0, "strap": 0.1}
    [(short, _)] = excerpted([(long, 0.5)], "Which Zermatt store fixes straps?", lambda t: rare.get(t, 0.0), COUNT)
    assert "The Zermatt store repairs straps for free." in short.content
