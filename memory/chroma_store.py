"""A :class:`~memory.store.MemoryStore` on Chroma 1.5.

One collection per owner, ``mp_<owner key>``, in cosine space: recall never
needs a ``where`` filter on a shared collection (~37 ms) and stays on the
unfiltered HNSW path (~1.6 ms). Embeddings are always passed in
(``embedding_function=None``), so Chroma never tries to download a model.

Chroma's client is synchronous; every call runs on a small dedicated thread
pool under a deadline, and any failure surfaces as ``StoreUnavailable``. The
client is created lazily on first use; creation failures are retried on the
next call.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from memory.codec import from_record, to_metadata
from memory.cube import MemCube, State, owner_key, owner_key_of_id
from memory.errors import MemoryEngineError, StoreUnavailable
from memory.longlived import settle

if TYPE_CHECKING:
    from memory.chroma_child import ChromaChild

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
COLLECTION_PREFIX = "mp_"
# Small coordination records shared by every process on the store (memory/lease.py):
# a collection of its own, outside the owners' ``mp_`` namespace.
CONTROL_COLLECTION = "memproxy_control"
WRITE_BATCH = 1000
# Rows per read. Chroma answers a ``get`` with one SQL statement holding a
# variable per row, and SQLite refuses more than 32,766 of them ("too many
# SQL variables"), so every read that can touch many rows goes in pages.
# Chroma builds a page's Python objects holding the GIL, which stalls the
# event loop meanwhile: at 100k memories ~115 ms for 2,000 rows, ~17 ms for
# 500; a call also costs ~0.04 s on top of ~0.18 ms a row (a one-off
# measurement on 2 cores against the ``memproxy bench scale`` store).
READ_PAGE = 1000
# Consecutive pages overlap by this many rows (duplicates are dropped): a
# memory deleted or archived while an owner is read shifts the later rows
# down, and without the overlap the row shifted over the page edge is missed.
PAGE_OVERLAP = 64
DEFAULT_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 3.0
HTTP_CONNECT_TIMEOUT_S = 2.0


# Every stored row also carries, besides the memory's own fields (memory/codec.py):
WRITTEN_KEY = "_w"  # when this row was last written (epoch seconds, the writer's clock): deltas read by it
ID_MS_KEY = "_id_ms"  # the millisecond part of the id (ids sort by it): listing pages by it
LISTING_MARK = "mp_listing"  # collection metadata: every row carries ``_id_ms``
LIST_WINDOW_MS = 3_600_000  # the first id window a listing page reads; widened until the page is full
LIST_MIN_CAP = 256  # a window holding this many ids (or 4x the page) is narrowed before it is read


def collection_name(key: str) -> str:
    return f"{COLLECTION_PREFIX}{key}"


def id_ms(memory_id: str) -> int | None:
    """The creation millisecond in a memory id (``mem_<key>_<12 hex ms>...``), or None."""
    tail = memory_id.rsplit("_", 1)[-1]
    try:
        return int(tail[:12], 16) if len(tail) >= 12 else None
    except ValueError:
        return None


def stored_metadata(cube: MemCube, written: float) -> dict[str, Any]:
    """A memory's metadata as written: its fields plus the write stamp and id millisecond."""
    meta: dict[str, Any] = dict(to_metadata(cube))
    meta[WRITTEN_KEY] = written
    ms = id_ms(cube.id)
    if ms is not None:
        meta[ID_MS_KEY] = ms
    return meta


def _chroma_settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)


def embedded_client(path: Path) -> Any:
    import chromadb

    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=_chroma_settings())


def http_client(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Any:
    import chromadb
    import httpx

    parts = urlsplit(url if "://" in url else f"http://{url}")
    ssl = parts.scheme == "https"
    port = parts.port or (443 if ssl else 8000)
    client = chromadb.HttpClient(host=parts.hostname or "localhost", port=port, ssl=ssl, settings=_chroma_settings())
    # chromadb builds its httpx session with timeout=None; bound it so a
    # blackholed server cannot pin our worker threads forever.
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout_s, connect=HTTP_CONNECT_TIMEOUT_S)
    return client


