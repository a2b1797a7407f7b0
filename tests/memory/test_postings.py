"""BM25 on arrays (memory/postings.py) gives exactly ``BM25Index.scores`` by view
position, through appends, updates, removals, a memory whose vector came after
its text, and a restored snapshot."""

from __future__ import annotations

import pickle

import numpy as np

from memory.cube import MemCube, Owner
from memory.lexcache import OwnerIndex
from memory.snapshot import encoded
from memory.view import OwnerView
from tests.memory.test_large_owners import _owner

QUERIES = ["Caroline pottery class", "the dog and the river dog", "tuna peanuts guitar garden", "marathon",
           "nothing matches zzz", "kids book train trip Lisbon"]


def _by_position(index: OwnerIndex, view: OwnerView, query: str) -> np.ndarray:
    out = np.zeros(view.n)
    for memory_id, value in index.bm25.scores(query).items():
        if memory_id in view.position:
            out[view.position[memory_id]] = value
    return out


def _check(index: OwnerIndex) -> None:
    view = index.view()
    assert view is not None
    for query in QUERIES:
        got = view.postings.scores(index.bm25, view, query)
        assert np.array_equal(got, _by_position(index, view, query)), query  # equal, not close
    assert view.postings.scores(index.bm25, view, QUERIES[0]).any()


def test_arrays_follow_every_change_to_the_owner() -> None:
    index = _owner(500)
    _check(index)
    vector = np.ones(24, dtype=np.float32) / np.sqrt(24)
    index.upsert(index.cubes["mem_00003"].evolve(content="dog dog river marathon", version=2), vector)
    index.upsert(MemCube(id="mem_90000", owner=Owner("u"), content="pottery class with the kids"), vector)
    _check(index)
    index.remove("mem_00010")  # rows move up
    _check(index)
    text_first = MemCube(id="mem_90001", owner=Owner("u"), content="a dog at the river")
    index.upsert(text_first)  # indexed without a vector: the view is rebuilt once it has one
    index.upsert(text_first, vector)
    _check(index)
    view = index.view()
    assert view is not None
    index.bm25.upsert("mem_90002", "dog river marathon")  # in the index before it is in the view ...
    _check(index)
    view.append(MemCube(id="mem_90002", owner=Owner("u"), content="dog river marathon"), vector)  # ... then in it
    _check(index)


def test_arrays_after_a_snapshot_restore() -> None:
    index = _owner(300)
    _check(index)
    state = index.state()
    assert state is not None
    restored = OwnerIndex()
    restored.restore(pickle.loads(pickle.dumps(encoded(state))))
    _check(restored)


def test_primed_arrays_score_as_the_index_through_changes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import memory.postings as postings

    monkeypatch.setattr(postings, "PRIME_MIN_DOCUMENTS", 2)  # prime most terms of a small owner
    index = _owner(400)
    view = index.view()
    assert view is not None
    assert not view.postings.prime(index.bm25, view, stop=lambda: True)  # a search started: nothing done
    assert not view.postings._terms
    slices = 0
    while not view.postings.prime(index.bm25, view, budget=50):  # a slice at a time
        slices += 1
    assert slices > 1
    primed = set(view.postings._terms)
    assert primed and all(index.bm25.document_frequency(t) >= 2 for t in primed)
    _check(index)  # primed terms score exactly as BM25Index.scores
    vector = np.ones(24, dtype=np.float32) / np.sqrt(24)
    term = next(iter(primed))
    index.upsert(MemCube(id="mem_90000", owner=Owner("u"), content=f"{term} {term} pottery"), vector)
    index.upsert(index.cubes["mem_00005"].evolve(content=f"{term} river", version=2), vector)
    _check(index)  # after changes to primed terms' postings
    index.remove("mem_00020")  # rows move: primed arrays are dropped, rebuilt on demand
    assert not view.postings._terms
    assert not view.postings.prime(index.bm25, view, budget=10)  # priming starts over
    _check(index)


def test_priming_after_a_snapshot_restore() -> None:
    index = _owner(300)
    state = index.state()
    assert state is not None
    restored = OwnerIndex()
    restored.restore(pickle.loads(pickle.dumps(encoded(state))))
    view = restored.view()
    assert view is not None
    while not view.postings.prime(restored.bm25, view):
        pass
    _check(restored)
