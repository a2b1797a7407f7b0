"""The MemCube: the unit of memory.

A MemCube is one piece of remembered content with everything needed to
rank it, show it, audit it and move it: who owns it, what kind of memory it
is, which tier it lives in, where it came from, when it happened and when it
was stored, free user metadata, and a version/lifecycle state.

The model is deliberately open for later tiers (``core``), activation state
(KV caches are keyed by owner and core version, not stored in the cube) and
export: every field serialises to plain JSON through :meth:`MemCube.to_dict`.
"""

from __future__ import annotations

import enum
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

# the metadata key memproxy keeps its own annotations under (resolved dates,
# scheduler promotion); everything else in ``metadata`` is the user's
META_KEY = "_memproxy"


class Kind(str, enum.Enum):
    """What a memory is. Free strings are accepted too; these are the built-ins."""

    EPISODIC = "episodic"  # one conversation turn
    FACT = "fact"  # a distilled statement about the owner or the world
    PREFERENCE = "preference"
    NOTE = "note"


class Tier(str, enum.Enum):
    """Where a memory lives in the memory hierarchy."""

    RECALL = "recall"  # retrieved per request by relevance
    CORE = "core"  # injected on every request (activation-memory issue)


class State(str, enum.Enum):
    """Lifecycle state. Only ``active`` memories are recalled."""

    ACTIVE = "active"
    SUPERSEDED = "superseded"
    ARCHIVED = "archived"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a memory belongs to. ``user`` is the isolation boundary."""

    user: str
    session: str | None = None
    agent: str | None = None

    @property
    def key(self) -> str:
        """A short, stable, storage-safe key for the user (not reversible)."""
        return owner_key(self.user)


TENANT_SEPARATOR = "/"


def tenant_owner(tenant: str, user: str) -> str:
    """The stored owner name of ``user`` in ``tenant``'s namespace (service keys' end users)."""
    return f"{tenant}{TENANT_SEPARATOR}{user}"


def tenant_of(owner: str) -> str | None:
    """The tenant a stored owner name belongs to (``acme/alice`` -> ``acme``), None for a bare name."""
    head, separator, _ = owner.partition(TENANT_SEPARATOR)
    return head if separator and head else None


def owner_key(user: str) -> str:
    return hashlib.sha256(user.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a memory came from."""

    request_id: str | None = None
    model: str | None = None
    roles: tuple[str, ...] = ()
    source_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "model": self.model,
            "roles": list(self.roles),
            "source_ids": list(self.source_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Provenance:
        data = data or {}
        return cls(
            request_id=data.get("request_id"),
            model=data.get("model"),
            roles=tuple(data.get("roles") or ()),
            source_ids=tuple(data.get("source_ids") or ()),
        )


@dataclass(frozen=True, slots=True)
class MemCube:
    id: str
    owner: Owner
    content: str
    kind: str = Kind.EPISODIC.value
    tier: str = Tier.RECALL.value
    state: str = State.ACTIVE.value
    version: int = 1
    event_time: datetime | None = None
    created_at: datetime = field(default_factory=lambda: utcnow())
    updated_at: datetime | None = None
    provenance: Provenance = field(default_factory=Provenance)
    metadata: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0
    # derived at write time and stored with the memory (not part of its API
    # shape): whether it states a standing fact (None: written before this was
    # stored, computed on read) and that fact's domain profile (see
    # memory/standing.py; empty: not computed)
    standing: bool | None = None
    domains: tuple[float, ...] = ()

    def evolve(self, **changes: Any) -> MemCube:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "memory",
            "user": self.owner.user,
            "session": self.owner.session,
            "agent": self.owner.agent,
            "content": self.content,
            "kind": self.kind,
            "tier": self.tier,
            "state": self.state,
            "version": self.version,
            "event_time": isoformat(self.event_time),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "provenance": self.provenance.to_dict(),
            "metadata": self.metadata,
            "tokens": self.tokens,
        }


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp; naive times are taken as UTC."""
    if value is None or value == "":
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class IdFactory:
    """Time-ordered memory ids that also name the owner's partition.

    ``mem_<ownerkey>_<12 hex ms><6 hex counter><6 hex random>``: sorting ids
    sorts by creation time, and the owner key lets the store find a memory's
    partition from its id alone.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def new(self, owner: Owner) -> str:
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                self._counter += 1
                now_ms = self._last_ms
            else:
                self._counter = 0
            self._last_ms = now_ms
            counter = self._counter
        return f"mem_{owner.key}_{now_ms:012x}{counter:06x}{os.urandom(3).hex()}"


def owner_key_of_id(memory_id: str) -> str | None:
    """The owner key embedded in a memory id, or None for a malformed id."""
    parts = memory_id.split("_")
    if len(parts) != 3 or parts[0] != "mem" or len(parts[1]) != 16:
        return None
    return parts[1]
