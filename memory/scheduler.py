"""The MemScheduler: moves memories between tiers in the background.

Evidence: every recall notes which memories ranked for the request
(:class:`RecallLog`; core memories count too — they rank even though they
are injected anyway — so "still useful" is measurable for them).

Policy (``memory.scheduler`` in the config), per owner seen since start:

* **promote** a ``recall``-tier memory into ``core`` when it ranked in at
  least ``promote_min_recalls`` of the owner's last ``window_requests``
  recalls, if it fits the core cap (``memory.core_token_budget``) next to
  the current core set; most-recalled first.
* **demote** a memory the scheduler promoted (it carries
  ``metadata._memproxy.promoted_at``) back to ``recall`` when it has not
  ranked for ``demote_idle_s``. Memories pinned to core by a user are never
  demoted.
* **expire**: a memory whose ``metadata.expires_at`` has passed, or an
  episodic turn older than ``episodic_ttl_s`` (0 = never), is archived.

Every change goes through the engine, so the owner's core version changes at
once (and stale KV caches are never used). Where several processes share a
Chroma server, only the holder of the scheduler lease (memory/lease.py)
makes decisions; the others stand by and take over if it dies. Decisions are logged and kept
per owner (:meth:`MemScheduler.decisions`, shown by
``GET /v1/memories?user=...&tier=core``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from memory.cube import META_KEY, Kind, MemCube, State, Tier, isoformat, parse_time, utcnow
from memory.lease import ControlStore, Lease, LocalLease

if TYPE_CHECKING:
    from memory.engine import MemoryEngine
    from memory.settings import SchedulerSettings

log = logging.getLogger("memproxy.scheduler")

DECISIONS_KEPT = 100
EVIDENCE_PREFIX = "evidence:"
MAX_SHARED_USERS = 500  # most recently active owners a process shares evidence of ...
MAX_SHARED_IDS = 64  # ... and, per owner, its most recalled (and most recently seen) memories
EVIDENCE_FRESH_INTERVALS = 3  # another process's evidence counts while published this many intervals ago at most


class RecallLog:
    """Per owner: a request counter and, per memory, the request numbers and
    time of its recent recalls. In memory only (evidence restarts with the process)."""

    def __init__(self, window: int = 64) -> None:
        self.window = window
        self.requests: dict[str, int] = {}
        self.hits: dict[str, dict[str, deque[int]]] = {}
        self.last_seen: dict[str, dict[str, float]] = {}

    def note(self, user: str, ids: list[str], now: float | None = None) -> None:
        n = self.requests.get(user, 0) + 1
        self.requests[user] = n
        hits = self.hits.setdefault(user, {})
        seen = self.last_seen.setdefault(user, {})
        stamp = time.time() if now is None else now
        for memory_id in ids:
            hits.setdefault(memory_id, deque(maxlen=self.window)).append(n)
            seen[memory_id] = stamp

    def users(self) -> list[str]:
        return list(self.requests)

    def forget(self, user: str) -> bool:
        """Drop ``user``'s evidence; whether there was any."""
        had = user in self.requests or user in self.hits or user in self.last_seen
        for table in (self.requests, self.hits, self.last_seen):
            table.pop(user, None)
        return had

    def recent(self, user: str, window: int) -> dict[str, int]:
        """How many of ``user``'s last ``window`` recalls each memory ranked in."""
        n = self.requests.get(user, 0)
        return {
            memory_id: sum(1 for r in reqs if r > n - window)
            for memory_id, reqs in self.hits.get(user, {}).items()
        }


