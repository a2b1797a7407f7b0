"""Per-owner index snapshots: the first search after a restart without a rebuild.

An owner's recall index (memory/lexcache.py: the cubes, BM25, standing
profiles and the arrays of memory/view.py with every vector) is saved to
``<data_dir>/index/<owner key>.snap``: a one-line JSON header (format,
user, watermark) and a pickle of the index's state. Loading one is a file
read and an unpickle (memories stay plain tuples until a search reads them),
then the same delta as memory/coherence.py: the change log's records of
the owner since ``watermark - clock skew`` name the memories written (read
again by id, with vectors, and patched in) and deleted (dropped); an erase
since discards the snapshot. With no record since, the owner's collection is
not read at all. The embedded store logs no writes (memory/coherence.py), and
a snapshot older than the log keeps write records (``WRITE_RETENTION_S``):
both read the rows written since by their write stamp
(``_w``), and one older than the tombstones (``TOMBSTONE_RETENTION_S``)
compares the owner's ids with the store's.

Saved: once searches pause after an owner is built from the store (memory/quiet.py), every ``interval_s``
for owners changed since their last save, and at shutdown. Forgetting a
user deletes their snapshot. The files are trusted like the rest of the
data directory (the journal): they are pickles, never read from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import json
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memory.changelog import TOMBSTONE_RETENTION_S, WRITE_RETENTION_S, ChangeLog
from memory.changelog import net as net_changes
from memory.coherence import read_written
from memory.cube import MemCube, Owner, Provenance, owner_key
from memory.lexical import BM25Index
from memory.longlived import settle
from memory.postings import PostingArrays

if TYPE_CHECKING:
    from memory.coherence import SharedStore
    from memory.lexcache import OwnerIndex

log = logging.getLogger(__name__)

FORMAT = 4  # 2: memories as per-row pickles; 3: BM25 postings too; 4: the view's mentioned dates
SUFFIX = ".snap"


@dataclass(slots=True)
class Restore:
    """A snapshot's state plus the delta since it, applied to an index on the recall pool."""

    user: str
    state: dict[str, Any]
    changed: list[MemCube]
    vectors: list[np.ndarray]
    deleted: set[str]
    began: float  # wall time the delta was read from: the index is synced to here
    stats: dict[str, float] = field(default_factory=dict)

    def apply(self, index: OwnerIndex) -> None:
        with index.lock:
            index.restore(self.state)
            for cube, vector in zip(self.changed, self.vectors, strict=True):
                index.upsert(cube, vector)
            for memory_id in self.deleted:
                index.remove(memory_id)
            index.sync()
        settle()


