"""MemCube <-> flat store record (document + scalar-only metadata).

Vector stores accept only scalar metadata values, so provenance and the free
user metadata travel as JSON strings (which round-trip nested values, unicode
and numbers exactly). Times are stored twice: as an RFC 3339 string, which is
what is read back, and as a float epoch that filters can compare. ``None``
values are left out (stores reject them). What is derived from the memory
at write time (``standing``, ``domains``) is stored next to it, so a restart
does not recompute it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from memory.cube import MemCube, Owner, Provenance, isoformat, parse_time, utcnow

Scalar = str | int | float | bool


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def to_metadata(cube: MemCube) -> dict[str, Scalar]:
    fields: dict[str, Scalar | None] = {
        "user": cube.owner.user,
        "session": cube.owner.session,
        "agent": cube.owner.agent,
        "kind": cube.kind,
        "tier": cube.tier,
        "state": cube.state,
        "version": cube.version,
        "event_time": isoformat(cube.event_time),
        "event_ts": _epoch(cube.event_time),
        "created_at": isoformat(cube.created_at),
        "created_ts": _epoch(cube.created_at),
        "updated_at": isoformat(cube.updated_at),
        "provenance": _json(cube.provenance.to_dict()),
        "metadata": _json(cube.metadata),
        "tokens": cube.tokens,
        "standing": cube.standing,
        "domains": _json(list(cube.domains)) if cube.domains else None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def _opt_str(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    return str(value) if value is not None else None


def from_record(memory_id: str, document: str, meta: dict[str, Any]) -> MemCube:
    created = parse_time(_opt_str(meta, "created_at"))
    return MemCube(
        id=memory_id,
        owner=Owner(user=str(meta["user"]), session=_opt_str(meta, "session"), agent=_opt_str(meta, "agent")),
        content=document,
        kind=str(meta.get("kind", "episodic")),
        tier=str(meta.get("tier", "recall")),
        state=str(meta.get("state", "active")),
        version=int(meta.get("version", 1)),
        event_time=parse_time(_opt_str(meta, "event_time")),
        created_at=created if created is not None else utcnow(),
        updated_at=parse_time(_opt_str(meta, "updated_at")),
        provenance=Provenance.from_dict(json.loads(str(meta.get("provenance", "{}")))),
        metadata=json.loads(str(meta.get("metadata", "{}"))),
        tokens=int(meta.get("tokens", 0)),
        standing=bool(meta["standing"]) if meta.get("standing") is not None else None,
        domains=tuple(float(x) for x in json.loads(str(meta["domains"]))) if meta.get("domains") else (),
    )
