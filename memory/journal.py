"""The write-ahead journal: every memory write is durable before it is acknowledged.

A SQLite database in WAL mode with ``synchronous=FULL`` under the data dir
(``<data_dir>/journal/journal.sqlite3``). Every write the engine accepts — a
chat turn, a ``POST /v1/memories`` batch — is a fully built :class:`MemCube`
(its id included) and is committed here, fsync'd, before the client hears
"ok". The background writer (:mod:`memory.writer`) embeds and stores journaled
items and deletes them only after the store write succeeded; at startup it
replays whatever is left. Because the id is fixed at journal time, a replay
after a crash in the middle of a store write rewrites the same ids: the store
keeps one copy (Chroma's ``add`` ignores ids it already holds).

SQLite never runs on the event loop: one dedicated thread owns the connection
and executes queued operations. Operations that arrive while a commit is in
flight are executed together in the next transaction (group commit), so 50
concurrent replies cost a handful of fsyncs, not 50.

Tables:

- ``items``: pending writes (``seq`` order), with the owner, the batch (an
  API request's idempotency key) and ``claimed`` (1 while a request handler
  writes the item itself; the writer only takes unclaimed items; every claim
  is released at startup, since its process is gone).
- ``batches``: ``POST /v1/memories`` requests by idempotency key: the owner,
  a hash of the request, the response, ``pending`` until every item is stored,
  then ``done``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from memory.codec import from_record, to_metadata
from memory.cube import MemCube

log = logging.getLogger(__name__)

T = TypeVar("T")

JOURNAL_DIR = "journal"
JOURNAL_FILE = "journal.sqlite3"
MEMORY = ":memory:"  # a journal that does not survive the process (engines built without a data dir)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL,
    source TEXT NOT NULL,
    batch TEXT,
    claimed INTEGER NOT NULL DEFAULT 0,
    document TEXT NOT NULL,
    meta TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_claimed ON items (claimed, seq);
CREATE INDEX IF NOT EXISTS items_user ON items (user);
CREATE INDEX IF NOT EXISTS items_batch ON items (batch);
CREATE TABLE IF NOT EXISTS batches (
    key TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_user ON batches (user);
"""


class JournalError(Exception):
    """The journal could not be written (disk full, permissions, corruption)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One journaled write: a built memory and where it came from."""

    cube: MemCube
    source: str  # "turn" | "api"
    batch: str | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    key: str
    user: str
    request_hash: str
    response: Any
    state: str  # pending | done


@dataclass
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def journal_path(data_dir: Path) -> Path:
    return Path(data_dir) / JOURNAL_DIR / JOURNAL_FILE


