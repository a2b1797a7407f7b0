"""The core tier: the owner's stable set, its cap, its version, and the scheduler."""

from __future__ import annotations

from datetime import timedelta

from memory.cube import Owner, utcnow
from memory.engine import EMPTY_CORE_VERSION, MemoryPatch, NewMemory
from memory.scheduler import MemScheduler, RecallLog
from memory.settings import SchedulerSettings
from tests.memory.memory_helpers import EngineFactory

BEA = Owner(user="bea")


def test_core_set_order_cap_version_and_invalidation(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(core_token_budget=30)
        empty = await engine.core("bea")
        assert empty.items == [] and empty.version == EMPTY_CORE_VERSION
        added = await engine.add(
            BEA,
            [
                NewMemory("Bea is allergic to peanuts.", tier="core"),
                NewMemory("Bea is vegetarian.", tier="core"),
                NewMemory("Bea once visited Oslo in the rain.", tier="recall"),
                NewMemory("Bea " + "really " * 40 + "likes long memories.", tier="core"),
            ],
        )
        core = await engine.core("bea")
        assert [c.id for c in core.items] == [added[0].id, added[1].id], "creation order; the oversized one skipped"
        assert core.tokens <= 30
        again = await engine.core("bea")
        assert again.version == core.version, "same set, same version"

        # recall never returns core items (they are injected anyway)
        found = await engine.search("bea", "Is Bea allergic to peanuts?")
        assert added[0].id not in [i.cube.id for i in found.items]

        await engine.update(added[1].id, MemoryPatch(content="Bea is vegan."))
        changed = await engine.core("bea")
        assert changed.version != core.version and changed.texts[1] == "Bea is vegan."
        await engine.update(added[2].id, MemoryPatch(tier="core"))
        promoted = await engine.core("bea")
        assert promoted.version != changed.version and added[2].id in [c.id for c in promoted.items]
        await engine.delete(added[0].id)
        assert (await engine.core("bea")).version != promoted.version
        assert [c.tier for c in (await engine.list("bea", tier="core")).items] == ["core", "core", "core"]

    open_engine.run(scenario())


def test_recall_log_counts_recent_window() -> None:
    log = RecallLog()
    for i in range(10):
        log.note("u", ["a"] if i < 3 else ["b"])
    assert log.recent("u", 5) == {"a": 0, "b": 5}
    assert log.recent("u", 10) == {"a": 3, "b": 7}


def test_scheduler_promotes_within_cap_demotes_and_expires(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(core_token_budget=20)
        policy = SchedulerSettings(window_requests=10, promote_min_recalls=3, demote_idle_s=100, episodic_ttl_s=0)
        now = [utcnow().timestamp()]
        scheduler = MemScheduler(engine, policy, clock=lambda: now[0])
        pinned, often, also, rare, expiring = await engine.add(
            BEA,
            [
                NewMemory("Bea's favourite colour is green.", tier="core"),
                NewMemory("Bea plays the cello in an orchestra."),
                NewMemory("Bea's cello teacher is called Ingrid Halvorsen and lives in Bergen."),
                NewMemory("Bea went skiing once."),
                NewMemory("Bea has a dentist appointment.", metadata={"expires_at": (utcnow() - timedelta(hours=1)).isoformat()}),
            ],
        )
        before = (await engine.core("bea")).version
        for _ in range(4):
            engine.recalls.note("bea", [often.id, also.id], now=now[0])
        engine.recalls.note("bea", [rare.id], now=now[0])
        decisions = await scheduler.run_once()
        actions = {(d.action, d.memory_id) for d in decisions}
        assert ("expire", expiring.id) in actions
        assert ("promote", often.id) in actions
        assert ("promote", also.id) not in actions, "the cap leaves no room for the second"
        assert not any(d.memory_id == rare.id for d in decisions)
        core = await engine.core("bea")
        assert [c.id for c in core.items] == [pinned.id, often.id]
        assert core.tokens <= 20 and core.version != before
        assert (await engine.get(expiring.id)).state == "archived"
        assert scheduler.decisions("bea") == decisions

        now[0] += 50
        assert await scheduler.run_once() == [], "nothing idle yet, nothing new to promote within the cap"
        now[0] += 200
        demoted = await scheduler.run_once()
        assert [(d.action, d.memory_id) for d in demoted] == [("demote", often.id)], "the pinned one stays"
        cube = await engine.get(often.id)
        assert cube.tier == "recall" and "_memproxy" not in cube.metadata
        assert [c.id for c in (await engine.core("bea")).items] == [pinned.id]

    open_engine.run(scenario())