def _rows(result: dict[str, Any]) -> list[MemCube]:
    docs = result.get("documents") or []
    metas = result.get("metadatas") or []
    return [from_record(i, d or "", dict(m or {})) for i, d, m in zip(result["ids"], docs, metas, strict=True)]


def _ids(result: dict[str, Any]) -> list[str]:
    return list(result["ids"])


def _active_rows(result: dict[str, Any]) -> list[MemCube]:
    return [cube for cube in _rows(result) if cube.state == State.ACTIVE.value]


def _active_rows_with_vectors(result: dict[str, Any]) -> list[tuple[MemCube, np.ndarray]]:
    vectors = np.asarray(result["embeddings"], dtype=np.float32)
    return [(cube, vector) for cube, vector in zip(_rows(result), vectors, strict=True) if cube.state == State.ACTIVE.value]


def _rows_with_vectors(result: dict[str, Any]) -> list[tuple[MemCube, np.ndarray]]:
    vectors = np.asarray(result["embeddings"], dtype=np.float32)
    return list(zip(_rows(result), vectors, strict=True))


def _row_id(row: object) -> str:
    """The memory id of a converted row: an id, a MemCube, or a ``(MemCube, vector)`` pair."""
    if isinstance(row, str):
        return row
    if isinstance(row, tuple):
        return row[0].id
    return row.id  # type: ignore[attr-defined]


