"""The memory engine: the one facade the HTTP layer talks to.

It validates input, builds MemCubes (ids, owner, provenance, token counts),
embeds in batches, writes to the store, keeps the per-owner lexical indexes
in step, runs hybrid recall, and owns the background turn writer.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from memory.blas import single_threaded_blas
from memory.candidates import ANN_MIN_MEMORIES, DENSE_CANDIDATES
from memory.changelog import ChangeLog
from memory.chroma_child import child_process
from memory.chroma_store import ChromaStore
from memory.codec import from_record, to_metadata
from memory.coherence import Coherence, SharedStore
from memory.cube import META_KEY, IdFactory, Kind, MemCube, Owner, Provenance, State, Tier, owner_key, utcnow
from memory.embedder import Embedder
from memory.errors import InvalidMemory, MemoryEngineError, MemoryNotFound, StoreUnavailable
from memory.explain import RecallTrace
from memory.extractor import FactExtractor
from memory.forgetting import ForgetReceipt, drop_owner_caches
from memory.journal import MEMORY, Entry, Journal, journal_path
from memory.lease import StoreLease
from memory.lexcache import LexicalCache, OwnerIndex
from memory.limits import check_batch, check_content, check_metadata, clip_content
from memory.longlived import settle
from memory.pack_owner import is_pack_owner
from memory.packrecall import PackSource, with_pack_hits
from memory.postings import PRIME_OWNER_MIN
from memory.profile import EMPTY as EMPTY_PROFILE
from memory.profile import Profile, build_profile, without_superseded
from memory.querybatch import QueryBatcher
from memory.quiet import Activity
from memory.recall import (
    DATES_KEY,
    Candidate,
    Recalled,
    RecallResult,
    candidate_count,
    pack,
    rank,
    rank_view,
)
from memory.redact import Redactor
from memory.render import render_item
from memory.scheduler import MemScheduler, RecallLog
from memory.snapshot import Restore, Snapshots
from memory.snippets import excerpted
from memory.standing import DOMAIN_FLOOR, DomainBridge, bridge_scores
from memory.store import MemoryStore
from memory.timeparse import QueryTime, query_time, resolve_relative
from memory.tokens import TokenCounter
from memory.writer import JournalWriter, Stages, turn_content

if TYPE_CHECKING:
    from memory.settings import MemorySettings

__all__ = [
    "CoreSet", "ForgetReceipt", "IdempotencyConflict", "MemoryEngine", "MemoryPatch", "NewMemory", "Page",
    "RecallResult", "Recalled",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

TIERS = frozenset(t.value for t in Tier)
STATES = frozenset(s.value for s in State)


@dataclass(frozen=True, slots=True)
class NewMemory:
    content: str
    kind: str = "fact"
    metadata: dict[str, Any] = field(default_factory=dict)
    event_time: datetime | None = None
    tier: str = "recall"
    session: str | None = None
    source_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MemoryPatch:  # None = unchanged
    content: str | None = None
    metadata: dict[str, Any] | None = None
    event_time: datetime | None = None
    kind: str | None = None
    tier: str | None = None
    state: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[MemCube]
    has_more: bool


@dataclass(frozen=True, slots=True)
class CoreSet:
    """An owner's core memories as injected: stable order, within the cap.

    ``version`` changes whenever the set (ids, versions, contents) changes;
    activation caches are keyed by it.
    """

    items: list[MemCube]
    version: str
    tokens: int
    profile: tuple[str, ...] = ()  # the user's self-disclosures (memory/profile.py), rendered with the core block

    @property
    def texts(self) -> list[str]:
        return [render_item(c) for c in self.items]


EMPTY_CORE_VERSION = "0"
CORE_PAGE = 500
# stored turns waiting for fact extraction (what memory.write_queue_size was, 10,000, before it
# became the writer's backlog bound alone: the extractor drops what does not fit)
EXTRACTOR_QUEUE = 10_000
RECALL_THREADS = 4  # recall's CPU work (ranking, index fills) runs here, never on the event loop
PROFILE_CHUNK = 256  # standing facts profiled per embedding call in a backfill


def core_version(cubes: Sequence[MemCube]) -> str:
    """A short digest of a core set; the same set always gives the same version."""
    if not cubes:
        return EMPTY_CORE_VERSION
    h = hashlib.sha256()
    for cube in cubes:
        h.update(f"{cube.id}\0{cube.version}\0{render_item(cube)}\n".encode())
    return h.hexdigest()[:16]


def pipelined(setting: str, store: MemoryStore) -> bool:
    """``memory.write_pipeline``: ``auto`` pipelines the writer unless Chroma runs in this
    process, where its add holds the GIL and a store overlapping the next embedding took the
    CPU from recalls (`memproxy bench load`: ok share down in 3 of 3 pairs inline, up in 2 of
    2 with the child store; docs/benchmarks.md)."""
    if setting == "auto":
        return not bool(getattr(store, "in_process", False))
    return setting == "on"


def _content(text: str | None) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidMemory("Memory content must be a non-empty string.", param="content")
    return text.strip()


def _choice(value: str, allowed: frozenset[str], param: str) -> str:
    if value not in allowed:
        options = ", ".join(sorted(allowed))
        raise InvalidMemory(f"Invalid {param} '{value}'; expected one of: {options}.", param=param)
    return value


def _kind(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidMemory("Memory kind must be a non-empty string.", param="kind")
    return value.strip()


def _metadata(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidMemory("Memory metadata must be a JSON object.", param="metadata")
    return value


def _event_time(value: datetime | None) -> datetime | None:
    """Timezone-aware UTC; naive times are taken as UTC (as in ``parse_time``)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidMemory("event_time must be a timestamp.", param="event_time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def stamp_dates(cube: MemCube) -> MemCube:
    """Record the dates the memory's relative expressions ("yesterday", "last
    week") resolve to, against its event time (else its write time), in
    ``metadata._memproxy.dates``; recall boosts memories by them when a query
    names a time. Other ``_memproxy`` keys are kept."""
    dates = resolve_relative(cube.content, cube.event_time or cube.created_at)
    system = cube.metadata.get(META_KEY)
    system = dict(system) if isinstance(system, dict) else {}
    if dates:
        system[DATES_KEY] = dates
    elif DATES_KEY not in system:
        return cube
    else:
        del system[DATES_KEY]
    metadata = {k: v for k, v in cube.metadata.items() if k != META_KEY}
    if system:
        metadata[META_KEY] = system
    return cube.evolve(metadata=metadata)


class IdempotencyConflict(InvalidMemory):
    """An Idempotency-Key reused with a different request body."""


class MemoryEngine:
    def __init__(
        self,
        settings: MemorySettings,
        store: MemoryStore,
        embedder: Embedder,
        *,
        owns_embedder: bool = False,
        counter: TokenCounter | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.counter = counter or TokenCounter()
        self._owns_embedder = owns_embedder
        self._ids = IdFactory()
        self.redactor = Redactor(settings.redact.credentials, settings.redact.pii)
        single_threaded_blas()  # recall's matrix products: one BLAS thread each (memory/blas.py)
        self._pool = ThreadPoolExecutor(max_workers=RECALL_THREADS, thread_name_prefix="memproxy-recall")
        self._local = bool(getattr(store, "local", False))  # a shared server may be written by others
        self._lexical = LexicalCache(
            self._load_and_warm, self._pool, capacity=settings.index_cache_memories, keep_vectors=self._local
        )
        self._bridge = DomainBridge(embedder.embed_query, embedder.embed)
        self.queries = QueryBatcher(embedder.embed_query)
        self._backfills: dict[str, asyncio.Task[None]] = {}
        # durable writes: every accepted write is journaled (fsync'd) first; the writer drains the journal
        self.journal = journal or Journal(MEMORY)
        # memory.write_pipeline: one batch is embedded while the one before it is stored (memory/writer.py)
        stages = Stages(self._embed_entries, self._write_entries)
        self.writer = JournalWriter(
            self.journal, stages if pipelined(settings.write_pipeline, store) else stages.__call__,
            linger_s=settings.write_linger_ms / 1000,
        )
        self._generation: dict[str, int] = {}  # user -> times forgotten (a write racing a forget is undone)
        self._voided: set[str] = set()  # journaled memories deleted while the writer may hold them
        self._remembering: set[asyncio.Task[str]] = set()  # remember_turn() calls still journaling
        self._core: dict[str, CoreSet] = {}  # user -> cached core set (dropped on any change)
        self.packs: PackSource | None = None  # installed memory packs (memory/packs.py), searched with the user's
        self.coherence: Coherence | None = None  # other processes' changes (a shared store; memory/coherence.py)
        self.snapshots: Snapshots | None = None  # per-owner index snapshots (memory/snapshot.py)
        self._synced: dict[str, float] = {}  # user -> wall time its index last read the store
        self._background: set[asyncio.Task[Any]] = set()
        self.activity = Activity()  # searches in flight: background saves step aside (memory/quiet.py)
        self.recalls = RecallLog(settings.scheduler.window_requests)
        self.scheduler = MemScheduler(self, settings.scheduler)
        # optional LLM fact extraction after each stored turn; None (no LLM call ever) by default
        self.extractor: FactExtractor | None = (
            FactExtractor(settings.extractor, self, maxsize=EXTRACTOR_QUEUE)
            if settings.extractor.model
            else None
        )

    @classmethod
    async def open(
        cls, settings: MemorySettings, data_dir: Path, *, embedder: Embedder | None = None
    ) -> MemoryEngine:
        """Build the engine; the store connects lazily, the embedder is warmed."""
        owns = embedder is None
        embedder = embedder or Embedder(
            settings.embedding_model,
            query_runtime=settings.embedding_query_runtime,
            bulk_runtime=settings.embedding_bulk_runtime,
            bulk_threads=settings.embedding_bulk_threads,
            cache_dir=settings.embedding_cache_dir,
            recipe=settings.embedding_recipe,
        )
        if settings.chroma_url:
            inner = ChromaStore.remote(settings.chroma_url)
        else:
            path = Path(settings.chroma_path) if settings.chroma_path else Path(data_dir) / "chroma"
            inner = await ChromaStore.child(path) if child_process(settings.chroma_process) else ChromaStore.embedded(path)
        # changes are logged for other processes sharing a server and for snapshot restores
        # (the embedded store logs deletions only: restores read its writes by their stamp)
        changes = ChangeLog(inner)
        coherent = not inner.local and settings.coherence.enabled
        store = SharedStore(inner, changes, local=inner.local or coherent, log_writes=not inner.local)
        journal = await Journal(journal_path(data_dir)).open()
        engine = cls(settings, store, embedder, owns_embedder=owns, journal=journal)
        if not inner.local:  # processes share the store: one scheduler (memory/lease.py)
            engine.scheduler.lease = StoreLease(inner, settings.scheduler.interval_s)
            engine.scheduler.shared = inner
        if coherent:
            engine.coherence = Coherence(engine, store, settings.coherence)
            engine.coherence.start()
        if settings.snapshot.enabled and store.local:
            engine.snapshots = Snapshots(
                Path(data_dir) / "index",
                store,
                changes,
                engine._pool,
                skew_s=settings.coherence.clock_skew_ms / 1000,
                interval_s=settings.snapshot.interval_s,
                pause=engine.activity.pause,
            )
            store.listeners.append(engine.snapshots.mark)
            engine.snapshots.start(engine.save_snapshots)
        engine._spawn(engine._connect(), "memproxy-store-connect")  # not on the first request's time
        await embedder.warmup()
        await asyncio.to_thread(engine.counter.count, "warm")  # tiktoken's tables: not on the first request's time
        await engine._bridge.anchors()  # the domain anchors every recall needs: not on the first request's time
        if engine.snapshots is not None:
            engine._spawn(engine._warm(engine.snapshots.recent(settings.snapshot.warm_owners)), "memproxy-warm")
        engine.writer.start()  # replays, in the background, whatever a previous process left journaled
        settle()  # the models live as long as the process (memory/longlived.py)
        return engine

    # -- writing --------------------------------------------------------------

    def _token_count(self, cube: MemCube) -> MemCube:
        return cube.evolve(tokens=self.counter.count(render_item(cube)))

    def _build(self, owner: Owner, item: NewMemory, provenance: Provenance) -> MemCube:
        if is_pack_owner(owner.user):
            raise InvalidMemory("Memory packs are read-only; install a new version instead.", param="user")
        member = Owner(user=owner.user, session=item.session or owner.session, agent=owner.agent)
        if item.source_ids:
            provenance = Provenance(
                request_id=provenance.request_id,
                model=provenance.model,
                roles=provenance.roles,
                source_ids=tuple(item.source_ids),
            )
        cube = MemCube(
            id=self._ids.new(member),
            owner=member,
            content=self._safe_content(item.content),
            kind=_kind(item.kind),
            tier=_choice(item.tier, TIERS, "tier"),
            event_time=_event_time(item.event_time),
            provenance=provenance,
            metadata=self._safe_metadata(item.metadata),
        )
        return self._token_count(stamp_dates(cube))

    def _safe_content(self, text: str | None) -> str:
        """Non-empty, within ``memory.limits.max_content_chars``, secrets redacted (before any embedding)."""
        content = check_content(_content(text), self.settings.limits.max_content_chars)
        return _content(self.redactor.redact(content)) if self.redactor else content

    def _safe_metadata(self, value: Any) -> dict[str, Any]:
        limits = self.settings.limits
        return check_metadata(_metadata(value), limits.max_metadata_bytes, limits.max_metadata_depth)

    async def _load_and_warm(self, user: str) -> tuple[list[MemCube], list[np.ndarray] | None] | Restore:
        """:meth:`_load_owner`, with a large owner's store index loaded meanwhile (memory/candidates.py)."""
        warm = getattr(self.store, "warm_index", None)
        if not self._local or warm is None:
            return await self._load_owner(user)
        loaded, _ = await asyncio.gather(self._load_owner(user), warm(user, ANN_MIN_MEMORIES))
        return loaded

    async def _load_owner(self, user: str) -> tuple[list[MemCube], list[np.ndarray] | None] | Restore:
        """An owner's active memories for its index (with vectors from a local store),
        or its snapshot and the delta since (memory/snapshot.py)."""
        if self.snapshots is not None:
            restored = await self.snapshots.restore(user)
            if restored is not None:
                self._spawn(self._prime(user, at_once=False), "memproxy-prime")
                self._note_synced(user, restored.began)
                if restored.changed or restored.deleted:  # saved again with the delta folded in
                    self.snapshots.mark(owner_key(user))
                return restored
        began = time.time()
        active_with_vectors = getattr(self.store, "active_with_vectors", None)
        if self._local and active_with_vectors is not None:
            cubes, vectors = await active_with_vectors(user)
            self._note_synced(user, began)
            self._spawn(self._prime(user, at_once=True), "memproxy-prime")
            if self.snapshots is not None:  # the next restart loads this instead (saved soon, else at close)
                self.snapshots.mark(owner_key(user))
                self._spawn(self._save_snapshot_when_quiet(user), "memproxy-snapshot")
            return cubes, vectors
        return await self.store.all_active(user), None

    async def _connect(self) -> None:
        try:
            await self.store.ping()
        except MemoryEngineError as exc:  # connected again on the next call
            log.warning("the memory store is not reachable yet: %s", exc)

    def _note_synced(self, user: str, at: float) -> None:
        self._synced[user] = at
        if self.coherence is not None:
            self.coherence.synced(user, at)

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _fresh(self) -> None:
        """Other processes' changes are in (memory/coherence.py); a clock check while polls keep up."""
        if self.coherence is not None:
            await self.coherence.fresh()

    # -- index snapshots (memory/snapshot.py) ---------------------------------------

    def _watermark(self, user: str) -> float:
        """Wall time up to which the owner's index holds every stored change (under its lock)."""
        if self.coherence is not None:
            return self.coherence.watermark(user)
        return time.time()  # the only writer: every change it made is in the index

    async def _save_snapshot(self, user: str) -> bool:
        assert self.snapshots is not None
        try:
            index = await self._lexical.index(user)
            await self.profile(user)  # built here, kept in the snapshot: not on the first request after a restart
            return await self.snapshots.save(user, index, lambda: self._watermark(user))
        except (OSError, MemoryEngineError) as exc:
            log.warning("saving the index snapshot of an owner failed: %s", exc)
            return False

    async def _prime(self, user: str, *, at_once: bool) -> None:
        """Build the BM25 arrays of a large owner's common terms ahead of their first query
        (memory/postings.py). ``at_once``: right after a rebuild from the store, in one job
        before the search that waits for the rebuild ranks (~1-3 s more on a 20-40 s
        rebuild at 100k: `memproxy bench scale --sizes 100000`, docs/benchmarks.md);
        else (a snapshot restore, whose first search must stay fast) once searches pause,
        a slice at a time between them (memory/quiet.py)."""
        try:
            index = await self._lexical.index(user)
        except MemoryEngineError:
            return  # the search that loads it reports the failure
        if len(index) < PRIME_OWNER_MIN:
            return
        if at_once:
            await self._lexical.read(index, _prime_all)
            return
        await self.activity.quiet()
        step = functools.partial(_prime_slice, stop=self.activity.busy)  # a search that starts ends the slice
        while self._lexical.holds(user) and not await self._lexical.read(index, step):
            await self.activity.quiet(0.0)

    async def _save_snapshot_when_quiet(self, user: str) -> bool:
        """Save a freshly built owner once searches pause (its first searches come right
        after the build and would share the GIL with the save: memory/quiet.py)."""
        await self.activity.quiet()
        return await self._save_snapshot(user)

    async def save_snapshots(self, *, everyone: bool = False) -> int:
        """Save the held owners changed since their snapshot (all held owners with ``everyone``)."""
        if self.snapshots is None:
            return 0
        saved = 0
        for user in self._lexical.users():
            if everyone or self.snapshots.dirty(user):
                saved += await self._save_snapshot(user)
        return saved

    async def _warm(self, users: builtins.list[str]) -> None:
        """Load recently active owners in the background after a start."""
        for user in users:
            try:
                await self._lexical.index(user)
            except MemoryEngineError as exc:
                log.warning("warming an owner's index failed: %s", exc)

    async def _store_new(self, cubes: list[MemCube], embeddings: Any = None) -> list[MemCube]:
        if not cubes:
            return []
        cubes = await self._bridge.stamp(cubes)
        if embeddings is None:
            embeddings = await self.embedder.embed_memories([c.content for c in cubes])
        await self.store.add(cubes, embeddings)
        for user in {c.owner.user for c in cubes if c.tier == Tier.CORE.value}:
            self.invalidate_core(user)
        self._lexical.upsert(cubes, embeddings)
        return cubes

    async def add(
        self,
        owner: Owner,
        items: Sequence[NewMemory],
        *,
        provenance: Provenance | None = None,
        idempotency_key: str | None = None,
        request_hash: str = "",
    ) -> list[MemCube]:
        """Store ``items`` all-or-nothing: the batch is journaled (fsync'd) as one
        transaction first, so a crash midway is completed from the journal at the
        next start, never left half-stored or duplicated. With ``idempotency_key``
        a repeat of the same request returns the first answer without adding
        anything (a different body under the same key raises IdempotencyConflict).
        """
        if not owner.user:
            raise InvalidMemory("A memory needs a user.", param="user")
        check_batch(len(items), self.settings.limits.max_batch)
        key = f"{owner.user}\x00{idempotency_key}" if idempotency_key else None
        if key is not None:
            replayed = await self._replay_batch(key, request_hash)
            if replayed is not None:
                return replayed
        cubes = [self._build(owner, item, provenance or Provenance()) for item in items]
        if not cubes:
            return []
        cubes = await self._bridge.stamp(cubes)  # answered as stored: standing flags and profiles set
        entries = [Entry(c, "api", key) for c in cubes]
        if key is not None:
            await self.journal.begin_batch(key, owner.user, request_hash, [_record(c) for c in cubes], entries)
        else:
            await self.journal.append(entries, claimed=True)
        ids = [c.id for c in cubes]
        try:
            await self._store_entries(entries)
        except BaseException:
            # still journaled, as one batch: the background writer completes it (a retry
            # with the same Idempotency-Key answers once it is stored)
            await asyncio.shield(self.journal.release(ids))
            self.writer.notify()
            raise
        await self.journal.complete(ids)
        return cubes

    async def _replay_batch(self, key: str, request_hash: str) -> list[MemCube] | None:
        found = await self.journal.batch(key)
        if found is None:
            return None
        batch, pending = found
        if batch.request_hash != request_hash:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different request body.", param="Idempotency-Key"
            )
        if pending:  # a crash or a store failure left part of it: finish it now (same ids: no duplicates)
            await self._store_entries(pending)
            await self.journal.complete([e.cube.id for e in pending])
        return [from_record(r["id"], r["document"], r["meta"]) for r in batch.response]

    # -- reading --------------------------------------------------------------

    async def search(
        self,
        user: str,
        query: str,
        *,
        token_budget: int | None = None,
        limit: int | None = None,
        record: bool = True,
        now: datetime | None = None,
        trace: RecallTrace | None = None,
    ) -> RecallResult:
        """``trace``: filled with what the ranking did to each candidate (memory/explain.py); nothing else changes."""
        with self.activity.search():
            return await self._search(user, query, token_budget, limit, record, now, trace)

    async def _search(
        self,
        user: str,
        query: str,
        token_budget: int | None,
        limit: int | None,
        record: bool,
        now: datetime | None,
        trace: RecallTrace | None,
    ) -> RecallResult:
        budget = self.settings.token_budget if token_budget is None else token_budget
        max_items = self.settings.max_items if limit is None else limit
        if not query or not query.strip() or budget <= 0 or max_items <= 0:
            return RecallResult(items=[], tokens=0)
        embedding = await self.queries.embed(query)  # batched with concurrent recalls (memory/querybatch.py)
        when = query_time(query, now=now or utcnow())
        ranked = await self._ranked(user, query, embedding, candidate_count(max_items), when, trace)
        if record:  # the scheduler's evidence (internal searches, e.g. the extractor's, are not)
            self.recalls.note(user, [c.id for c, _ in ranked[:max_items]])
        if trace is not None:
            for cube, _ in ranked:
                if cube.tier == Tier.CORE.value:
                    trace.cut(cube, "core")
        ranked = [(c, s) for c, s in ranked if c.tier != Tier.CORE.value]  # core is injected anyway
        if self.packs is not None:  # installed packs compete for the same budget (memory/packrecall.py)
            ranked = await with_pack_hits(self, self.packs, user, query, ranked, budget, max_items, now)
            if trace is not None:
                trace.add_ranked(ranked, source="pack")
        index = await self._lexical.index(user)

        def excerpt_and_pack(ix: OwnerIndex) -> RecallResult:  # long memories as their relevant part
            shown = ranked
            gone = {} if is_pack_owner(user) else self._current_profile(ix).superseded
            if gone:  # statements a newer one replaced are not injected as current (memory/profile.py)
                count = self.counter.count
                shown = [(without_superseded(c, gone[c.id], count) if c.id in gone else c, s) for c, s in ranked]
            short = excerpted(shown, query, ix.bm25.idf, self.counter.count, budget)
            return pack(short, budget, max_items, self.counter.count, trace)

        return await self._lexical.read(index, excerpt_and_pack)

    async def _ranked(
        self,
        user: str,
        query: str,
        embedding: np.ndarray,
        k: int,
        when: QueryTime | None,
        trace: RecallTrace | None = None,
    ) -> list[tuple[MemCube, float]]:
        """Hybrid recall of ``query`` over ``user``'s memories, ranked; the CPU
        work runs on the recall pool, so the event loop keeps serving and a
        caller's deadline bounds the wait."""
        await self._fresh()
        index = await self._lexical.index(user)
        domains = await self._bridge.query_domains(embedding)
        if float(domains.max()) >= DOMAIN_FLOOR:
            await self._profile_standing(user, index)
        min_score = self.settings.min_score
        nearest = await self._dense_candidates(user, index, embedding)

        def everything(ix: OwnerIndex) -> list[tuple[MemCube, float]] | None:
            view = ix.view()
            if view is None:
                return None
            bridged = bridge_scores(domains, ix.profiles, ix.cubes, min_score)
            return rank_view(view, ix.bm25, query, embedding, min_score, bridged, len(ix.cubes), when, trace, nearest)

        ranked = await self._lexical.read(index, everything)
        if ranked is not None:
            return ranked
        # no vectors in process (a shared store): top-k dense from the store + top-k lexical
        dense = await self.store.query(user, embedding, k)

        def lexical_top(ix: OwnerIndex) -> tuple[dict[str, float], dict[str, MemCube]]:
            scores = ix.bm25.scores(query)
            top = sorted(scores, key=scores.__getitem__, reverse=True)[:k]
            return scores, {i: ix.cubes[i] for i in top if i in ix.cubes}

        lexical, lexical_cubes = await self._lexical.read(index, lexical_top)
        cosines = {cube.id: cos for cube, cos in dense}
        cubes = {cube.id: cube for cube, _ in dense}
        missing = [i for i in lexical_cubes if i not in cosines]
        if missing:
            cosines.update(await self.store.similarities(user, embedding, missing))
            cubes.update({i: lexical_cubes[i] for i in missing if i in cosines})
        candidates = [Candidate(cube, cosines[i], lexical.get(i, 0.0)) for i, cube in cubes.items()]

        def ranked_candidates(ix: OwnerIndex) -> list[tuple[MemCube, float]]:
            bridged = bridge_scores(domains, ix.profiles, ix.cubes, min_score)
            return rank(candidates, min_score, bridged, query, len(ix.cubes), when, trace)

        return await self._lexical.read(index, ranked_candidates)

    async def _dense_candidates(self, user: str, index: OwnerIndex, embedding: np.ndarray) -> list[str] | None:
        """A large owner's nearest memories by the store's index (memory/candidates.py); None: scan all."""
        nearest = getattr(self.store, "nearest_ids", None)
        if not self._local or nearest is None or len(index) < ANN_MIN_MEMORIES:
            return None
        try:
            ids: list[str] = await nearest(user, embedding, DENSE_CANDIDATES)
        except StoreUnavailable as exc:  # the rows are in process: scan them all instead
            log.warning("nearest-neighbour query failed for %s (%s); scanning every memory", user, exc)
            return None
        return ids

    async def _profile_standing(self, user: str, index: OwnerIndex) -> None:
        """Profile the owner's standing facts stored without one (rows written
        before profiles were stored), once, on the bulk embedding lane: other
        owners' queries never wait for it. Shielded, so a recall that misses
        its deadline does not throw the work away."""
        task = self._backfills.get(user)
        if task is None:
            missing = await self._lexical.read(index, OwnerIndex.unprofiled)
            if not missing:
                return
            task = self._backfills.get(user)  # another recall may have started it meanwhile
            if task is None:
                task = asyncio.create_task(self._fill_profiles(user, missing), name=f"memproxy-profiles-{user}")
                self._backfills[user] = task
                task.add_done_callback(lambda _: self._backfills.pop(user, None))
        await asyncio.shield(task)

    async def _fill_profiles(self, user: str, cubes: list[MemCube]) -> None:
        for start in range(0, len(cubes), PROFILE_CHUNK):
            chunk = cubes[start : start + PROFILE_CHUNK]
            self._lexical.profiled(user, chunk, await self._bridge.profiles(chunk))

    async def active_memories(self, user: str) -> list[MemCube]:
        """Every active memory of ``user``: from the owner's in-process index for
        the embedded store (loading it if needed), else read from the store."""
        if not self._local:
            return await self.store.all_active(user)
        await self._fresh()
        index = await self._lexical.index(user)
        return await self._lexical.read(index, lambda ix: list(ix.cubes.values()))

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work over many memories on the recall pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def core(self, user: str) -> CoreSet:
        """``user``'s core memories: active, oldest first, packed into
        ``memory.core_token_budget`` (in order; one that does not fit is skipped),
        with the user's profile (:meth:`profile`); the version covers both."""
        core = await self._core_set(user)
        profile = await self.profile(user)
        if not profile.lines:
            return core
        version = hashlib.sha256(f"{core.version}\0{profile.version}".encode()).hexdigest()[:16]
        return CoreSet(core.items, version, core.tokens, profile.lines)

    async def profile(self, user: str) -> Profile:
        """What ``user`` said about themselves, newest per topic, within
        ``memory.profile_token_budget`` (memory/profile.py); rebuilt only when a
        disclosure changed, so it stays byte-identical in between."""
        if is_pack_owner(user):
            return EMPTY_PROFILE
        index = await self._lexical.index(user)
        return await self._lexical.read(index, self._current_profile)

    def _current_profile(self, ix: OwnerIndex) -> Profile:
        """The profile of the owner's index, rebuilt only when a disclosure changed."""
        budget = self.settings.profile_token_budget
        memo = ix.profile_memo
        if memo is not None and memo[0] == ix.disclosed_version and memo[1] == budget:
            return memo[2]  # type: ignore[return-value]
        found = (d for ds in ix.disclosed.values() for d in ds)
        profile = build_profile(found, budget, self.counter.count)
        ix.profile_memo = (ix.disclosed_version, budget, profile)
        return profile

    async def _core_set(self, user: str) -> CoreSet:
        """``user``'s core set without the profile."""
        await self._fresh()
        cached = self._core.get(user)
        if cached is not None:
            return cached
        if self.coherence is not None:
            self.coherence.track(user)
        cubes: list[MemCube] = []
        after: str | None = None
        while True:
            page, more = await self.store.list(user, CORE_PAGE, after, Tier.CORE.value)
            cubes.extend(c for c in page if c.state == State.ACTIVE.value)
            if not more or not page:
                break
            after = page[-1].id
        core = await self.offload(self._pack_core, cubes)
        self._core[user] = core
        return core

    def _pack_core(self, cubes: list[MemCube]) -> CoreSet:
        cubes = sorted(cubes, key=lambda c: c.id)
        budget = self.settings.core_token_budget
        kept: list[MemCube] = []
        used = 0
        for cube in cubes:
            tokens = cube.tokens if cube.tokens > 0 else self.counter.count(render_item(cube))
            if used + tokens > budget:
                continue
            kept.append(cube)
            used += tokens
        return CoreSet(kept, core_version(kept), used)

    def invalidate_core(self, user: str) -> None:
        self._core.pop(user, None)

    async def list(
        self, user: str, *, limit: int = 20, after: str | None = None, tier: str | None = None
    ) -> Page:
        if limit < 1:
            raise InvalidMemory("limit must be at least 1.", param="limit")
        if tier is not None:
            _choice(tier, TIERS, "tier")
        items, has_more = await self.store.list(user, limit, after, tier)
        return Page(items=items, has_more=has_more)

    async def get(self, memory_id: str) -> MemCube:
        cube = await self.store.get(memory_id)
        if cube is None:
            raise MemoryNotFound(memory_id)
        return cube

    # -- portable memory (memory/archive.py, memory/importers/, memory/packs.py) ----

    async def fetch(self, user: str, ids: Sequence[str], *, vectors: bool = False) -> dict[str, tuple[MemCube, Any]]:
        """Stored memories of ``user`` among ``ids`` (any state), with their vectors when asked."""
        return await self.store.fetch(user, ids, vectors=vectors)  # type: ignore[attr-defined]

    async def put(self, cubes: Sequence[MemCube], embeddings: Any = None) -> int:
        """Store ``cubes`` exactly as given (new or replacing the same ids), with
        ``embeddings`` when they are known, else embedded here; returns how many
        were embedded. The batch path of imports and pack installs."""
        if not cubes:
            return 0
        embedded = 0
        if embeddings is None:
            embeddings = await self.embedder.embed_memories([c.content for c in cubes])
            embedded = len(cubes)
        await self.store.upsert(cubes, embeddings)  # type: ignore[attr-defined]
        for user in {c.owner.user for c in cubes}:
            self.invalidate_core(user)
        for cube in cubes:
            if cube.state != State.ACTIVE.value:
                self._lexical.remove(cube.owner.user, cube.id)
        self._lexical.upsert(cubes, embeddings)
        return embedded

    # -- changing ---------------------------------------------------------------

    def _patched(self, cube: MemCube, patch: MemoryPatch) -> MemCube:
        changes: dict[str, Any] = {}
        if patch.content is not None:
            changes["content"] = self._safe_content(patch.content)
        if patch.metadata is not None:
            changes["metadata"] = self._safe_metadata(patch.metadata)
        if patch.event_time is not None:
            changes["event_time"] = _event_time(patch.event_time)
        if patch.kind is not None:
            changes["kind"] = _kind(patch.kind)
        if patch.tier is not None:
            changes["tier"] = _choice(patch.tier, TIERS, "tier")
        if patch.state is not None:
            changes["state"] = _choice(patch.state, STATES, "state")
        if changes.get("content", cube.content) != cube.content:
            changes.update(standing=None, domains=())  # stamped again on update
        updated = cube.evolve(**changes, version=cube.version + 1, updated_at=utcnow())
        return self._token_count(stamp_dates(updated))

    async def update(self, memory_id: str, patch: MemoryPatch) -> MemCube:
        cube = await self.get(memory_id)
        updated = self._patched(cube, patch)
        if updated.standing is None:
            updated = (await self._bridge.stamp([updated]))[0]
        embedding = None
        if updated.content != cube.content:
            embedding = (await self.embedder.embed_memories([updated.content]))[0]
        await self.store.update(updated, embedding)
        if Tier.CORE.value in (cube.tier, updated.tier):
            self.invalidate_core(cube.owner.user)
        self._lexical.upsert([updated], None if embedding is None else [embedding])
        return updated

    async def delete(self, memory_id: str) -> None:
        """Delete one memory, stored or still journaled; at once (no queue is awaited)."""
        pending = await self.journal.drop_id(memory_id)
        if pending is not None:
            self._voided.add(memory_id)  # a writer holding it undoes its write
        cube = await self.store.get(memory_id)
        if cube is not None and not await self.store.delete(memory_id):
            cube = None
        owner = cube or pending
        if owner is None:
            raise MemoryNotFound(memory_id)
        self._lexical.remove(owner.owner.user, memory_id)
        self.invalidate_core(owner.owner.user)

    async def forget(self, user: str) -> int:
        """Delete every memory of ``user`` (journaled turns included); how many there were."""
        return (await self.erase(user)).deleted

    async def erase(self, user: str) -> ForgetReceipt:
        """Forget ``user`` at once: the store, the journal, the writer's batch in flight,
        queued extractions, per-owner caches and indexes, and scheduler state.

        Never waits for any queued or running write: the user's journal items
        are deleted, and a write of theirs already in flight sees the user's
        generation change and undoes itself (see :meth:`_store_entries`).
        """
        self._generation[user] = self._generation.get(user, 0) + 1
        in_flight = sum(1 for e in self.writer.in_flight if e.cube.owner.user == user)
        journal_items, batches = await self.journal.drop_owner(user)
        stored = await self.store.delete_owner(user)
        queued = in_flight
        if self.extractor is not None:
            queued += self.extractor.discard(lambda cube: cube.owner.user == user)
        caches = drop_owner_caches(self, user)
        scheduler = self.scheduler.forget(user)
        return ForgetReceipt(
            user=user,
            store=stored,
            journal=journal_items,
            idempotency_keys=batches,
            queued=queued,
            caches=caches,
            scheduler=scheduler,
        )

    async def ping(self) -> None:
        await self.store.ping()

    # -- the background writer ----------------------------------------------

    async def remember(
        self,
        owner: Owner,
        user_text: str,
        assistant_text: str,
        provenance: Provenance,
        event_time: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        wait: bool = True,
    ) -> str:
        """Journal one chat turn durably (fsync'd when this returns) for the background writer.

        Returns ``ok``; ``degraded`` when the turn is journaled but will be
        late: the writer is failing, or the backlog stayed at
        ``memory.write_queue_size`` for ``memory.write_backpressure_ms``
        (backpressure: the caller waited that long, then the turn was journaled
        anyway, never dropped); ``skipped`` when there was nothing to write.
        ``wait`` False: the caller already waited for room (:meth:`admit`)
        and reports its outcome itself.
        Raises :class:`memory.journal.JournalError` when the journal cannot be written.
        """
        content = turn_content(user_text, assistant_text)
        if not content:
            return "skipped"
        item = NewMemory(
            content=clip_content(content, self.settings.limits.max_content_chars),
            kind=Kind.EPISODIC.value,
            event_time=event_time or utcnow(),
            metadata=dict(metadata or {}),
        )
        cube = self._build(owner, item, provenance)
        on_time = await self.admit() if wait else True
        await self.journal.append([Entry(cube, "turn")])
        self.writer.notify()
        return "ok" if on_time and not self.writer.failing else "degraded"

    async def admit(self) -> bool:
        """Wait while ``memory.write_queue_size`` turns wait for the writer (backpressure,
        :mod:`memory.admission`), at most ``memory.write_backpressure_ms``; False: no room came."""
        timeout = self.settings.write_backpressure_ms / 1000
        return await self.writer.room(self.settings.write_queue_size, timeout)

    def remember_turn(
        self,
        owner: Owner,
        user_text: str,
        assistant_text: str,
        provenance: Provenance,
        event_time: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> asyncio.Task[str]:
        """:meth:`remember` as a task (``flush`` waits for it); await it to know the turn is durable."""
        task = asyncio.get_running_loop().create_task(
            self.remember(owner, user_text, assistant_text, provenance, event_time, metadata)
        )
        self._remembering.add(task)
        task.add_done_callback(self._remembering.discard)
        return task

    def write_status(self) -> str | None:
        """Why new writes are late (the writer's last error), or None when they are on time."""
        return self.writer.last_error if self.writer.failing else None

    async def _store_entries(self, entries: Sequence[Entry]) -> builtins.list[Entry]:
        """Embed and store journaled entries by their fixed ids (a rewrite after a crash
        keeps one copy); skips entries forgotten meanwhile. Returns the entries stored."""
        if not entries:
            return []
        return await self._commit_entries(entries, await self._embed_entries(entries))

    async def _embed_entries(self, entries: Sequence[Entry]) -> np.ndarray:
        """The stored vectors of ``entries`` (the writer's first stage)."""
        return await self.embedder.embed_memories([e.cube.content for e in entries])

    async def _commit_entries(self, entries: Sequence[Entry], embeddings: np.ndarray) -> builtins.list[Entry]:
        """Store embedded entries (see :meth:`_store_entries`); the writer's second stage."""
        if not entries:
            return []
        generations = {e.cube.owner.user: self._generation.get(e.cube.owner.user, 0) for e in entries}
        # forget/delete remove journal items first: what is no longer journaled is void
        alive = await self.journal.existing([e.cube.id for e in entries])
        keep = [i for i, e in enumerate(entries) if e.cube.id in alive and e.cube.id not in self._voided]
        if keep:
            await self._store_new([entries[i].cube for i in keep], embeddings[keep])
            # a forget or delete that ran meanwhile did not see these yet: undo them
            void = [
                entries[i].cube
                for i in keep
                if entries[i].cube.id in self._voided
                or self._generation.get(entries[i].cube.owner.user, 0) != generations[entries[i].cube.owner.user]
            ]
            if void:
                await self._unstore(void)
                voided = {c.id for c in void}
                keep = [i for i in keep if entries[i].cube.id not in voided]
        for e in entries:
            self._voided.discard(e.cube.id)
        return [entries[i] for i in keep]

    async def _unstore(self, cubes: Sequence[MemCube]) -> None:
        for cube in cubes:
            await self.store.delete(cube.id)
            self._lexical.remove(cube.owner.user, cube.id)
            self.invalidate_core(cube.owner.user)

    async def _write_entries(self, entries: builtins.list[Entry], embeddings: np.ndarray) -> builtins.list[Entry]:
        """The writer's sink: its second stage, after :meth:`_embed_entries`."""
        stored = await self._commit_entries(entries, embeddings)
        turns = [e.cube for e in stored if e.source == "turn"]
        if self.extractor is not None and turns:  # queued for its own worker: never holds up the writer
            self.extractor.submit(turns)
        return stored

    async def flush(self) -> None:
        """Wait until remembered turns are written (and, with an extractor, their facts extracted)."""
        if self._remembering:
            await asyncio.gather(*list(self._remembering), return_exceptions=True)
        await self.writer.flush()
        if self.extractor is not None:
            await self.extractor.flush()

    async def aclose(self) -> None:
        """Stop; journaled writes not yet stored stay journaled and are replayed at the next start."""
        await self.scheduler.aclose()
        if self.coherence is not None:
            await self.coherence.aclose()
        for task in list(self._background):
            task.cancel()
        if self.snapshots is not None:
            await self.snapshots.aclose()
        if self._remembering:
            await asyncio.gather(*list(self._remembering), return_exceptions=True)
        await self.writer.aclose()
        if self.extractor is not None:
            await self.extractor.aclose()
        await self.journal.aclose()
        for task in list(self._backfills.values()):
            task.cancel()
        await self.save_snapshots()  # owners changed since their snapshot: the next start loads them
        await self.store.aclose()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_embedder:
            self.embedder.close()


def _prime_slice(ix: OwnerIndex, stop: Callable[[], bool] = lambda: False) -> bool:
    """One slice of :meth:`PostingArrays.prime <memory.postings.PostingArrays.prime>`; True when done."""
    view = ix.view()
    done = view is None or view.postings.prime(ix.bm25, view, stop=stop)
    settle()  # what it built lives as long as the owner: out of full collections (memory/longlived.py)
    return done


def _prime_all(ix: OwnerIndex) -> None:
    while not _prime_slice(ix):
        pass


def _record(cube: MemCube) -> dict[str, Any]:
    """A memory as an idempotent answer keeps it (rebuilt with ``from_record``)."""
    return {"id": cube.id, "document": cube.content, "meta": to_metadata(cube)}
