"""The recall trace changes nothing: both ranking paths (arrays over an owner's in-process index,
and candidates from a store) rank the same with and without one, and explain it the same way."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from memory.explain import PARTS, RecallTrace
from memory.recall import pack, rank, rank_view, score_all
from memory.timeparse import query_time
from tests.memory.test_large_owners import _owner

QUERIES = ["Caroline pottery class", "what about the dog and the river?", "tuna in May 2023", "Melanie on 3 May, 2023"]


def test_a_trace_changes_no_ranking_and_both_paths_explain_alike() -> None:
    index = _owner(600)
    view = index.view()
    assert view is not None
    vectors = np.random.default_rng(7).normal(size=(len(QUERIES), 24)).astype(np.float32)
    extra = [(index.cubes["mem_00010"], 0.36)]
    for query, vector in zip(QUERIES, vectors, strict=True):
        when = query_time(query, now=datetime(2023, 9, 1, tzinfo=UTC))
        candidates = score_all(index, query, vector)
        assert candidates is not None
        on_arrays, on_candidates = RecallTrace(), RecallTrace()
        plain = rank_view(view, index.bm25, query, vector, 0.2, extra, len(index.cubes), when)
        traced = rank_view(view, index.bm25, query, vector, 0.2, extra, len(index.cubes), when, on_arrays)
        assert traced == plain, query
        assert rank(candidates, 0.2, extra, query, len(index.cubes), when, on_candidates) == plain, query
        count = len  # a stand-in token counter: characters
        assert pack(plain, 60, 5, count) == pack(plain, 60, 5, count, on_arrays)
        pack(plain, 60, 5, count, on_candidates)
        assert on_arrays.passed_gate is True and on_arrays.gate == on_candidates.gate
        for cube, score in plain:
            a, c = on_arrays.candidates[cube.id], on_candidates.candidates[cube.id]
            assert a.score == c.score == score
            assert a.injected == c.injected and a.cut == c.cut
            for part in PARTS:
                assert abs(a.parts.get(part, 0.0) - c.parts.get(part, 0.0)) < 1e-9, (query, part)
            if not a.parts.get("standing"):  # the parts add up to the score
                assert abs(sum(a.parts.values()) - score) < 1e-9
        assert sum(e.injected for e in on_arrays.candidates.values()) == len(pack(plain, 60, 5, count).items)
        assert {e.cut for e in on_arrays.candidates.values() if not e.injected} <= {
            "floor", "near_duplicate", "budget", "limit", "ranked_out"
        }


def test_a_closed_gate_is_explained() -> None:
    index = _owner(40)
    view = index.view()
    assert view is not None
    vector = np.random.default_rng(3).normal(size=24).astype(np.float32)
    trace = RecallTrace()
    assert rank_view(view, index.bm25, "zzz qqq", vector, 5.0, (), len(index.cubes), None, trace) == []
    assert trace.passed_gate is False and trace.best is not None and trace.gate is not None
    assert trace.candidates and all(e.cut == "gate" for e in trace.candidates.values())
