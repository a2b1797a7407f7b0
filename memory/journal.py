"""The write-ahead journal: every memory write is durable before it is acknowledged.

A SQLite database in WAL mode under the data dir
(``<data_dir>/journal/journal.sqlite3``); new writes and removals commit with
``synchronous=FULL`` (see "What is fsync'd" below). Every write the engine accepts — a
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

What is fsync'd, precisely. Every transaction that holds a *durable* operation
(a new write: :meth:`Journal.append`, :meth:`Journal.begin_batch`; a removal:
:meth:`Journal.drop_id`, :meth:`Journal.drop_owner`,
:meth:`Journal.abandon_batch`; :meth:`Journal.release`) is committed with
``synchronous=FULL`` and always ends with an fsync of the WAL, even when it
changed nothing (it then writes the ``barrier`` row). The background writer's
bookkeeping, taking items (:meth:`Journal.next_unclaimed`) and dropping stored
ones (:meth:`Journal.complete`), is committed with ``synchronous=NORMAL``:
written to the WAL, not fsync'd, so a turn's commit never queues behind two
more fsyncs per turn. A process crash (``kill -9``) loses none of those (the
kernel has the bytes); an OS crash or power loss may lose the ones after the
last fsync, and that is safe: the WAL is ordered and fsync covers the whole
file, so every later durable commit (of any process sharing the journal) makes
them durable too; a lost claim is released at the next start like a dead
holder's; a lost completion writes the item again under its fixed id (the
store keeps one copy). A deleted or forgotten memory cannot come back that
way: the removal syncs even when the item had already left the journal, which
makes the completion before it durable.

Tables:

- ``items``: pending writes (``seq`` order), with the owner, the batch (an
  API request's idempotency key) and ``claimed``: 0 when free, ``+holder``
  while a request handler of that process writes the item itself,
  ``-holder`` once that process's background writer took it.

Several processes may share one journal (``memproxy serve --workers N``: one
data dir, one file). Each :class:`Journal` is a *holder* with a random token
and an exclusive ``flock`` on ``journal/holders/<token>.lock`` for as long as
it is open (the kernel drops it when the process dies, ``kill -9`` included).
A writer takes free items atomically (``BEGIN IMMEDIATE``: SQLite's write
lock spans processes), so no item is written by two live processes; claims
whose holder's lock is free (a dead process) are released by whichever
process looks next (at open, then at most every ``SWEEP_S``), and its items
are written by a survivor. Item ids are fixed at journal time, so even a
write repeated after a crash keeps one copy in the store.
- ``batches``: ``POST /v1/memories`` requests by idempotency key: the owner,
  a hash of the request, the response, ``pending`` until every item is stored,
  then ``done``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import queue
import secrets
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
HOLDERS_DIR = "holders"
SWEEP_S = 2.0  # at most this often, claims of dead holders are released
BUSY_TIMEOUT_MS = 30_000
WARM_WAL_BYTES = 4 << 20  # about SQLite's auto-checkpoint size (1,000 pages of 4 KiB)  # another process holds SQLite's write lock: wait this long

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
CREATE TABLE IF NOT EXISTS barrier (id INTEGER PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS wal_warmup (b BLOB);
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
    durable: bool  # its transaction ends with an fsync


def journal_path(data_dir: Path) -> Path:
    return Path(data_dir) / JOURNAL_DIR / JOURNAL_FILE


class Holder:
    """This process's stake in a shared journal: a token, and a lock held while alive."""

    def __init__(self, directory: Path | None) -> None:
        self.token = secrets.randbits(62) + 2  # never 0 (free) nor 1 (a claim of a pre-holder version)
        self.directory = directory
        self._fd: int | None = None

    def acquire(self) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            path = self._path(self.token)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:  # not unlinked by a sweep meanwhile
                    self._fd = fd
                    return
            except FileNotFoundError:
                pass
            os.close(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self.directory is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(self.token))
            os.close(fd)

    def alive(self, token: int) -> bool:
        """Whether the process holding ``token`` still runs (its lock is held)."""
        if token == self.token:
            return True
        if self.directory is None:
            return False
        path = self._path(token)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead holder's file: gone, while we hold its lock
        os.close(fd)
        return False

    def _path(self, token: int) -> Path:
        assert self.directory is not None
        return self.directory / f"{token}.lock"