def _read(path: Path, user: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    with path.open("rb") as handle:
        header = json.loads(handle.readline())
        if header.get("format") != FORMAT or header.get("user") != user:
            return None
        blob = handle.read()
    # no collections while the index is unpickled (each would walk the whole
    # warmed process: ~6x the unpickle itself); what it made is long-lived
    enabled = gc.isenabled()
    gc.disable()
    try:
        state = pickle.loads(blob)
    finally:
        if enabled:
            gc.enable()
    settle()
    return header, state


def _header(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            header = json.loads(handle.readline())
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) and header.get("format") == FORMAT else None


class Snapshots:
    def __init__(
        self,
        folder: Path,
        store: SharedStore,
        changes: ChangeLog,
        pool: Executor,
        *,
        skew_s: float,
        interval_s: float,
        pause: Callable[[], None] = lambda: None,
    ) -> None:
        """``pause``: called by the saving thread between slices of its work (blocks while
        searches run, a bounded time: memory/quiet.py)."""
        self.folder = Path(folder)
        self._pause = pause
        self._writing = threading.Lock()  # one save at a time (a cancelled save's thread may still run)
        self._store = store
        self._changes = changes
        self._pool = pool
        self.skew_s = skew_s
        self.interval_s = interval_s
        self._dirty: dict[str, int] = {}  # owner key -> changes since its last save
        self._loop: asyncio.Task[None] | None = None
        self.restored = 0
        self.saved = 0
        self.last_restore: dict[str, float] = {}  # read_ms, delta_ms, changed: the latest restore

    def path(self, user: str) -> Path:
        return self.folder / f"{owner_key(user)}{SUFFIX}"

    def mark(self, key: str) -> None:
        self._dirty[key] = self._dirty.get(key, 0) + 1

    def dirty(self, user: str) -> bool:
        return self._dirty.get(owner_key(user), 0) > 0

    # -- restore -------------------------------------------------------------------

    async def restore(self, user: str) -> Restore | None:
        """The owner's snapshot and the delta since it, or None (no snapshot, or unusable)."""
        path = self.path(user)
        if not path.exists():
            return None
        began = time.time()
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            read = await loop.run_in_executor(self._pool, _read, path, user)
        except (OSError, ValueError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            log.warning("index snapshot %s unreadable (%s): rebuilding from the store", path.name, exc)
            read = None
        if read is None:
            return None
        header, state = read
        t1 = time.perf_counter()
        since = float(header["watermark"]) - self.skew_s
        deleted: set[str]
        now = time.time()
        changed: list[MemCube] = []
        vectors: list[np.ndarray] = []
        if since >= now - TOMBSTONE_RETENTION_S + 3600:
            net = net_changes(await self._changes.since(since, owner_key(user)))
            if net.erased:
                self.discard(user)
                return None
            deleted = set(net.deleted)
            # the log names every memory written since (where the store logs writes: memory/coherence.py)
            if self._store.log_writes and since >= now - WRITE_RETENTION_S + 60:
                changed, vectors, gone = await read_written(self._store.inner, user, net.written)
                deleted |= gone
            else:
                changed, vectors = await self._store.inner.changed_since(user, since)
        else:  # older than the tombstones kept: compare ids with the store's
            stored = await self._store.inner.ids(user)
            deleted = {i for i in state["view"].ids if i not in stored}
            changed, vectors = await self._store.inner.changed_since(user, since)
        self.restored += 1
        stats = self.last_restore = {"read_ms": (t1 - t0) * 1000, "delta_ms": (time.perf_counter() - t1) * 1000, "changed": len(changed)}
        return Restore(user, state, changed, vectors, deleted, began, stats)

    # -- save ------------------------------------------------------------------------

    async def save(self, user: str, index: OwnerIndex, watermark: Callable[[], float]) -> bool:
        """Write ``index`` (read under its lock on the recall pool); False when it has no full view."""
        key = owner_key(user)
        generation = self._dirty.get(key, 0)
        loop = asyncio.get_running_loop()
        saved = await loop.run_in_executor(self._pool, self._write, user, index, watermark)
        if saved and self._dirty.get(key, 0) == generation:
            self._dirty.pop(key, None)
        if saved:
            self.saved += 1
        return saved

    def _write(self, user: str, index: OwnerIndex, watermark: Callable[[], float]) -> bool:
        with self._writing:
            return self._write_one(user, index, watermark)

    def _write_one(self, user: str, index: OwnerIndex, watermark: Callable[[], float]) -> bool:
        self._pause()
        with index.lock:  # held for copies only (recall of this owner waits meanwhile)
            index.sync()
            mark = watermark()
            state = index.state()
            if state is None:
                return False
        blob = pickle.dumps(encoded(state, self._pause), protocol=pickle.HIGHEST_PROTOCOL)
        self._pause()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(user)
        header = json.dumps({"format": FORMAT, "user": user, "watermark": mark, "memories": len(index)})
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            handle.write(header.encode() + b"\n")
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return True

    def discard(self, user: str) -> bool:
        """Delete the owner's snapshot (forgetting them); True when there was one."""
        self._dirty.pop(owner_key(user), None)
        try:
            self.path(user).unlink()
        except FileNotFoundError:
            return False
        return True

    # -- which owners ----------------------------------------------------------------

    def recent(self, count: int) -> list[str]:
        """Users of the ``count`` most recently saved snapshots, newest first."""
        if count <= 0 or not self.folder.is_dir():
            return []
        files = sorted(self.folder.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
        users: list[str] = []
        for path in files[:count]:
            header = _header(path)
            if header is not None and isinstance(header.get("user"), str):
                users.append(header["user"])
        return users

    def dirty_keys(self) -> set[str]:
        return {k for k, n in self._dirty.items() if n > 0}

    # -- the background loop ----------------------------------------------------------

    def start(self, save_dirty: Callable[[], Any]) -> None:
        if self._loop is None and self.interval_s > 0:
            self._loop = asyncio.create_task(self._run(save_dirty), name="memproxy-snapshots")

    async def _run(self, save_dirty: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await save_dirty()

    async def aclose(self) -> None:
        if self._loop is not None and not self._loop.done():
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop


# -- the saved form: memories as plain tuples, made MemCubes when first read ---------------

Row = bytes  # one memory, pickled on its own: a snapshot's list of them unpickles in no time


def encode(cube: MemCube) -> Row:
    """A memory as the pickle of a tuple of plain values."""
    owner, prov = cube.owner, cube.provenance
    return pickle.dumps((
        cube.id, (owner.user, owner.session, owner.agent), cube.content, cube.kind, cube.tier, cube.state,
        cube.version, cube.event_time, cube.created_at, cube.updated_at,
        (prov.request_id, prov.model, prov.roles, prov.source_ids), cube.metadata, cube.tokens,
        cube.standing, cube.domains,
    ), protocol=pickle.HIGHEST_PROTOCOL)


def decode(row: Row) -> MemCube:
    (memory_id, owner, content, kind, tier, state, version, event_time, created_at, updated_at, prov,
     metadata, tokens, standing, domains) = pickle.loads(row)
    return MemCube(
        id=memory_id, owner=Owner(*owner), content=content, kind=kind, tier=tier, state=state, version=version,
        event_time=event_time, created_at=created_at, updated_at=updated_at, provenance=Provenance(*prov),
        metadata=metadata, tokens=tokens, standing=standing, domains=domains,
    )


class LazyCubeList(list):
    """An OwnerView's ``cubes`` after a restore: rows become MemCubes when first read
    (a search reads its candidates only, so a restore decodes almost nothing)."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self)))]
        value = list.__getitem__(self, key)
        if type(value) is bytes:
            value = decode(value)
            list.__setitem__(self, key, value)
        return value

    def __iter__(self) -> Iterator[MemCube]:
        for pos in range(len(self)):
            yield self[pos]

    def __reduce__(self) -> Any:  # saved as plain rows again
        return (LazyCubeList, ([_row(v) for v in list.__iter__(self)],))


class LazyDict(dict):
    """A dict whose values may still be pickled bytes, unpickled when first read."""

    @staticmethod
    def _decode(value: bytes) -> Any:
        return pickle.loads(value)

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        if type(value) is bytes:
            value = self._decode(value)
            dict.__setitem__(self, key, value)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self[key]
        dict.__setitem__(self, key, default)
        return default

    def pop(self, key: Any, *default: Any) -> Any:
        value = dict.pop(self, key, *default)
        return self._decode(value) if type(value) is bytes else value

    def values(self) -> list[Any]:  # type: ignore[override]
        return [self[k] for k in self]

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        return [(k, self[k]) for k in self]


class LazyCubeDict(LazyDict):
    """An OwnerIndex's ``cubes`` after a restore (see :class:`LazyCubeList`)."""

    @staticmethod
    def _decode(value: bytes) -> Any:
        return decode(value)


def _pickled(value: Any) -> bytes:
    return value if type(value) is bytes else pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def saved_bm25(bm25: BM25Index) -> dict[str, Any]:
    """A copy of a BM25 index that later changes do not touch (taken under the owner's lock)."""
    return {
        "k1": bm25.k1,
        "b": bm25.b,
        "postings": {t: v if type(v) is bytes else dict(v) for t, v in dict.items(bm25._postings)},
        "lengths": dict(bm25._lengths),
        "terms": dict(dict.items(bm25._terms)),
        "total": bm25._total,
    }


ENCODE_SLICE = 2000  # values encoded between two calls of ``pause``


def encoded(state: dict[str, Any], pause: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """A state copy as saved: each term's postings, each memory's terms and each memory
    pickled apart (a search unpickles only what it reads); outside the owner's lock.
    ``pause`` is called every :data:`ENCODE_SLICE` values (a saver stepping aside for searches)."""
    bm25 = dict(state["bm25"])
    bm25["postings"] = _sliced(bm25["postings"], _pickled, pause)
    bm25["terms"] = _sliced(bm25["terms"], _pickled, pause)
    view = state["view"]
    view.cubes = LazyCubeList(_sliced(dict(enumerate(list.__iter__(view.cubes))), _row, pause).values())
    disclosed = {i: _pickled(v) for i, v in state["disclosed"].items()}
    return {**state, "bm25": bm25, "view": view, "disclosed": disclosed}


def _sliced(values: dict[Any, Any], fn: Callable[[Any], Any], pause: Callable[[], None]) -> dict[Any, Any]:
    """``{k: fn(v)}`` with ``pause()`` between slices."""
    out: dict[Any, Any] = {}
    for n, (key, value) in enumerate(values.items()):
        if n % ENCODE_SLICE == ENCODE_SLICE - 1:
            pause()
        out[key] = fn(value)
    return out


def restored_bm25(state: dict[str, Any]) -> BM25Index:
    bm25 = BM25Index(k1=state["k1"], b=state["b"])
    bm25._postings = LazyDict(state["postings"])
    bm25._lengths = state["lengths"]
    bm25._terms = LazyDict(state["terms"])
    bm25._total = state["total"]
    return bm25


def restored_disclosed(disclosed: dict[str, Any]) -> LazyDict:
    """An index's ``disclosed`` from a snapshot: each memory's disclosures unpickled when
    first read (a restored profile needs none of them until a disclosure changes)."""
    return LazyDict(disclosed)


def _row(value: Any) -> Row:
    return value if type(value) is bytes else encode(value)


def saved_view(view: Any) -> Any:
    """A copy of an OwnerView that later changes do not touch (taken under the owner's
    lock): its arrays cut to the rows in use."""
    out = copy.copy(view)
    n = view.n
    for name in ("_matrix", "_sessions", "_recency", "_days", "_months", "_speakers"):
        setattr(out, name, getattr(view, name)[:n].copy())
    out.ids = list(view.ids)
    out.cubes = list(list.__iter__(view.cubes))  # memories or still-pickled rows (nothing decoded)
    out.position = dict(view.position)
    out.session_codes = dict(view.session_codes)
    out.speaker_codes = dict(view.speaker_codes)
    out.mentions = view.mentions.trimmed()
    out.postings = PostingArrays()  # a cache, rebuilt per term as queries read them
    return out


def restored_cubes(view: Any) -> LazyCubeDict:
    """The index's ``cubes`` for a restored view, sharing its rows (decoded apart)."""
    return LazyCubeDict(zip(view.ids, list.__iter__(view.cubes), strict=True))
