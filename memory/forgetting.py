"""Forgetting a user: the receipt, and the per-owner caches it clears.

:meth:`memory.engine.MemoryEngine.erase` removes a user's memories from the
store and the journal, their share of the writer's batch in flight and of the
extractor's queue, and the scheduler's evidence; this module clears what the
engine caches per owner (the lexical index, the core set, the domain bridge's
profiles, the index snapshot on disk) and says what was removed where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memory.engine import MemoryEngine


@dataclass(frozen=True, slots=True)
class ForgetReceipt:
    user: str
    store: int = 0  # memories deleted from the store
    journal: int = 0  # journaled writes not yet stored, deleted
    idempotency_keys: int = 0  # POST /v1/memories answers kept for retries, deleted
    queued: int = 0  # in-RAM work dropped (the writer's batch in flight, queued fact extractions)
    caches: list[str] = field(default_factory=list)  # per-owner caches cleared
    scheduler: bool = False  # the scheduler held evidence or decisions for the user
    kv_files: int = 0  # activation (KV) cache entries removed by the upstream

    @property
    def deleted(self) -> int:
        """Memories that existed: stored, or journaled and not yet stored."""
        return self.store + self.journal

    def removed(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "journal": self.journal,
            "idempotency_keys": self.idempotency_keys,
            "queued": self.queued,
            "caches": list(self.caches),
            "kv_files": self.kv_files,
            "scheduler": self.scheduler,
        }


def drop_owner_caches(engine: MemoryEngine, user: str) -> list[str]:
    """Clear ``user``'s entries from the engine's per-owner caches; the names of those cleared."""
    cleared: list[str] = []
    lexical = engine._lexical
    lexical.drop(user)  # the owner's index: cubes, BM25, vectors and standing-fact profiles
    cleared.append("lexical")
    if user in engine._core:
        cleared.append("core")
    engine.invalidate_core(user)
    if engine.snapshots is not None and engine.snapshots.discard(user):
        cleared.append("snapshot")  # the owner's index snapshot on disk (memory/snapshot.py)
    return cleared