class Journal:
    def __init__(self, path: Path | str = MEMORY) -> None:
        self.path = str(path)
        self.durable = self.path != MEMORY
        self.holder = Holder(Path(self.path).parent / HOLDERS_DIR if self.durable else None)
        self._swept = 0.0
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.depth = 0  # items waiting for the background writer (unclaimed), after the last commit
        self.commits = 0  # transactions so far
        self.syncs = 0  # transactions committed with an fsync (synchronous=FULL)
        self._synchronous = "FULL"  # the connection's current setting

    # -- plumbing ---------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """``fn`` in the journal's next transaction; ``durable=False``: committed
        without an fsync unless a durable operation shares the transaction."""
        if self._closed:
            raise JournalError("the journal is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="memproxy-journal", daemon=True)
                self._thread.start()
        self._ops.put(_Op(fn, future, loop, durable))
        return await future

    def _connect(self) -> sqlite3.Connection:
        if self.durable:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.holder.acquire()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # fsync on every commit
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        self._sweep(conn)  # claims of processes that died (this one's previous life among them)
        conn.execute("COMMIT")
        self._warm_wal(conn)
        return conn

    def _warm_wal(self, conn: sqlite3.Connection) -> None:
        """Give a new WAL file its working size now, so that commits overwrite it in place.

        SQLite deletes the WAL when its last connection closes, and a WAL that
        grows with every commit makes every fsync also commit the file's new
        size (a filesystem journal commit): on this project's test machine a
        commit took ~4 ms p50 that way, ~0.6 ms overwriting blocks already
        allocated. So at open, a WAL smaller than :data:`WARM_WAL_BYTES` gets a
        scratch row of that size, committed, deleted, and checkpointed: the
        file keeps its size, and later commits restart it from the top (the
        default auto-checkpoint keeps it near that size). The database keeps
        the freed pages for reuse (at most about that size).
        """
        if not self.durable:
            return
        wal = Path(self.path + "-wal")
        try:
            if wal.stat().st_size >= WARM_WAL_BYTES:
                return
        except FileNotFoundError:
            pass
        conn.execute("INSERT INTO wal_warmup (b) VALUES (zeroblob(?))", (WARM_WAL_BYTES,))
        conn.execute("DELETE FROM wal_warmup")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _sweep(self, conn: sqlite3.Connection) -> int:
        """Release the claims of holders that are gone (inside a write transaction); how many items."""
        self._swept = time.monotonic()
        tokens = [int(r[0]) for r in conn.execute("SELECT DISTINCT abs(claimed) FROM items WHERE claimed != 0")]
        released = 0
        for token in tokens:
            if not self.holder.alive(token):
                released += conn.execute(
                    "UPDATE items SET claimed = 0 WHERE claimed = ? OR claimed = ?", (token, -token)
                ).rowcount
        if released:
            log.warning("memory journal: %d item(s) of a process that died are taken over", released)
        return released

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
        self.holder.release()

    def _transaction(self, conn: sqlite3.Connection, ops: list[_Op]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        durable = any(op.durable for op in ops)
        try:
            self._set_synchronous(conn, "FULL" if durable else "NORMAL")
            before = conn.total_changes
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
            if durable and conn.total_changes == before:  # nothing written: write something, so it syncs
                conn.execute("INSERT OR REPLACE INTO barrier (id, at) VALUES (1, ?)", (time.time(),))
            conn.execute("COMMIT")
            self.commits += 1
            self.syncs += durable
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

    def _set_synchronous(self, conn: sqlite3.Connection, mode: str) -> None:
        if mode != self._synchronous:
            conn.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode

    async def open(self) -> Journal:
        """Open the database now (and learn its depth); raises JournalError when it cannot be."""
        await self._run(lambda conn: None, durable=False)
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
        mark = self.holder.token if claimed else 0
        rows = [
            (
                e.cube.id,
                e.cube.owner.user,
                e.source,
                e.batch,
                mark,
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
        mark = self.holder.token
        rows = [
            (e.cube.id, e.cube.owner.user, e.source, key, mark, e.cube.content,
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

        await self._run(delete, durable=False)  # lost in a power cut: stored again, same ids

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
        """The oldest ``limit`` items waiting for this process's background writer,
        taken for it: free items, or items it took before and has not stored yet
        (no other live process writes them)."""
        taken = -self.holder.token

        def take(conn: sqlite3.Connection) -> list[Entry]:
            if self.durable and time.monotonic() - self._swept >= SWEEP_S:
                self._sweep(conn)
            rows = conn.execute(
                "SELECT seq, id, source, batch, document, meta FROM items WHERE claimed = 0 OR claimed = ?"
                " ORDER BY seq LIMIT ?",
                (taken, limit),
            ).fetchall()
            for chunk in _chunks([r[0] for r in rows]):
                marks = ",".join("?" * len(chunk))
                conn.execute(f"UPDATE items SET claimed = ? WHERE seq IN ({marks})", (taken, *chunk))
            return [_entry(row) for row in rows]

        return await self._run(take, durable=False)  # lost in a power cut: released at the next start

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

        return await self._run(select, durable=False)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are still journaled."""
        ids = list(ids)

        def select(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in conn.execute(f"SELECT id FROM items WHERE id IN ({marks})", chunk))
            return found

        return await self._run(select, durable=False)

    async def pending_count(self, user: str | None = None) -> int:
        def count(conn: sqlite3.Connection) -> int:
            if user is None:
                return int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM items WHERE user = ?", (user,)).fetchone()[0])

        return await self._run(count, durable=False)


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
    """Items waiting for a background writer: free, or taken by one (claims of request handlers excluded)."""
    return int(conn.execute("SELECT COUNT(*) FROM items WHERE claimed <= 0").fetchone()[0])


def _entry(row: Sequence[Any]) -> Entry:
    seq, memory_id, source, batch, document, meta = row
    return Entry(from_record(memory_id, document, json.loads(meta)), source, batch, int(seq))


def _chunks(ids: list[Any], size: int = 500) -> list[list[Any]]:
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
