"""What an index snapshot keeps besides the memories: the user's profile, so the
first request after a restart does not build it again, and only while it is
the profile of the disclosures restored with it."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import numpy as np

from memory.cube import MemCube, Owner
from memory.lexcache import OwnerIndex
from memory.profile import build_profile
from memory.snapshot import encoded

FACTS = ["I live in Porto.", "My dog is called Rex.", "I work as a nurse.", "I moved from Porto to Lisbon.", "nice weather"]


def _index() -> OwnerIndex:
    index = OwnerIndex()
    start = datetime(2023, 5, 1, tzinfo=UTC)
    for i, text in enumerate(FACTS * 3):
        cube = MemCube(id=f"mem_{i:05d}", owner=Owner("u"), content=text, event_time=start + timedelta(days=i))
        index.upsert(cube, np.full(8, 1 / np.sqrt(8), dtype=np.float32))
    return index


def _profile(index: OwnerIndex) -> object:
    return build_profile((d for ds in index.disclosed.values() for d in ds), 200, len)


def _restored(index: OwnerIndex) -> OwnerIndex:
    state = index.state()
    assert state is not None
    out = OwnerIndex()
    out.restore(pickle.loads(pickle.dumps(encoded(state))))
    return out


def test_a_snapshot_keeps_the_profile_of_its_disclosures() -> None:
    index = _index()
    profile = _profile(index)
    index.profile_memo = (index.disclosed_version, 200, profile)
    restored = _restored(index)
    assert restored.profile_memo is not None
    version, budget, kept = restored.profile_memo
    assert version == restored.disclosed_version and budget == 200
    assert kept == profile == _profile(restored)  # the disclosures came back too (unpickled when read)
    assert sorted(restored.disclosed) == sorted(index.disclosed)
    new = MemCube(id="mem_99999", owner=Owner("u"), content="I have a cat named Tom.", event_time=datetime(2024, 1, 1, tzinfo=UTC))
    restored.upsert(new, np.full(8, 1 / np.sqrt(8), dtype=np.float32))
    assert restored.disclosed_version != version, "a new disclosure makes the kept profile stale"


def test_a_stale_profile_is_not_kept() -> None:
    index = _index()
    index.profile_memo = (index.disclosed_version - 1, 200, _profile(index))
    assert _restored(index).profile_memo is None
