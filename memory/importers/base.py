"""What every importer produces, and how it is written (all or nothing, idempotent).

An importer parses a whole file into :class:`ImportedItem` s first; a file that
does not parse raises :class:`~memory.archive.ArchiveError` before anything
is written. Each item has a stable ``key`` in its source (a ChatGPT message
id, a mem0 memory id, a block label, a fact's text), and its memory id is
derived from (user, source, key, event time), so importing the same file
again finds every memory already there and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory.archive import ArchiveError, ImportReport
from memory.cube import MemCube, Owner, Provenance, owner_key, parse_time
from memory.pack_owner import is_pack_owner
from memory.render import render_item

if TYPE_CHECKING:
    from memory.engine import MemoryEngine

BATCH = 256
SOURCE_KEY = "imported_from"  # metadata key naming where an imported memory came from


@dataclass(frozen=True, slots=True)
class ImportedItem:
    key: str
    content: str
    kind: str = "fact"
    tier: str = "recall"
    state: str = "active"
    event_time: datetime | None = None
    session: str | None = None
    agent: str | None = None
    roles: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ArchiveError(f"{Path(path).name}: not readable JSON ({exc})") from exc


def epoch_time(value: Any) -> datetime | None:
    """A Unix time (ChatGPT's ``create_time``) or an RFC 3339 string, as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ArchiveError(f"not a timestamp: {value!r}") from exc
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError as exc:
            raise ArchiveError(f"not a timestamp: {value!r}") from exc
    raise ArchiveError(f"not a timestamp: {value!r}")


def memory_id(user: str, source: str, key: str, event_time: datetime | None) -> str:
    ms = max(0, int(event_time.timestamp() * 1000)) if event_time is not None else 0
    digest = hashlib.sha256(f"{source}\0{key}".encode()).hexdigest()[:12]
    return f"mem_{owner_key(user)}_{ms:012x}{digest}"


def build_cubes(engine: MemoryEngine, user: str, source: str, items: Sequence[ImportedItem]) -> list[MemCube]:
    from memory.engine import stamp_dates  # the engine's own write-time annotations

    now = datetime.now(UTC)
    cubes: dict[str, MemCube] = {}
    for item in items:
        if not item.content.strip():
            continue
        cube = MemCube(
            id=memory_id(user, source, item.key, item.event_time),
            owner=Owner(user=user, session=item.session, agent=item.agent),
            content=item.content.strip(),
            kind=item.kind,
            tier=item.tier,
            state=item.state,
            event_time=item.event_time,
            created_at=now,
            provenance=Provenance(model=None, roles=item.roles or ("import",)),
            metadata=item.metadata,
        )
        cube = stamp_dates(cube)
        cubes.setdefault(cube.id, cube.evolve(tokens=engine.counter.count(render_item(cube))))
    return list(cubes.values())


async def import_items(
    engine: MemoryEngine,
    user: str,
    source: str,
    items: Sequence[ImportedItem],
    *,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Write parsed items as ``user``'s memories through the batch path; existing ids are skipped."""
    if not user or is_pack_owner(user):
        raise ArchiveError(f"cannot import into {user!r}")
    started = time.perf_counter()
    cubes = build_cubes(engine, user, source, items)
    report = ImportReport(user=user)
    for start in range(0, len(cubes), BATCH):
        batch = cubes[start : start + BATCH]
        stored = await engine.fetch(user, [c.id for c in batch])
        new = [c for c in batch if c.id not in stored]
        report.embedded += await engine.put(new)
        report.added += len(new)
        report.skipped += len(batch) - len(new)
        report.total += len(batch)
        if progress is not None:
            progress(len(batch))
    report.seconds = time.perf_counter() - started
    return report
