"""The .memcube archive: exact round trip (to the vectors' last bit), vector reuse, idempotent import, conflicts, refusal of damaged files."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from memory.archive import MANIFEST, MEMORIES, VECTORS, ArchiveError, ArchiveReader, export_to_file, import_archive
from memory.cube import Owner, owner_key
from memory.engine import MemoryEngine, MemoryPatch, NewMemory
from memory.fingerprint import embedder_id
from tests.portable.portable_helpers import EmbedCounter, rewrite


def assert_same_archive(a: Path, b: Path) -> None:
    """Byte-equal but for the vectors' last bit: Chroma renormalises a vector on every
    write (cosine space), and that is not idempotent in float32 (about one stored vector
    in ten moves by an ulp per round trip, whichever recipe made it)."""
    if a.read_bytes() == b.read_bytes():
        return
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        assert za.namelist() == zb.namelist()
        for name in za.namelist():
            left, right = za.read(name), zb.read(name)
            if name == VECTORS:
                np.testing.assert_allclose(np.frombuffer(left, "<f4"), np.frombuffer(right, "<f4"), rtol=0, atol=1e-7)
            elif name == MANIFEST:
                mine, theirs = json.loads(left), json.loads(right)
                for m in (mine, theirs):
                    m.pop("checksum")
                    m["files"] = {k: {**v, "sha256": ""} if k == VECTORS else v for k, v in m["files"].items()}
                assert mine == theirs
            else:
                assert left == right, name


async def seed(engine: MemoryEngine, user: str = "alice") -> None:
    await engine.add(
        Owner(user, session="s1"),
        [
            NewMemory(content="My sister Ana lives in Porto. We talked yesterday.", kind="fact",
                      metadata={"n": 1, "x": 0.1, "nested": {"ü": [1, 2.5, None, True]}},
                      event_time=datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)),
            NewMemory(content="I am allergic to peanuts.", kind="preference", tier="core"),
            NewMemory(content="User: hi\nAssistant: hello", kind="episodic", source_ids=("ext-1",)),
        ],
    )
    listed = (await engine.list(user)).items
    await engine.update(listed[2].id, MemoryPatch(state="archived", metadata={"why": "old"}))


def test_export_import_export_is_byte_equal_and_reuses_vectors(open_engine, embedder, tmp_path: Path, monkeypatch):
    async def scenario() -> None:
        source = await open_engine()
        await seed(source)
        first = tmp_path / "a.memcube"
        assert await export_to_file(source, "alice", first) == 3
        target = await MemoryEngine.open(source.settings, tmp_path / "fresh", embedder=embedder)
        open_engine.open.append(target)
        await embedder_id(embedder)
        counter = EmbedCounter(embedder, monkeypatch)
        with ArchiveReader(first) as reader:
            report = await import_archive(target, reader)
        assert (report.added, report.embedded, report.vectors_reused) == (3, 0, True)
        assert counter.texts == 0  # fingerprints match: no embedding call at all
        second = tmp_path / "b.memcube"
        await export_to_file(target, "alice", second)
        assert_same_archive(first, second)
        with ArchiveReader(first) as reader:  # idempotent
            again = await import_archive(target, reader)
        assert (again.added, again.skipped) == (0, 3)
        third = tmp_path / "c.memcube"
        await export_to_file(target, "alice", third)
        assert_same_archive(third, first)
        got = {c.content: c for c in (await target.list("alice")).items}
        original = {c.content: c for c in (await source.list("alice")).items}
        assert {k: v.to_dict() for k, v in got.items()} == {k: v.to_dict() for k, v in original.items()}
        assert (await target.core("alice")).items[0].content == "I am allergic to peanuts."
        hits = await target.search("alice", "where does Ana live?")
        assert [h.cube.content for h in hits.items][:1] == ["My sister Ana lives in Porto. We talked yesterday."]

    open_engine.run(scenario())


def test_vectors_are_recomputed_when_the_fingerprint_differs(open_engine, embedder, tmp_path: Path, monkeypatch):
    async def scenario() -> None:
        source = await open_engine()
        await seed(source)
        await export_to_file(source, "alice", tmp_path / "a.memcube")
        rewrite(tmp_path / "a.memcube", tmp_path / "other.memcube",
                manifest=lambda m: m["embedder"].update(fingerprint="0" * 32, name="another-model"))
        target = await MemoryEngine.open(source.settings, tmp_path / "fresh", embedder=embedder)
        open_engine.open.append(target)
        await embedder_id(embedder)
        counter = EmbedCounter(embedder, monkeypatch)
        with ArchiveReader(tmp_path / "other.memcube") as reader:
            report = await import_archive(target, reader)
        assert (report.added, report.embedded, report.vectors_reused) == (3, 3, False)
        assert counter.texts >= 3
        hits = await target.search("alice", "peanut allergy")  # core memories are not recalled again
        assert hits.items == [] or all(h.cube.tier == "recall" for h in hits.items)
        assert [h.cube.content for h in (await target.search("alice", "Ana Porto")).items][:1] == [
            "My sister Ana lives in Porto. We talked yesterday."]

    open_engine.run(scenario())


def test_as_user_rekeys_ids_deterministically_and_conflict_modes(open_engine, tmp_path: Path):
    async def scenario() -> None:
        engine = await open_engine()
        await seed(engine)
        path = tmp_path / "a.memcube"
        await export_to_file(engine, "alice", path)
        with ArchiveReader(path) as reader:
            first = await import_archive(engine, reader, user="bob")
        with ArchiveReader(path) as reader:
            second = await import_archive(engine, reader, user="bob")
        assert (first.added, second.added, second.skipped) == (3, 0, 3)
        bob = (await engine.list("bob")).items
        assert len(bob) == 3 and all(c.id.startswith(f"mem_{owner_key('bob')}_") for c in bob)
        assert {c.id.split("_")[2] for c in bob} == {c.id.split("_")[2] for c in (await engine.list("alice")).items}
        changed = next(c for c in bob if c.kind == "preference")
        await engine.update(changed.id, MemoryPatch(content="I am allergic to cashews."))
        with ArchiveReader(path) as reader:
            versioned = await import_archive(engine, reader, user="bob", on_conflict="new-version")
        after = await engine.get(changed.id)
        assert versioned.versioned == 1 and after.content == "I am allergic to peanuts." and after.version == 3
        with ArchiveReader(path) as reader:
            assert (await import_archive(engine, reader, user="bob", on_conflict="new-version")).versioned == 0
        await engine.update(changed.id, MemoryPatch(metadata={"edited": True}))
        with ArchiveReader(path) as reader:
            replaced = await import_archive(engine, reader, user="bob", on_conflict="replace")
        restored = await engine.get(changed.id)
        assert replaced.replaced >= 1 and restored.metadata == {} and restored.version == 1

    open_engine.run(scenario())


@pytest.mark.parametrize("damage", ["member", "manifest", "bad-line", "not-a-zip"])
def test_a_damaged_archive_is_refused_and_imports_nothing(open_engine, tmp_path: Path, damage: str):
    async def scenario() -> None:
        engine = await open_engine()
        await seed(engine)
        good = tmp_path / "a.memcube"
        await export_to_file(engine, "alice", good)
        bad = tmp_path / "bad.memcube"
        if damage == "member":
            rewrite(good, bad, member=(MEMORIES, lambda b: b.replace(b"Porto", b"Paris")))
        elif damage == "manifest":
            rewrite(good, bad, manifest=lambda m: m["owner"].update(user="mallory"), reseal=False)
        elif damage == "bad-line":  # an extra line that is not a memory
            def broken(data: bytes) -> bytes:
                return data + b'{"id": "nope"}\n'

            rewrite(good, bad, member=(MEMORIES, broken), manifest=lambda m: None)
        else:
            bad.write_bytes(b"this is not a zip file")
        with pytest.raises(ArchiveError):
            with ArchiveReader(bad) as reader:
                await import_archive(engine, reader, user="carol")
        assert (await engine.list("carol")).items == []

    open_engine.run(scenario())
