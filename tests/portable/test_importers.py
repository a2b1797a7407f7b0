"""Importers on realistic samples: what lands, with which times and tiers; idempotent; all or nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from memory.archive import ArchiveError
from memory.importers import detect, import_items, parse
from tests.portable.portable_helpers import SAMPLES

EXPECTED = {  # sample -> (format, memories)
    "conversations.json": ("chatgpt", 3),
    "mem0_get_all.json": ("mem0", 3),
    "memos_cube": ("memos", 3),
    "agent.af": ("letta", 2),
    "facts.md": ("facts", 6),
    "facts.jsonl": ("facts", 3),
}


def test_every_sample_imports_once_with_real_times(open_engine):
    async def scenario() -> None:
        engine = await open_engine()
        for sample, (fmt, count) in EXPECTED.items():
            path = SAMPLES / sample
            assert detect(path) == fmt
            user = f"u-{fmt}-{path.suffix or 'dir'}"
            report = await import_items(engine, user, fmt, parse(path, fmt))
            assert (report.added, report.embedded) == (count, count), sample
            again = await import_items(engine, user, fmt, parse(path, fmt))
            assert (again.added, again.skipped) == (0, count), sample
        chatgpt = sorted((await engine.list("u-chatgpt-.json")).items, key=lambda c: c.event_time)
        assert [c.event_time.isoformat() for c in chatgpt] == [
            "2024-05-01T08:00:00.123456+00:00", "2024-05-01T08:05:00+00:00", "2024-06-01T09:00:00+00:00"]
        assert chatgpt[0].content.startswith("User: I'm flying to Lisbon") and "fado" in chatgpt[0].content
        assert "regenerated" not in " ".join(c.content for c in chatgpt)  # the abandoned branch is left out
        assert chatgpt[0].owner.session == "6630f1a0-1b2c-8000-a000-00000000c0a1" and chatgpt[0].kind == "episodic"
        mem0 = {c.content: c for c in (await engine.list("u-mem0-.json")).items}
        nurse = mem0["Works as a nurse at Mercy Hospital on night shifts"]
        assert nurse.owner.agent == "health-coach" and nurse.metadata["imported_from"]["source"] == "mem0"
        assert mem0["Is a vegetarian and allergic to nuts"].metadata["food"] is True
        memos = {c.content: c for c in (await engine.list("u-memos-dir")).items}
        assert "Alice used to live in Braga." not in memos  # deleted in MemOS
        assert memos["Alice prefers window seats on trains."].kind == "preference"
        assert memos["Alice runs a half marathon every October in Porto."].event_time.date().isoformat() == "2024-10-13"
        core = await engine.core("u-letta-.af")
        assert sorted(c.content.split(":")[0] for c in core.items) == ["human", "persona"]
        hits = await engine.search("u-facts-.md", "what instrument am I learning?")
        assert hits.items and hits.items[0].cube.content == "I am learning to play the cello."

    open_engine.run(scenario())


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("chatgpt", '[{"title": "x", "mapping": {"a": {"id": "a", "message": null, "parent": "zz", "children": []}}, "current_node": "a"}]'),
        ("chatgpt", '{"not": "a list"}'),
        ("mem0", '{"results": [{"memory": "ok"}, {"memory": ""}]}'),
        ("memos", '[{"id": "1", "memory": "fine", "metadata": {}}, {"id": "2", "metadata": {}}]'),
        ("letta", '{"blocks": [{"id": "b", "label": "human"}], "agents": []}'),
        ("facts", '[{"content": "fine"}, 42]'),
        ("facts", '[{"content": "truncated"'),
    ],
)
def test_a_malformed_file_is_refused_with_a_reason_and_imports_nothing(open_engine, tmp_path: Path, fmt: str, text: str):
    async def scenario() -> None:
        engine = await open_engine()
        path = tmp_path / ("input.af" if fmt == "letta" else "input.json")
        path.write_text(text)
        with pytest.raises(ArchiveError) as caught:
            await import_items(engine, "dave", fmt, parse(path, fmt))
        assert str(caught.value)
        assert (await engine.list("dave")).items == []

    open_engine.run(scenario())


def test_memos_directory_without_textual_memory_is_refused(tmp_path: Path):
    shutil.copy(SAMPLES / "memos_cube" / "config.json", tmp_path / "config.json")
    with pytest.raises(ArchiveError, match="textual_memory.json"):
        parse(tmp_path, "memos")
    assert json.loads((tmp_path / "config.json").read_text())["text_mem"]["backend"] == "general_text"