class ChromaStore:
    def __init__(self, connect: Callable[[], Any], *, timeout_s: float = DEFAULT_TIMEOUT_S, workers: int = 4) -> None:
        self._connect = connect
        self._timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="memproxy-chroma")
        self._lock = threading.Lock()
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._listable: set[str] = set()  # owner keys whose rows all carry ``_id_ms``
        # in-process store: nobody else writes it, so callers may cache its vectors
        self.local = False
        self._child: ChromaChild | None = None  # a private server this store stops at close
        # Chroma runs in this process (its add holds the GIL for the whole call: memory.write_pipeline)
        self.in_process = False

    @classmethod
    def embedded(cls, path: Path) -> ChromaStore:
        store = cls(lambda: embedded_client(path))
        store.local = True
        store.in_process = True
        return store

    @classmethod
    def remote(cls, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> ChromaStore:
        return cls(lambda: http_client(url, timeout_s), timeout_s=timeout_s)

    @classmethod
    async def child(cls, path: Path) -> ChromaStore:
        """The embedded store run as a private child process (:mod:`memory.chroma_child`)."""
        from memory.chroma_child import ChromaChild

        child = await ChromaChild.start(path)
        store = cls.remote(child.url)
        store.local = True  # this process is its only writer, as embedded
        store._child = child
        return store

    # -- plumbing -----------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn, *args)
        limit = timeout_s or self._timeout_s
        try:
            return await asyncio.wait_for(future, timeout=limit)
        except MemoryEngineError:
            raise
        except TimeoutError as exc:
            raise StoreUnavailable(f"the memory store did not answer within {limit:.1f} s") from exc
        except Exception as exc:  # translate every client/transport error
            raise StoreUnavailable(f"the memory store failed: {type(exc).__name__}: {exc}") from exc

    def _client_sync(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _writable(self, key: str) -> Any:
        """The owner's collection, created when missing (never None)."""
        collection = self._collection(key, create=True)
        assert collection is not None  # create=True always gives one
        return collection

    def _collection(self, key: str, *, create: bool) -> Any | None:
        with self._lock:
            cached = self._collections.get(key)
        if cached is not None:
            return cached
        client = self._client_sync()
        name = collection_name(key)
        if create:
            collection = client.get_or_create_collection(
                name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )
            if not (collection.metadata or {}).get(LISTING_MARK) and collection.count() == 0:
                collection.modify(metadata={**(collection.metadata or {}), LISTING_MARK: 1})  # new: rows get _id_ms
        else:
            collection = self._existing(client, name)
            if collection is None:
                return None
        with self._lock:
            self._collections[key] = collection
        return collection

    @staticmethod
    def _existing(client: Any, name: str) -> Any | None:
        from chromadb.errors import NotFoundError

        try:
            return client.get_collection(name, embedding_function=None)
        except NotFoundError:
            return None

    def forget_collection(self, key: str) -> None:
        """Drop the cached handle of an owner's collection (another process deleted it)."""
        self._forget_collection(key)

    def _forget_collection(self, key: str) -> None:
        with self._lock:
            self._collections.pop(key, None)
            self._listable.discard(key)

    # -- sync operations (run on the executor) ------------------------------

    def _add_sync(self, cubes: Sequence[MemCube], embeddings: np.ndarray) -> None:
        self._write_sync(cubes, embeddings, replace=False)

    def _write_sync(self, cubes: Sequence[MemCube], embeddings: np.ndarray, *, replace: bool) -> None:
        """Write ``cubes`` to their owners' collections, ``WRITE_BATCH`` rows a call:
        ``add`` (existing ids are skipped) or, with ``replace``, ``upsert``."""
        by_key: dict[str, list[int]] = {}
        for index, cube in enumerate(cubes):
            by_key.setdefault(cube.owner.key, []).append(index)
        written = time.time()
        for key, indexes in by_key.items():
            collection = self._writable(key)
            write = collection.upsert if replace else collection.add
            for start in range(0, len(indexes), WRITE_BATCH):
                chunk = indexes[start : start + WRITE_BATCH]
                write(
                    ids=[cubes[i].id for i in chunk],
                    embeddings=embeddings[chunk],
                    documents=[cubes[i].content for i in chunk],
                    metadatas=[stored_metadata(cubes[i], written) for i in chunk],
                )

    def _page_sync(
        self,
        user: str,
        where: dict[str, Any] | None,
        include: list[str],
        offset: int,
        convert: Callable[[dict[str, Any]], list[R]],
    ) -> tuple[list[str], list[R]] | None:
        collection = self._collection(owner_key(user), create=False)
        if collection is None:
            return None
        page = dict(collection.get(where=where, include=include, offset=offset, limit=READ_PAGE))
        return list(page["ids"]), convert(page)

    async def _paged(
        self, user: str, where: dict[str, Any] | None, include: list[str], convert: Callable[[dict[str, Any]], list[R]]
    ) -> list[R]:
        """Every row of ``user`` matching ``where``, read in overlapping pages
        (each page a call of its own, under the store's deadline; ``convert``
        turns a page into rows on the store's threads), each id once."""
        out: list[R] = []
        seen: set[str] = set()
        offset = 0
        while True:
            page = await self._call(self._page_sync, user, where, include, offset, convert)
            if page is None:
                return out
            ids, rows = page
            if seen.isdisjoint(ids):
                out.extend(rows)
            else:  # the overlap: keep rows whose own id was not read before (``convert`` may drop rows)
                out.extend(row for row in rows if _row_id(row) not in seen)
            seen.update(ids)
            settle()  # the page's rows live on in the owner's index (memory/longlived.py)
            if len(ids) < READ_PAGE:
                return out
            offset += READ_PAGE - PAGE_OVERLAP

    def _get_sync(self, memory_id: str) -> MemCube | None:
        key = owner_key_of_id(memory_id)
        collection = self._collection(key, create=False) if key else None
        if collection is None:
            return None
        rows = _rows(collection.get(ids=[memory_id], include=["documents", "metadatas"]))
        return rows[0] if rows else None

    def _update_sync(self, cube: MemCube, embedding: np.ndarray | None) -> None:
        collection = self._writable(cube.owner.key)
        meta = stored_metadata(cube, time.time())
        if embedding is None:  # content unchanged: metadata only
            collection.update(ids=[cube.id], metadatas=[meta])
            return
        collection.update(
            ids=[cube.id],
            embeddings=embedding.reshape(1, -1),
            documents=[cube.content],
            metadatas=[meta],
        )

    def _delete_sync(self, memory_id: str) -> bool:
        key = owner_key_of_id(memory_id)
        collection = self._collection(key, create=False) if key else None
        if collection is None or not collection.get(ids=[memory_id], include=[])["ids"]:
            return False
        collection.delete(ids=[memory_id])
        return True

    def _delete_owner_sync(self, user: str) -> int:
        key = owner_key(user)
        collection = self._collection(key, create=False)
        if collection is None:
            return 0
        count = int(collection.count())
        self._forget_collection(key)
        self._client_sync().delete_collection(collection_name(key))
        return count

    def _query_sync(self, user: str, embedding: np.ndarray, limit: int) -> list[tuple[MemCube, float]]:
        collection = self._collection(owner_key(user), create=False)
        if collection is None or limit <= 0:
            return []
        include = ["documents", "metadatas", "distances"]
        query = embedding.reshape(1, -1)
        result = collection.query(query_embeddings=query, n_results=limit, include=include)
        hits = self._hits(result)
        if any(cube.state != State.ACTIVE.value for cube, _ in hits):
            # rare: inactive memories in the top-k; ask again with a filter
            result = collection.query(
                query_embeddings=query, n_results=limit, where={"state": State.ACTIVE.value}, include=include
            )
            hits = self._hits(result)
        return hits

    @staticmethod
    def _hits(result: dict[str, Any]) -> list[tuple[MemCube, float]]:
        flat = {
            "ids": result["ids"][0],
            "documents": (result.get("documents") or [[]])[0],
            "metadatas": (result.get("metadatas") or [[]])[0],
        }
        distances = (result.get("distances") or [[]])[0]
        return [(cube, 1.0 - float(d)) for cube, d in zip(_rows(flat), distances, strict=True)]

    def _similarities_sync(self, user: str, embedding: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        collection = self._collection(owner_key(user), create=False)
        if collection is None or not ids:
            return {}
        query = embedding.reshape(-1).astype(np.float32)
        out: dict[str, float] = {}
        for start in range(0, len(ids), READ_PAGE):
            result = collection.get(ids=list(ids[start : start + READ_PAGE]), include=["embeddings"])
            vectors = np.asarray(result["embeddings"], dtype=np.float32)
            if vectors.size == 0:
                continue
            norms = np.linalg.norm(vectors, axis=1) * float(np.linalg.norm(query))
            sims = (vectors @ query) / np.maximum(norms, 1e-12)
            out.update({memory_id: float(s) for memory_id, s in zip(result["ids"], sims, strict=True)})
        return out

    def _rows_by_id_sync(self, user: str, ids: list[str]) -> list[MemCube]:
        collection = self._collection(owner_key(user), create=False)
        if collection is None or not ids:
            return []
        return _rows(collection.get(ids=ids, include=["documents", "metadatas"]))

    def _ping_sync(self) -> None:
        self._client_sync().heartbeat()

    def _size_sync(self) -> tuple[int, int]:
        client = self._client_sync()
        collections = [c for c in client.list_collections() if c.name.startswith(COLLECTION_PREFIX)]
        return len(collections), sum(int(c.count()) for c in collections)

    def _control_sync(self) -> Any:
        with self._lock:
            cached = self._collections.get(CONTROL_COLLECTION)
        if cached is not None:
            return cached
        collection = self._client_sync().get_or_create_collection(CONTROL_COLLECTION, embedding_function=None)
        with self._lock:
            self._collections[CONTROL_COLLECTION] = collection
        return collection

    def _control_get_sync(self, ids: list[str] | None, prefix: str | None) -> dict[str, str]:
        result = self._control_sync().get(ids=ids, include=["documents"])
        return {
            i: d or ""
            for i, d in zip(result["ids"], result.get("documents") or [], strict=True)
            if prefix is None or i.startswith(prefix)
        }

    def _control_put_sync(self, record_id: str, document: str) -> None:
        self._control_sync().upsert(ids=[record_id], embeddings=[[1.0]], documents=[document])

    def _control_delete_sync(self, ids: list[str]) -> None:
        self._control_sync().delete(ids=ids)

    # -- async API ------------------------------------------------------------

    async def add(self, cubes: Sequence[MemCube], embeddings: np.ndarray) -> None:
        """Each ``WRITE_BATCH`` rows are one call of their own, under the store's deadline."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        for start in range(0, len(cubes), WRITE_BATCH):
            chunk = list(cubes[start : start + WRITE_BATCH])
            await self._call(self._add_sync, chunk, embeddings[start : start + WRITE_BATCH])

    async def get(self, memory_id: str) -> MemCube | None:
        return await self._call(self._get_sync, memory_id)

    async def update(self, cube: MemCube, embedding: np.ndarray | None) -> None:
        await self._call(self._update_sync, cube, embedding)

    async def delete(self, memory_id: str) -> bool:
        return await self._call(self._delete_sync, memory_id)

    async def delete_owner(self, user: str) -> int:
        return await self._call(self._delete_owner_sync, user)

    async def query(self, user: str, embedding: np.ndarray, limit: int) -> list[tuple[MemCube, float]]:
        return await self._call(self._query_sync, user, embedding, limit)

    async def similarities(self, user: str, embedding: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        return await self._call(self._similarities_sync, user, embedding, list(ids))

    async def nearest_ids(self, user: str, embedding: np.ndarray, limit: int) -> list[str]:
        """Ids of (up to) ``limit`` nearest memories by the store's HNSW index, any state:
        ids only (no documents, metadata or distances), the candidate generation of a
        large owner's recall (memory/candidates.py)."""
        return await self._call(self._nearest_ids_sync, user, embedding, limit)

    async def warm_index(self, user: str, min_rows: int) -> None:
        """Load ``user``'s HNSW index from disk now, if the owner has ``min_rows`` rows or more
        (its first query loads it: 2.4 s at 100,000 rows). Never raises: a failure is logged."""
        try:
            await self._call(self._warm_index_sync, user, min_rows)
        except StoreUnavailable as exc:
            log.warning("could not load the store index of %s: %s", user, exc)

    def _warm_index_sync(self, user: str, min_rows: int) -> None:
        collection = self._collection(owner_key(user), create=False)
        if collection is None or collection.count() < min_rows:
            return
        one = np.asarray(collection.get(limit=1, include=["embeddings"])["embeddings"], dtype=np.float32)
        if one.size:  # any stored vector will do: the query only makes the store load its index
            collection.query(query_embeddings=one.reshape(1, -1), n_results=1, include=[])

    def _nearest_ids_sync(self, user: str, embedding: np.ndarray, limit: int) -> list[str]:
        collection = self._collection(owner_key(user), create=False)
        if collection is None or limit <= 0:
            return []
        result = collection.query(query_embeddings=embedding.reshape(1, -1), n_results=limit, include=[])
        return list(result["ids"][0])

    # Reads of a whole owner filter ``state`` here rather than with ``where``:
    # a filtered page costs Chroma a scan of the owner's metadata each call
    # (+0.15-0.25 s a page at 100k memories), and inactive rows are few.

    async def all_active(self, user: str) -> list[MemCube]:
        return await self._paged(user, None, ["documents", "metadatas"], _active_rows)

    async def active_with_vectors(self, user: str) -> tuple[list[MemCube], list[np.ndarray]]:
        """Every active memory of ``user`` with its stored embedding (for in-memory scoring)."""
        include = ["documents", "metadatas", "embeddings"]
        rows = await self._paged(user, None, include, _active_rows_with_vectors)
        return [cube for cube, _ in rows], [vector for _, vector in rows]

    async def list(
        self, user: str, limit: int, after: str | None = None, tier: str | None = None
    ) -> tuple[list[MemCube], bool]:
        """One page in id order, read from the store a window of ids at a time:
        consecutive ``_id_ms`` ranges, each narrowed until it holds fewer than
        ``cap`` rows and widened while the page is short, so a page reads about
        its own size of ids, never every id of the owner. Collections written
        before rows carried ``_id_ms`` are stamped once, on their first listing."""
        if not await self._call(self._listable_sync, user):
            return [], False
        cap = max(4 * (limit + 1), LIST_MIN_CAP)
        horizon = int(time.time() * 1000) + 86_400_000  # past any id written yet: the window is open-ended
        lo = (id_ms(after) or 0) if after else 0
        width = LIST_WINDOW_MS
        if after is None:  # the owner's first row (insertion order) is a close guess of where ids start
            first = await self._call(self._first_ms_sync, user)
            if first is None:
                return [], False
            width = max(1, first + 1 - lo)
        page: list[str] = []
        while len(page) <= limit:
            hi: int | None = min(lo + width, horizon) if lo < horizon else None  # then: ids from the future
            ids, full = await self._call(self._window_sync, user, lo, hi, tier, cap)
            if full and hi is not None and hi - lo > 1:
                width = (hi - lo) // 2  # too dense: narrow this window
                continue
            if full:  # one millisecond (or ids past the horizon) holding more than ``cap`` rows: read it whole
                ids, _ = await self._call(self._window_sync, user, lo, hi, tier, None)
            found = sorted(ids)
            if after is not None:
                found = found[bisect.bisect_right(found, after) :]
            page.extend(found)
            if hi is None:
                break
            lo, width = hi, width * 4 if len(found) < cap // 4 else width
        rows: dict[str, MemCube] = {}
        for at in range(0, min(len(page), limit), READ_PAGE):
            chunk = await self._call(self._rows_by_id_sync, user, page[at : min(at + READ_PAGE, limit)])
            rows.update({c.id: c for c in chunk})
        return [rows[i] for i in page[:limit] if i in rows], len(page) > limit

    def _listable_sync(self, user: str) -> bool:
        """The owner has a collection whose every row carries ``_id_ms`` (stamped now if needed)."""
        key = owner_key(user)
        collection = self._collection(key, create=False)
        if collection is None:
            return False
        if key in self._listable or (collection.metadata or {}).get(LISTING_MARK):
            self._listable.add(key)
            return True
        offset = 0
        while True:  # stamp every row (metadata updates merge): rows of any version list alike
            ids = list(collection.get(include=[], offset=offset, limit=READ_PAGE)["ids"])
            stamped = [(i, id_ms(i)) for i in ids]
            pairs = [(i, ms) for i, ms in stamped if ms is not None]
            if pairs:
                collection.update(ids=[i for i, _ in pairs], metadatas=[{ID_MS_KEY: ms} for _, ms in pairs])
            if len(ids) < READ_PAGE:
                break
            offset += READ_PAGE
        collection.modify(metadata={**(collection.metadata or {}), LISTING_MARK: 1})
        self._listable.add(key)
        return True

    def _first_ms_sync(self, user: str) -> int | None:
        """A lower bound guess for the first id window: the owner's first stored row."""
        collection = self._collection(owner_key(user), create=False)
        if collection is None:
            return None
        ids = collection.get(include=[], limit=1)["ids"]
        return id_ms(ids[0]) if ids else None

    def _window_sync(
        self, user: str, lo: int, hi: int | None, tier: str | None, cap: int | None
    ) -> tuple[builtins.list[str], bool]:
        """Ids with ``lo <= _id_ms < hi`` (and ``tier``): at most ``cap`` of them, and
        whether the cap was reached; ``cap`` None: all of them, in pages."""
        collection = self._collection(owner_key(user), create=False)
        if collection is None:
            return [], False
        clauses: list[dict[str, Any]] = [{ID_MS_KEY: {"$gte": lo}}]
        if hi is not None:
            clauses.append({ID_MS_KEY: {"$lt": hi}})
        if tier:
            clauses.append({"tier": tier})
        where = {"$and": clauses} if len(clauses) > 1 else clauses[0]
        if cap is not None:
            ids = list(collection.get(where=where, include=[], limit=cap)["ids"])
            return ids, len(ids) >= cap
        out: list[str] = []
        offset = 0
        while True:
            ids = list(collection.get(where=where, include=[], offset=offset, limit=READ_PAGE)["ids"])
            out.extend(ids)
            if len(ids) < READ_PAGE:
                return list(dict.fromkeys(out)), False
            offset += READ_PAGE

    # -- deltas (memory/coherence.py, memory/snapshot.py) ------------------------

    async def changed_since(
        self, user: str, since: float
    ) -> tuple[builtins.list[MemCube], builtins.list[np.ndarray]]:
        """Every row of ``user`` (any state) written at or after ``since``, with its vector."""
        include = ["documents", "metadatas", "embeddings"]
        rows = await self._paged(user, {WRITTEN_KEY: {"$gte": since}}, include, _rows_with_vectors)
        return [cube for cube, _ in rows], [vector for _, vector in rows]

    async def ids(self, user: str) -> set[str]:
        """Every stored id of ``user`` (any state)."""
        return set(await self._paged(user, None, [], _ids))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(client, *args)`` on the store's threads, under its deadline (the change log's calls)."""
        return await self._call(lambda: fn(self._client_sync(), *args))

    async def size(self) -> tuple[int, int]:
        """(owners, memories of any state) held by the store: one count per owner collection."""
        return await self._call(self._size_sync)

    async def ping(self) -> None:
        await self._call(self._ping_sync, timeout_s=PING_TIMEOUT_S)

    # -- coordination records (memory/lease.py): id -> a JSON document -----------

    async def control_get(
        self, ids: Sequence[str] | None = None, *, prefix: str | None = None, timeout_s: float | None = None
    ) -> dict[str, str]:
        """The control records among ``ids`` (all of them when None, filtered by id ``prefix``)."""
        return await self._call(self._control_get_sync, list(ids) if ids is not None else None, prefix, timeout_s=timeout_s)

    async def control_put(self, record_id: str, document: str, *, timeout_s: float | None = None) -> None:
        """Write (replace) one control record."""
        await self._call(self._control_put_sync, record_id, document, timeout_s=timeout_s)

    async def control_delete(self, ids: Sequence[str]) -> None:
        """Delete control records."""
        await self._call(self._control_delete_sync, list(ids))

    # -- portable memory (memory/archive.py): exact records in, records + vectors out --

    async def upsert(self, cubes: Sequence[MemCube], embeddings: np.ndarray) -> None:
        """Store ``cubes`` as given, replacing any stored memory with the same id."""
        if cubes:
            await self._call(self._upsert_sync, list(cubes), np.asarray(embeddings, dtype=np.float32))

    async def fetch(
        self, user: str, ids: Sequence[str], *, vectors: bool = False
    ) -> dict[str, tuple[MemCube, np.ndarray | None]]:
        """The stored memories of ``user`` among ``ids`` (any state), with their vectors if asked."""
        return await self._call(self._fetch_sync, user, list(ids), vectors)

    def _upsert_sync(self, cubes: Sequence[MemCube], embeddings: np.ndarray) -> None:
        self._write_sync(cubes, embeddings, replace=True)

    def _fetch_sync(self, user: str, ids: Sequence[str], vectors: bool) -> dict[str, tuple[MemCube, np.ndarray | None]]:
        collection = self._collection(owner_key(user), create=False)
        if collection is None or not ids:
            return {}
        include = ["documents", "metadatas", "embeddings"] if vectors else ["documents", "metadatas"]
        result = collection.get(ids=list(ids), include=include)
        rows = _rows(result)
        found = np.asarray(result["embeddings"], dtype=np.float32) if vectors else None
        return {cube.id: (cube, found[n] if found is not None else None) for n, cube in enumerate(rows)}

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._child is not None:
            await self._child.stop()
