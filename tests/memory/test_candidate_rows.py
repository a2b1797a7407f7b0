"""A large owner's ranking computes on its candidate rows only (memory/recall.py,
``rank_view`` with ``dense``): the same ranking as computing every row with the
rows outside the candidates at ``-inf``, which is what an explanation (a
trace) still does."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from memory import candidates
from memory.explain import RecallTrace
from memory.recall import rank_view
from memory.timeparse import query_time
from tests.memory.test_large_owners import _owner

QUERIES = ["Caroline pottery class", "what about the dog and the river?", "tuna in May 2023",
           "Melanie on 3 May, 2023", "the kids and the garden yesterday", "guitar"]


def test_candidate_rows_rank_as_every_row_with_the_rest_out(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(candidates, "LEXICAL_CANDIDATES", 40)
    index = _owner(900)
    view = index.view()
    assert view is not None
    vectors = np.random.default_rng(11).normal(size=(len(QUERIES), 24)).astype(np.float32)
    extra = [(index.cubes["mem_00010"], 0.9), (index.cubes["mem_00500"], 0.3)]
    compared = 0
    for query, vector in zip(QUERIES, vectors, strict=True):
        nearest = np.argsort(-(view.matrix @ vector))[:30]
        dense = [view.ids[pos] for pos in nearest]
        when = query_time(query, now=datetime(2023, 9, 1, tzinfo=UTC))
        for min_score in (-0.5, 0.0, 0.2):
            args = (view, index.bm25, query, vector, min_score, extra, len(index.cubes), when)
            got = rank_view(*args, dense=dense)
            with np.errstate(invalid="ignore"):  # the trace's "time" part of an extra outside the rows: -inf - -inf
                expected = rank_view(*args, trace=RecallTrace(), dense=dense)  # every row, -inf outside
            assert [(c.id, s) for c, s in got] == [(c.id, s) for c, s in expected], (query, min_score)
            compared += len(got)
    assert compared > 100
