"""Installed memory packs in recall: their best memories compete with the
user's own for the same token budget.

The engine's ``search`` calls :func:`with_pack_hits` with the user's ranked
candidates; each pack installed for the user (globally, for their tenant or
for them) is searched as its own owner, with the same floor and ranking,
and the hits are merged by score before packing. Pack memories render with
their source (``[pack: name@version]``, :mod:`memory.render`) and are never
recorded as the user's recalls, so the scheduler never promotes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from memory.cube import MemCube

if TYPE_CHECKING:
    from memory.engine import MemoryEngine


class PackSource(Protocol):
    def owners_for(self, user: str) -> list[str]:
        """The pack owners whose memories ``user`` recalls (none for a pack owner)."""
        ...


async def with_pack_hits(
    engine: MemoryEngine,
    packs: PackSource,
    user: str,
    query: str,
    ranked: Sequence[tuple[MemCube, float]],
    budget: int,
    max_items: int,
    now: datetime | None,
) -> list[tuple[MemCube, float]]:
    owners = packs.owners_for(user)
    if not owners:
        return list(ranked)
    merged = list(ranked)
    for owner in owners:
        found = await engine.search(owner, query, token_budget=budget, limit=max_items, record=False, now=now)
        merged.extend((item.cube, item.score) for item in found.items)
    merged.sort(key=lambda pair: pair[1], reverse=True)
    return merged
