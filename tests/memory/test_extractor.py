"""Optional LLM fact extraction on the write path, against a fake LLM on loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from memory.cube import Kind, MemCube, Owner, Provenance, State
from memory.engine import MemoryEngine
from memory.extractor import RESPONSE_FORMAT, ExtractionError, parse_facts
from memory.settings import MemorySettings
from testing.fake_openai import Error, FakeOpenAI, Sleep
from testing.serving import ServerThread
from tests.memory.memory_helpers import EngineFactory

OWNER = Owner(user="alice")
T1 = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
T2 = datetime(2023, 8, 1, 12, 0, tzinfo=UTC)


NO_FACTS = '{"facts": []}'


@pytest.fixture(scope="module")
def llm_server() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as server:
        yield fake, server.url


@pytest.fixture
def llm(llm_server: tuple[FakeOpenAI, str]) -> Iterator[FakeOpenAI]:
    fake, _ = llm_server
    fake.clear()
    fake.script(NO_FACTS)
    yield fake
    fake.clear()


def bodies(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.chat_requests()]


def extractor_settings(url: str, **extra: Any) -> dict[str, Any]:
    return {"model": "openai/fake-extractor", "base_url": f"{url}/v1", "api_key": "sk-test", "timeout_s": 5.0, **extra}


def facts(*items: tuple[str, list[str]]) -> str:
    return json.dumps({"facts": [{"content": c, "supersedes": s} for c, s in items]})


async def all_memories(engine: MemoryEngine, user: str = "alice") -> list[MemCube]:
    return (await engine.list(user, limit=100)).items


def of_kind(cubes: list[MemCube], kind: str) -> list[MemCube]:
    return [c for c in cubes if c.kind == kind]


def test_off_by_default_makes_no_call(open_engine: EngineFactory, llm: FakeOpenAI) -> None:
    assert MemorySettings().extractor.model is None

    async def scenario() -> list[MemCube]:
        engine = await open_engine()
        assert engine.extractor is None
        engine.remember_turn(OWNER, "I live in Paris.", "Nice!", Provenance(request_id="r1"), T1)
        await engine.flush()
        return await all_memories(engine)

    cubes = open_engine.run(scenario())
    assert [c.kind for c in cubes] == [Kind.EPISODIC.value]
    assert llm.requests == []


def test_facts_are_stored_with_provenance_one_call_per_turn(
    open_engine: EngineFactory, llm: FakeOpenAI, llm_server: tuple[FakeOpenAI, str]
) -> None:
    llm.script(
        facts(("Alice lives in Paris.", []), ("Alice works as a nurse.", [])),
        facts(("Alice has a dog named Rex.", [])),
        facts(),
    )

    async def scenario() -> tuple[list[MemCube], MemoryEngine]:
        engine = await open_engine(extractor=extractor_settings(llm_server[1]))
        engine.remember_turn(
            OWNER, "I live in Paris and work as a nurse.", "Great.", Provenance(request_id="r1"), T1,
            metadata={"dia_id": "D1:3"},
        )
        engine.remember_turn(OWNER, "My dog Rex is 3.", "Cute!", Provenance(request_id="r2"), T1)
        engine.remember_turn(OWNER, "Hello there", "Hi!", Provenance(request_id="r3"), T1)
        await engine.flush()
        return await all_memories(engine), engine

    cubes, engine = open_engine.run(scenario())
    assert len(llm.requests) == 3  # exactly one call per turn
    assert engine.extractor is not None and engine.extractor.calls == 3 and engine.extractor.failed == 0
    body = bodies(llm)[0]
    assert body["model"] == "fake-extractor"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"] == RESPONSE_FORMAT
    assert "I live in Paris and work as a nurse." in body["messages"][-1]["content"]

    turns = {c.provenance.request_id: c for c in of_kind(cubes, Kind.EPISODIC.value)}
    assert set(turns) == {"r1", "r2", "r3"}
    assert turns["r1"].metadata.get("dia_id") == "D1:3"
    stored = {c.content: c for c in of_kind(cubes, Kind.FACT.value)}
    assert set(stored) == {"Alice lives in Paris.", "Alice works as a nurse.", "Alice has a dog named Rex."}
    paris = stored["Alice lives in Paris."]
    assert paris.provenance.source_ids == (turns["r1"].id,)
    assert paris.provenance.request_id == "r1"
    assert paris.metadata["source_dia_ids"] == ["D1:3"]
    assert paris.metadata["valid_from"] == "2023-05-01T12:00:00Z"
    assert paris.event_time == T1
    assert paris.state == State.ACTIVE.value
    rex = stored["Alice has a dog named Rex."]
    assert rex.provenance.source_ids == (turns["r2"].id,)
    assert rex.metadata["source_dia_ids"] == []


def _supersede_paris(body: dict[str, Any]) -> str:
    prompt = body["messages"][-1]["content"]
    match = re.search(r"id=(mem_\w+) \([^)]*\): Alice lives in Paris\.", prompt)
    ids = [match.group(1)] if match else []
    return facts(("Alice lives in Berlin.", ids))


def test_a_contradiction_supersedes_the_older_fact(
    open_engine: EngineFactory, llm: FakeOpenAI, llm_server: tuple[FakeOpenAI, str]
) -> None:
    llm.script(facts(("Alice lives in Paris.", [])), _supersede_paris)

    async def scenario() -> tuple[list[MemCube], list[str]]:
        engine = await open_engine(extractor=extractor_settings(llm_server[1]))
        engine.remember_turn(OWNER, "I live in Paris.", "Lovely city.", Provenance(request_id="r1"), T1)
        await engine.flush()
        engine.remember_turn(
            OWNER, "I don't live in Paris anymore, I moved to Berlin.", "Exciting!", Provenance(request_id="r2"), T2
        )
        await engine.flush()
        found = await engine.search("alice", "Where does Alice live? Paris or Berlin?")
        return await all_memories(engine), [r.cube.content for r in found.items]

    cubes, recalled = open_engine.run(scenario())
    assert len(llm.requests) == 2
    stored = {c.content: c for c in of_kind(cubes, Kind.FACT.value)}
    old, new = stored["Alice lives in Paris."], stored["Alice lives in Berlin."]  # both kept
    assert old.state == State.SUPERSEDED.value
    assert old.metadata["superseded_by"] == new.id
    assert old.metadata["valid_until"] == "2023-08-01T12:00:00Z"
    assert old.metadata["valid_from"] == "2023-05-01T12:00:00Z"
    assert new.state == State.ACTIVE.value
    assert new.metadata["supersedes"] == [old.id]
    assert new.metadata["valid_from"] == "2023-08-01T12:00:00Z"
    assert "Alice lives in Berlin." in recalled
    assert "Alice lives in Paris." not in recalled


@pytest.mark.parametrize(
    "reply",
    [
        "this is not JSON",
        '{"facts": "Alice lives in Paris"}',
        '{"facts": [{"content": 42, "supersedes": []}]}',
        '{"facts": [{"content": "Alice lives in Paris.", "supersedes": ["mem_nope"]}]}',
        Error(500),
        Sleep(4.0, NO_FACTS),  # slower than the extractor's timeout
    ],
    ids=["invalid-json", "facts-not-a-list", "content-not-a-string", "unknown-id", "http-500", "timeout"],
)
def test_garbage_stores_nothing_and_keeps_the_turn(
    open_engine: EngineFactory, llm: FakeOpenAI, llm_server: tuple[FakeOpenAI, str], reply: Any
) -> None:
    llm.script(reply)
    timeout_s = 1.5 if isinstance(reply, Sleep) else 5.0

    async def scenario() -> tuple[list[MemCube], MemoryEngine]:
        engine = await open_engine(extractor=extractor_settings(llm_server[1], timeout_s=timeout_s))
        engine.remember_turn(OWNER, "I live in Paris.", "Nice.", Provenance(request_id="r1"), T1)
        await engine.flush()
        return await all_memories(engine), engine

    cubes, engine = open_engine.run(scenario())
    assert [c.kind for c in cubes] == [Kind.EPISODIC.value]
    assert engine.writer.failed == 0 and engine.writer.written == 1
    assert engine.extractor is not None and engine.extractor.failed == 1 and engine.extractor.stored == 0
    assert len(llm.requests) == 1 or (isinstance(reply, Sleep) and not llm.requests)  # no retries


def test_extraction_never_holds_up_the_turn_writer(
    open_engine: EngineFactory, llm: FakeOpenAI, llm_server: tuple[FakeOpenAI, str]
) -> None:
    llm.script(Sleep(2.0, NO_FACTS))  # a slow model

    async def scenario() -> None:
        engine = await open_engine(extractor=extractor_settings(llm_server[1], timeout_s=5.0))
        engine.remember_turn(OWNER, "I live in Paris.", "Nice.", Provenance(request_id="r1"), T1)
        await engine.writer.flush()  # the turn is stored while the LLM is still thinking
        assert [c.kind for c in await all_memories(engine)] == [Kind.EPISODIC.value]
        assert engine.extractor is not None and engine.extractor.calls <= 1

    open_engine.run(scenario())


def test_parse_facts_caps_and_validates() -> None:
    text = facts(*[(f"fact {i}", []) for i in range(5)])
    assert [f.content for f in parse_facts(text, set(), 3)] == ["fact 0", "fact 1", "fact 2"]
    assert parse_facts('{"facts": [{"content": "  ", "supersedes": []}]}', set(), 3) == []
    assert parse_facts(facts(("x", ["a", "a"])), {"a"}, 3)[0].supersedes == ("a",)
    for bad in ["", "[]", '{"facts": [1]}', '{"facts": [{"content": "x", "supersedes": [1]}]}']:
        with pytest.raises(ExtractionError):
            parse_facts(bad, set(), 3)