class Journal:
    def __init__(self, path: Path | str = MEMORY) -> None:
        self.path = str(path)
        self.durable = self.path != MEMORY
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.depth = 0  # items waiting for the background writer (unclaimed), after the last commit
        self.commits = 0  # transactions (fsyncs) so far

    # -- plumbing ---------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise JournalError("the journal is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="memproxy-journal", daemon=True)
                self._thread.start()
        self._ops.put(_Op(fn, future, loop))
        return await future

    def _connect(self) -> sqlite3.Connection:
        if self.durable:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # fsync on every commit
        conn.executescript(SCHEMA)
        conn.execute("UPDATE items SET claimed = 0 WHERE claimed != 0")  # their handlers died with the process
        return conn

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        startup_error: BaseException | None = None
        try:
            conn = self._connect()
            self.depth = _depth(conn)
        except Exception as exc:  # reported to every caller
            startup_error = exc
            log.exception("could not open the memory journal at %s", self.path)
        while True:
            first = self._ops.get()
            if first is None:
                break
            ops = [first]
            stop = False
            while True:  # group commit: everything queued meanwhile shares this transaction
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                ops.append(nxt)
            results: list[tuple[bool, Any]] = []
            if conn is None:
                error = JournalError(f"the journal is unavailable: {startup_error}")
                results = [(False, error) for _ in ops]
            else:
                results = self._transaction(conn, ops)
            for op, (ok, value) in zip(ops, results, strict=True):
                _call_soon(op.loop, _settle, op.future, ok, value)
            if stop:
                break
        if conn is not None:
            conn.close()

    def _transaction(self, conn: sqlite3.Connection, ops: list[_Op]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, op in enumerate(ops):
                conn.execute(f"SAVEPOINT op{i}")
                try:
                    results.append((True, op.fn(conn)))
                    conn.execute(f"RELEASE op{i}")
                except Exception as exc:  # one bad op fails alone
                    conn.execute(f"ROLLBACK TO op{i}")
                    conn.execute(f"RELEASE op{i}")
                    results.append((False, exc))
            conn.execute("COMMIT")
            self.commits += 1
            self.depth = _depth(conn)
        except Exception as exc:  # the commit itself failed: nothing of it is durable
            log.exception("memory journal commit failed")
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            error = JournalError(f"the journal commit failed: {type(exc).__name__}: {exc}")
            results = [(False, error) for _ in ops]
        return results

    async def open(self) -> Journal:
        """Open the database now (and learn its depth); raises JournalError when it cannot be."""
        await self._run(lambda conn: None)
        return self

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._ops.put(None)
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)

    # -- writes -------------------------------------------------------------------

    async def append(self, entries: Sequence[Entry], *, claimed: bool = False) -> None:
        """Durably journal ``entries`` (committed and fsync'd when this returns)."""
        rows = [
            (
                e.cube.id,
                e.cube.owner.user,
                e.source,
                e.batch,
                1 if claimed else 0,
                e.cube.content,
                json.dumps(to_metadata(e.cube), ensure_ascii=False),
                time.time(),
            )
            for e in entries
        ]

        def insert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO items (id, user, source, batch, claimed, document, meta, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._run(insert)

    async def begin_batch(
        self, key: str, user: str, request_hash: str, response: Any, entries: Sequence[Entry]
    ) -> None:
        """Journal an API batch and its idempotency record in one transaction (claimed by the caller)."""
        rows = [
            (e.cube.id, e.cube.owner.user, e.source, key, 1, e.cube.content,
             json.dumps(to_metadata(e.cube), ensure_ascii=False), time.time())
            for e in entries
        ]
        body = json.dumps(response, ensure_ascii=False)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO batches (key, user, request_hash, response, state, created) VALUES (?, ?, ?, ?, 'pending', ?)",
                (key, user, request_hash, body, time.time()),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO items (id, user, source, batch, claimed, document, meta, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._run(insert)

    async def complete(self, ids: Sequence[str]) -> None:
        """The store holds ``ids``: drop them, and mark their batches done once empty."""
        ids = list(ids)

        def delete(conn: sqlite3.Connection) -> None:
            batches = _batches_of(conn, ids)
            _delete_ids(conn, ids)
            for key in batches:
                left = conn.execute("SELECT 1 FROM items WHERE batch = ? LIMIT 1", (key,)).fetchone()
                if left is None:
                    conn.execute("UPDATE batches SET state = 'done' WHERE key = ?", (key,))

        await self._run(delete)

    async def release(self, ids: Sequence[str]) -> None:
        """Hand claimed items over to the background writer."""
        ids = list(ids)

        def unclaim(conn: sqlite3.Connection) -> None:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                conn.execute(f"UPDATE items SET claimed = 0 WHERE id IN ({marks})", chunk)

        await self._run(unclaim)

    async def abandon_batch(self, key: str) -> int:
        """Remove a batch that failed before anything of it was acknowledged."""

        def drop(conn: sqlite3.Connection) -> int:
            count = conn.execute("DELETE FROM items WHERE batch = ?", (key,)).rowcount
            conn.execute("DELETE FROM batches WHERE key = ?", (key,))
            return int(count)

        return await self._run(drop)

    async def drop_owner(self, user: str) -> tuple[int, int]:
        """Forget ``user``: their pending items and idempotency records. Returns (items, batches)."""

        def drop(conn: sqlite3.Connection) -> tuple[int, int]:
            items = conn.execute("DELETE FROM items WHERE user = ?", (user,)).rowcount
            batches = conn.execute("DELETE FROM batches WHERE user = ?", (user,)).rowcount
            return int(items), int(batches)

        return await self._run(drop)

    async def drop_id(self, memory_id: str) -> MemCube | None:
        """Remove one pending item; the memory it held, or None when it was not pending."""

        def drop(conn: sqlite3.Connection) -> MemCube | None:
            row = conn.execute("SELECT id, document, meta FROM items WHERE id = ?", (memory_id,)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM items WHERE id = ?", (memory_id,))
            return from_record(row[0], row[1], json.loads(row[2]))

        return await self._run(drop)

    # -- reads ----------------------------------------------------------------------

    async def next_unclaimed(self, limit: int) -> list[Entry]:
        """The oldest ``limit`` items waiting for the background writer."""

        def select(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute(
                "SELECT seq, id, source, batch, document, meta FROM items WHERE claimed = 0 ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            return [_entry(row) for row in rows]

        return await self._run(select)

    async def batch(self, key: str) -> tuple[Batch, list[Entry]] | None:
        """The idempotency record for ``key`` and its items still pending, or None."""

        def select(conn: sqlite3.Connection) -> tuple[Batch, list[Entry]] | None:
            row = conn.execute(
                "SELECT key, user, request_hash, response, state FROM batches WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            items = conn.execute(
                "SELECT seq, id, source, batch, document, meta FROM items WHERE batch = ? ORDER BY seq", (key,)
            ).fetchall()
            return Batch(row[0], row[1], row[2], json.loads(row[3]), row[4]), [_entry(r) for r in items]

        return await self._run(select)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are still journaled."""
        ids = list(ids)

        def select(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in conn.execute(f"SELECT id FROM items WHERE id IN ({marks})", chunk))
            return found

        return await self._run(select)

    async def pending_count(self, user: str | None = None) -> int:
        def count(conn: sqlite3.Connection) -> int:
            if user is None:
                return int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM items WHERE user = ?", (user,)).fetchone()[0])

        return await self._run(count)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # that loop is closed: nobody waits for the answer any more
        pass


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller gave up (cancelled)
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _depth(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM items WHERE claimed = 0").fetchone()[0])


def _entry(row: Sequence[Any]) -> Entry:
    seq, memory_id, source, batch, document, meta = row
    return Entry(from_record(memory_id, document, json.loads(meta)), source, batch, int(seq))


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _batches_of(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(f"SELECT DISTINCT batch FROM items WHERE id IN ({marks}) AND batch IS NOT NULL", chunk)
        found.update(r[0] for r in rows)
    return found


def _delete_ids(conn: sqlite3.Connection, ids: list[str]) -> None:
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