@dataclass(slots=True)
class Evidence:
    """What a pass decides on, per owner: recalls of each memory in the window, and when it last ranked."""

    counts: dict[str, dict[str, int]]
    seen: dict[str, dict[str, float]]

    @classmethod
    def of(cls, log: RecallLog, window: int, users: list[str] | None = None) -> Evidence:
        users = log.users() if users is None else users
        return cls(
            {u: {m: n for m, n in log.recent(u, window).items() if n} for u in users},
            {u: dict(log.last_seen.get(u, {})) for u in users},
        )

    def add(self, other: Evidence) -> None:
        """Another process's evidence: recall counts add up, the latest sighting wins."""
        for user, counts in other.counts.items():
            mine = self.counts.setdefault(user, {})
            for memory_id, n in counts.items():
                mine[memory_id] = mine.get(memory_id, 0) + n
        for user, seen in other.seen.items():
            mine_seen = self.seen.setdefault(user, {})
            for memory_id, at in seen.items():
                mine_seen[memory_id] = max(at, mine_seen.get(memory_id, 0.0))

    def users(self) -> list[str]:
        return sorted(set(self.counts) | set(self.seen))

    def trimmed(self, per_user: int) -> Evidence:
        """At most ``per_user`` memories per owner by count, and as many by last sighting."""
        counts = {u: dict(sorted(c.items(), key=lambda kv: -kv[1])[:per_user]) for u, c in self.counts.items()}
        seen = {u: dict(sorted(s.items(), key=lambda kv: -kv[1])[:per_user]) for u, s in self.seen.items()}
        return Evidence(counts, seen)

    def dump(self, at: float) -> str:
        return json.dumps({"at": at, "counts": self.counts, "seen": self.seen})

    @classmethod
    def parse(cls, document: str) -> tuple[float, Evidence] | None:
        """(when it was published, the evidence), or None for a record that does not parse."""
        try:
            data = json.loads(document)
            return float(data["at"]), cls(dict(data["counts"]), dict(data["seen"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # promote | demote | expire
    memory_id: str
    user: str
    reason: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MemScheduler:
    def __init__(self, engine: MemoryEngine, settings: SchedulerSettings, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self._decisions: dict[str, deque[Decision]] = {}
        self.actions: Counter[str] = Counter()  # decisions made since start, by action (metrics)
        self._task: asyncio.Task[None] | None = None
        self.lease: Lease = LocalLease()  # a StoreLease where processes share a Chroma server (engine.open)
        # where processes share a store, each publishes its recall evidence there and the holder decides on all of it
        self.shared: ControlStore | None = None
        self.passes = 0  # passes this process made (it held the lease)
        self.standby = 0  # ticks another process held the lease

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self.settings.enabled and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="memproxy-scheduler")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.tick()
            except Exception:  # the scheduler must never take the proxy down
                log.exception("scheduler pass failed")

    async def tick(self) -> list[Decision] | None:
        """One interval: a pass if this process holds the lease (its decisions), else None."""
        await self._publish()
        if not await self.lease.acquire():
            self.standby += 1
            return None
        made = await self.run_once(await self._gather())
        self.passes += 1
        await self.lease.note_pass()
        log.debug("scheduler pass %d by %s: %d decision(s)", self.passes, self.lease.holder, len(made))
        return made

    # ----------------------------------------------------------------- policy

    def decisions(self, user: str) -> list[Decision]:
        return list(self._decisions.get(user, ()))

    def forget(self, user: str) -> bool:
        """Drop ``user``'s recall evidence and decisions; whether there were any."""
        had_log = self.engine.recalls.forget(user)
        return self._decisions.pop(user, None) is not None or had_log

    def _local(self, users: list[str] | None = None) -> Evidence:
        return Evidence.of(self.engine.recalls, self.settings.window_requests, users)

    async def _publish(self) -> None:
        """Share this process's evidence (its most recently active owners) for whoever holds the lease."""
        if self.shared is None:
            return
        seen = self.engine.recalls.last_seen
        users = sorted(seen, key=lambda u: max(seen[u].values(), default=0.0), reverse=True)[:MAX_SHARED_USERS]
        record = self._local(users).trimmed(MAX_SHARED_IDS).dump(self.clock())
        await self.shared.control_put(f"{EVIDENCE_PREFIX}{self.lease.holder}", record)

    async def _gather(self) -> Evidence:
        """This process's evidence plus every other live process's (published in the last few
        intervals; the records of processes gone for longer are deleted)."""
        evidence = self._local()
        if self.shared is None:
            return evidence
        mine = f"{EVIDENCE_PREFIX}{self.lease.holder}"
        fresh_s = EVIDENCE_FRESH_INTERVALS * max(self.settings.interval_s, 1.0)
        now = self.clock()
        gone: list[str] = []
        for record_id, document in (await self.shared.control_get(prefix=EVIDENCE_PREFIX)).items():
            parsed = Evidence.parse(document) if record_id != mine else None
            if parsed is None:
                continue
            at, other = parsed
            if now - at <= fresh_s:
                evidence.add(other)
            elif now - at > 10 * fresh_s:
                gone.append(record_id)
        if gone:
            await self.shared.control_delete(gone)
        return evidence

    async def run_once(self, evidence: Evidence | None = None) -> list[Decision]:
        evidence = evidence or self._local()
        made: list[Decision] = []
        for user in evidence.users():
            if not self.lease.valid():  # fenced: the lease ran out mid-pass; the next holder goes on
                break
            made.extend(await self.run_user(user, evidence))
        return made

    async def run_user(self, user: str, evidence: Evidence | None = None) -> list[Decision]:
        from memory.engine import MemoryPatch

        evidence = evidence or self._local([user])
        now = self.clock()
        made: list[Decision] = []
        cubes = await self.engine.active_memories(user)
        expired, by_id, promoted = await self.engine.offload(self._triage, cubes, now)
        for cube, reason in expired:
            await self.engine.update(cube.id, MemoryPatch(state=State.ARCHIVED.value))
            made.append(self._decide("expire", cube, reason))
        seen = evidence.seen.get(user, {})
        for cube in promoted:
            last = seen.get(cube.id)
            promoted_at = parse_time(cube.metadata[META_KEY]["promoted_at"])
            idle_since = max(last or 0.0, promoted_at.timestamp() if promoted_at else 0.0)
            if now - idle_since >= self.settings.demote_idle_s:
                metadata = _without_promotion(cube.metadata)
                await self.engine.update(cube.id, MemoryPatch(tier=Tier.RECALL.value, metadata=metadata))
                made.append(self._decide("demote", cube, f"not recalled for {self.settings.demote_idle_s:.0f}s"))
        core = await self.engine.core(user)
        used = core.tokens
        counts = evidence.counts.get(user, {})
        ranked = sorted(
            (c for c in counts.items() if c[1] >= self.settings.promote_min_recalls and c[0] in by_id),
            key=lambda c: (-c[1], c[0]),
        )
        for memory_id, hits in ranked:
            cube = by_id[memory_id]
            if cube.tier == Tier.CORE.value or now - seen.get(memory_id, 0.0) >= self.settings.demote_idle_s:
                continue  # already core, or its recalls are too old (it would be demoted at once)
            if used + cube.tokens > self.engine.settings.core_token_budget:
                continue
            system = cube.metadata.get(META_KEY)
            system = {**(system if isinstance(system, dict) else {}), "promoted_at": isoformat(utcnow()), "recalls": hits}
            metadata = {**cube.metadata, META_KEY: system}
            await self.engine.update(cube.id, MemoryPatch(tier=Tier.CORE.value, metadata=metadata))
            used += cube.tokens
            made.append(
                self._decide("promote", cube, f"recalled in {hits} of the last {self.settings.window_requests} requests")
            )
        return made

    def _triage(
        self, cubes: list[MemCube], now: float
    ) -> tuple[list[tuple[MemCube, str]], dict[str, MemCube], list[MemCube]]:
        """Split an owner's memories (off the event loop: there may be many):
        the expired with their reason, the live by id, and the live ones the
        scheduler promoted to core."""
        expired: list[tuple[MemCube, str]] = []
        live: list[MemCube] = []
        for cube in cubes:
            reason = self._expired(cube, now)
            if reason:
                expired.append((cube, reason))
            else:
                live.append(cube)
        promoted = [
            cube
            for cube in live
            if cube.tier == Tier.CORE.value
            and isinstance(cube.metadata.get(META_KEY), dict)
            and cube.metadata[META_KEY].get("promoted_at")
        ]
        return expired, {c.id: c for c in live}, promoted

    def _expired(self, cube: MemCube, now: float) -> str | None:
        expires = cube.metadata.get("expires_at")
        if isinstance(expires, str):
            try:
                at = parse_time(expires)
            except ValueError:
                at = None
            if at is not None and at.timestamp() <= now:
                return f"expires_at {expires} passed"
        ttl = self.settings.episodic_ttl_s
        if ttl > 0 and cube.kind == Kind.EPISODIC.value and cube.tier != Tier.CORE.value:
            if now - cube.created_at.timestamp() >= ttl:
                return f"episodic turn older than {ttl:.0f}s"
        return None

    def _decide(self, action: str, cube: MemCube, reason: str) -> Decision:
        decision = Decision(action, cube.id, cube.owner.user, reason, isoformat(utcnow()) or "")
        self.actions[action] += 1
        log.info("scheduler %s %s (%s): %s", action, cube.id, cube.owner.user, reason)
        self._decisions.setdefault(cube.owner.user, deque(maxlen=DECISIONS_KEPT)).append(decision)
        return decision


def _without_promotion(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` minus the scheduler's promotion marks (other ``_memproxy`` keys stay)."""
    system = metadata.get(META_KEY)
    rest = {k: v for k, v in metadata.items() if k != META_KEY}
    if isinstance(system, dict):
        kept = {k: v for k, v in system.items() if k not in ("promoted_at", "recalls")}
        if kept:
            rest[META_KEY] = kept
    return rest
