"""The change log: which owners changed, kept in the store every process shares.

One Chroma collection, ``mpx_changes`` (outside the ``mp_`` owner
collections), of small records: whose memories changed (``owner``, the owner key, never the
user's name), when (``ts``, the
writer's wall clock), which process (``origin``), what (``op``: ``write``,
``delete``, each with the memory ids, ``erase``). Chroma has no compare-and-swap,
so nothing is ever read-modified-written: every record has an id of its own
(origin + counter), concurrent writers never collide, and readers ask for
``ts >= since - skew`` and drop records they have already seen.

Two readers: the coherence poller (memory/coherence.py), which learns which
owners another process changed, and a snapshot restore (memory/snapshot.py),
which learns what was deleted since the snapshot (rows written since are
found in the owner's own collection by their write stamp). ``write``
records are kept for ``WRITE_RETENTION_S``, deletions and erasures (the
tombstones) for ``TOMBSTONE_RETENTION_S``; any process prunes older ones.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

COLLECTION = "mpx_changes"
WRITE_RETENTION_S = 600.0
TOMBSTONE_RETENTION_S = 7 * 86_400.0
READ_PAGE = 1000
IDS_PER_RECORD = 500  # memory ids carried by one record (metadata values stay small)
_DUMMY = [0.0]  # records need an embedding; one dimension, never queried


@dataclass(frozen=True, slots=True)
class Change:
    id: str
    owner: str  # owner key (memory/cube.py owner_key)
    ts: float
    origin: str
    op: str  # write | delete | erase
    ids: tuple[str, ...] = ()


class ClientRunner(Protocol):
    async def run(self, fn: Any, *args: Any) -> Any: ...


def _collection(client: Any) -> Any:
    return client.get_or_create_collection(COLLECTION, embedding_function=None)


class ChangeLog:
    """Records and reads changes through a store's client (``ChromaStore.run``)."""

    def __init__(self, store: ClientRunner) -> None:
        self._store = store
        self.origin = f"{os.getpid():x}-{uuid.uuid4().hex[:8]}"
        self._seq = itertools.count()
        self.started = time.time()  # this process's records (and so its tombstones) exist from here on

    def _new_id(self) -> str:
        return f"{self.origin}-{next(self._seq):x}"

    async def note(self, changes: Iterable[tuple[str, str, Sequence[str]]]) -> None:
        """Record ``(owner key, op, ids)`` changes, one record per owner and op (ids chunked)."""
        records: list[tuple[str, dict[str, Any]]] = []
        now = time.time()
        for owner, op, ids in changes:
            chunks = [list(ids[i : i + IDS_PER_RECORD]) for i in range(0, len(ids), IDS_PER_RECORD)] or [[]]
            for chunk in chunks:
                meta: dict[str, Any] = {"owner": owner, "ts": now, "origin": self.origin, "op": op}
                if chunk:
                    meta["ids"] = " ".join(chunk)
                records.append((self._new_id(), meta))
        if records:
            await self._store.run(_add_sync, records)

    async def since(self, ts: float, owner: str | None = None) -> list[Change]:
        """Every record with ``ts`` at or after ``ts`` (of one owner key if given), oldest first."""
        return sorted(await self._store.run(_since_sync, ts, owner), key=lambda c: (c.ts, c.id))

    async def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        await self._store.run(_prune_sync, now - WRITE_RETENTION_S, now - TOMBSTONE_RETENTION_S)


def _add_sync(client: Any, records: list[tuple[str, dict[str, Any]]]) -> None:
    _collection(client).add(
        ids=[i for i, _ in records], embeddings=[_DUMMY] * len(records), metadatas=[m for _, m in records]
    )


def _since_sync(client: Any, ts: float, owner: str | None) -> list[Change]:
    collection = _collection(client)
    where: dict[str, Any] = {"ts": {"$gte": ts}}
    if owner is not None:
        where = {"$and": [where, {"owner": owner}]}
    out: dict[str, Change] = {}
    offset = 0
    while True:
        page = collection.get(where=where, include=["metadatas"], offset=offset, limit=READ_PAGE)
        for record_id, meta in zip(page["ids"], page["metadatas"] or [], strict=True):
            ids = str(meta.get("ids") or "")
            out[record_id] = Change(
                id=record_id,
                owner=str(meta["owner"]),
                ts=float(meta["ts"]),
                origin=str(meta.get("origin", "")),
                op=str(meta.get("op", "write")),
                ids=tuple(ids.split()) if ids else (),
            )
        if len(page["ids"]) < READ_PAGE:
            return list(out.values())
        offset += READ_PAGE - 64  # overlapping pages: a prune meanwhile shifts rows down


def _prune_sync(client: Any, writes_before: float, tombstones_before: float) -> None:
    collection = _collection(client)
    collection.delete(where={"$and": [{"op": "write"}, {"ts": {"$lt": writes_before}}]})
    collection.delete(where={"ts": {"$lt": tombstones_before}})


@dataclass(frozen=True, slots=True)
class Net:
    """What a run of records comes to for one owner: the last op on each id wins."""

    written: list[str]  # ids to read again from the store (gone there: dropped)
    deleted: set[str]
    erased: bool


def net(records: Iterable[Change]) -> Net:
    last: dict[str, str] = {}
    erased = False
    for record in sorted(records, key=lambda c: (c.ts, c.id)):
        if record.op == "erase":
            erased = True
            last.clear()
        for memory_id in record.ids:
            last[memory_id] = record.op
    return Net([i for i, op in last.items() if op == "write"], {i for i, op in last.items() if op == "delete"}, erased)
