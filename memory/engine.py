"""The memory engine: the one facade the HTTP layer talks to.

It validates input, builds MemCubes (ids, owner, provenance, token counts),
embeds in batches, writes to the store, keeps the per-owner lexical indexes
in step, runs hybrid recall, and owns the background turn writer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from memory.chroma_store import ChromaStore
from memory.cube import META_KEY, IdFactory, Kind, MemCube, Owner, Provenance, State, Tier, utcnow
from memory.embedder import Embedder
from memory.encoding import encode
from memory.errors import InvalidMemory, MemoryNotFound
from memory.extractor import FactExtractor
from memory.lexcache import LexicalCache, OwnerIndex
from memory.longlived import settle
from memory.recall import (
    DATES_KEY,
    Candidate,
    RecallResult,
    Recalled,
    candidate_count,
    pack,
    rank,
    rank_view,
)
from memory.render import render_item
from memory.standing import DOMAIN_FLOOR, DomainBridge, bridge_scores
from memory.scheduler import MemScheduler, RecallLog
from memory.store import MemoryStore
from memory.timeparse import QueryTime, query_time, resolve_relative
from memory.tokens import TokenCounter
from memory.writer import Turn, TurnWriter, turn_content

if TYPE_CHECKING:
    from memory.settings import MemorySettings

__all__ = ["CoreSet", "MemoryEngine", "MemoryPatch", "NewMemory", "Page", "RecallResult", "Recalled"]

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

    @property
    def texts(self) -> list[str]:
        return [render_item(c) for c in self.items]


EMPTY_CORE_VERSION = "0"
CORE_PAGE = 500
RECALL_THREADS = 4  # recall's CPU work (ranking, index fills) runs here, never on the event loop
PROFILE_CHUNK = 256  # standing facts profiled per embedding call in a backfill


def core_version(cubes: Sequence[MemCube]) -> str:
    """A short digest of a core set; the same set always gives the same version."""
    if not cubes:
        return EMPTY_CORE_VERSION
    h = hashlib.sha256()
    for cube in cubes:
        h.update(f"{cube.id}\0{cube.version}\0{render_item(cube)}\n".encode("utf-8"))
    return h.hexdigest()[:16]


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
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


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


class MemoryEngine:
    def __init__(
        self,
        settings: MemorySettings,
        store: MemoryStore,
        embedder: Embedder,
        *,
        owns_embedder: bool = False,
        counter: TokenCounter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.counter = counter or TokenCounter()
        self._owns_embedder = owns_embedder
        self._ids = IdFactory()
        self._pool = ThreadPoolExecutor(max_workers=RECALL_THREADS, thread_name_prefix="memproxy-recall")
        self._local = bool(getattr(store, "local", False))  # a shared server may be written by others
        self._lexical = LexicalCache(
            self._load_owner, self._pool, capacity=settings.index_cache_memories, keep_vectors=self._local
        )
        self._bridge = DomainBridge(embedder.embed_query, embedder.embed)
        self._backfills: dict[str, asyncio.Task[None]] = {}
        self.writer = TurnWriter(
            self._write_turns, maxsize=settings.write_queue_size, linger_s=settings.write_linger_ms / 1000
        )
        self._core: dict[str, CoreSet] = {}  # user -> cached core set (dropped on any change)
        self.recalls = RecallLog(settings.scheduler.window_requests)
        self.scheduler = MemScheduler(self, settings.scheduler)
        # optional LLM fact extraction after each stored turn; None (no LLM call ever) by default
        self.extractor: FactExtractor | None = (
            FactExtractor(settings.extractor, self, maxsize=settings.write_queue_size)
            if settings.extractor.model
            else None
        )

    @classmethod
    async def open(
        cls, settings: MemorySettings, data_dir: Path, *, embedder: Embedder | None = None
    ) -> MemoryEngine:
        """Build the engine; the store connects lazily, the embedder is warmed."""
        owns = embedder is None
        embedder = embedder or Embedder(settings.embedding_model)
        if settings.chroma_url:
            store: MemoryStore = ChromaStore.remote(settings.chroma_url)
        else:
            path = Path(settings.chroma_path) if settings.chroma_path else Path(data_dir) / "chroma"
            store = ChromaStore.embedded(path)
        engine = cls(settings, store, embedder, owns_embedder=owns)
        await embedder.warmup()
        settle()  # the models live as long as the process (memory/longlived.py)
        return engine

    # -- writing --------------------------------------------------------------

    def _token_count(self, cube: MemCube) -> MemCube:
        return cube.evolve(tokens=self.counter.count(render_item(cube)))

    def _build(self, owner: Owner, item: NewMemory, provenance: Provenance) -> MemCube:
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
            content=_content(item.content),
            kind=_kind(item.kind),
            tier=_choice(item.tier, TIERS, "tier"),
            event_time=_event_time(item.event_time),
            provenance=provenance,
            metadata=_metadata(item.metadata),
        )
        return self._token_count(stamp_dates(cube))

    async def _load_owner(self, user: str) -> tuple[list[MemCube], list[np.ndarray] | None]:
        """An owner's active memories for its index (with vectors from a local store)."""
        active_with_vectors = getattr(self.store, "active_with_vectors", None)
        if self._local and active_with_vectors is not None:
            cubes, vectors = await active_with_vectors(user)
            return cubes, vectors
        return await self.store.all_active(user), None

    async def _store_new(self, cubes: list[MemCube]) -> list[MemCube]:
        if not cubes:
            return []
        cubes = await self._bridge.stamp(cubes)
        embeddings = await encode(self.embedder.embed, [c.content for c in cubes])
        await self.store.add(cubes, embeddings)
        for user in {c.owner.user for c in cubes if c.tier == Tier.CORE.value}:
            self.invalidate_core(user)
        self._lexical.upsert(cubes, embeddings)
        return cubes

    async def add(
        self, owner: Owner, items: Sequence[NewMemory], *, provenance: Provenance | None = None
    ) -> list[MemCube]:
        if not owner.user:
            raise InvalidMemory("A memory needs a user.", param="user")
        cubes = [self._build(owner, item, provenance or Provenance()) for item in items]
        return await self._store_new(cubes)

    # -- reading --------------------------------------------------------------

    async def search(
        self,
        user: str,
        query: str,
        *,
        token_budget: int | None = None,
        limit: int | None = None,
        record: bool = True,
    ) -> RecallResult:
        budget = self.settings.token_budget if token_budget is None else token_budget
        max_items = self.settings.max_items if limit is None else limit
        if not query or not query.strip() or budget <= 0 or max_items <= 0:
            return RecallResult(items=[], tokens=0)
        embedding = (await self.embedder.embed_query([query]))[0]
        ranked = await self._ranked(user, query, embedding, candidate_count(max_items), query_time(query, now=utcnow()))
        if record:  # the scheduler's evidence (internal searches, e.g. the extractor's, are not)
            self.recalls.note(user, [c.id for c, _ in ranked[:max_items]])
        ranked = [(c, s) for c, s in ranked if c.tier != Tier.CORE.value]  # core is injected anyway
        return await self.offload(pack, ranked, budget, max_items, self.counter.count)

    async def _ranked(
        self, user: str, query: str, embedding: np.ndarray, k: int, when: QueryTime | None
    ) -> list[tuple[MemCube, float]]:
        """Hybrid recall of ``query`` over ``user``'s memories, ranked; the CPU
        work runs on the recall pool, so the event loop keeps serving and a
        caller's deadline bounds the wait."""
        index = await self._lexical.index(user)
        domains = await self._bridge.query_domains(embedding)
        if float(domains.max()) >= DOMAIN_FLOOR:
            await self._profile_standing(user, index)
        min_score = self.settings.min_score

        def everything(ix: OwnerIndex) -> list[tuple[MemCube, float]] | None:
            view = ix.view()
            if view is None:
                return None
            bridged = bridge_scores(domains, ix.profiles, ix.cubes, min_score)
            return rank_view(view, ix.bm25, query, embedding, min_score, bridged, len(ix.cubes), when)

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
            return rank(candidates, min_score, bridged, query, len(ix.cubes), when)

        return await self._lexical.read(index, ranked_candidates)

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
        index = await self._lexical.index(user)
        return await self._lexical.read(index, lambda ix: list(ix.cubes.values()))

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work over many memories on the recall pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def core(self, user: str) -> CoreSet:
        """``user``'s core memories: active, oldest first, packed into
        ``memory.core_token_budget`` (in order; one that does not fit is skipped)."""
        cached = self._core.get(user)
        if cached is not None:
            return cached
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

    # -- changing ---------------------------------------------------------------

    def _patched(self, cube: MemCube, patch: MemoryPatch) -> MemCube:
        changes: dict[str, Any] = {}
        if patch.content is not None:
            changes["content"] = _content(patch.content)
        if patch.metadata is not None:
            changes["metadata"] = _metadata(patch.metadata)
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
            embedding = (await encode(self.embedder.embed, [updated.content]))[0]
        await self.store.update(updated, embedding)
        if Tier.CORE.value in (cube.tier, updated.tier):
            self.invalidate_core(cube.owner.user)
        self._lexical.upsert([updated], None if embedding is None else [embedding])
        return updated

    async def delete(self, memory_id: str) -> None:
        cube = await self.get(memory_id)
        if not await self.store.delete(memory_id):
            raise MemoryNotFound(memory_id)
        self._lexical.remove(cube.owner.user, memory_id)
        self.invalidate_core(cube.owner.user)

    async def forget(self, user: str) -> int:
        """Delete every memory of ``user`` (turns already queued included)."""
        await self.flush()
        count = await self.store.delete_owner(user)
        self._lexical.drop(user)
        self.invalidate_core(user)
        return count

    async def ping(self) -> None:
        await self.store.ping()

    # -- the background writer ----------------------------------------------

    def remember_turn(
        self,
        owner: Owner,
        user_text: str,
        assistant_text: str,
        provenance: Provenance,
        event_time: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Queue one chat turn for storage; never blocks, never raises on a full queue."""
        content = turn_content(user_text, assistant_text)
        if not content:
            return
        self.writer.submit(Turn(owner, content, provenance, event_time or utcnow(), metadata))

    async def _write_turns(self, turns: list[Turn]) -> None:
        cubes = [
            self._build(
                t.owner,
                NewMemory(content=t.content, kind=Kind.EPISODIC.value, event_time=t.event_time, metadata=dict(t.metadata or {})),
                t.provenance,
            )
            for t in turns
        ]
        stored = await self._store_new(cubes)
        if self.extractor is not None:  # queued for its own worker: never holds up the writer
            self.extractor.submit(stored)

    async def flush(self) -> None:
        """Wait until queued turns are written (and, with an extractor, their facts extracted)."""
        await self.writer.flush()
        if self.extractor is not None:
            await self.extractor.flush()

    async def aclose(self) -> None:
        await self.scheduler.aclose()
        await self.writer.aclose()
        if self.extractor is not None:
            await self.extractor.aclose()
        for task in list(self._backfills.values()):
            task.cancel()
        await self.store.aclose()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_embedder:
            self.embedder.close()
