"""The dates memories mention, kept as arrays with the view (memory/mentions.py):
the same memories meet a named time as reading each memory's dates, through
appends, updates, removals and a snapshot's round trip."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta

import numpy as np

from memory.cube import MemCube, Owner
from memory.mentions import month_mask
from memory.recall import in_time, mentioned_spans, rank, rank_view, score_all
from memory.snapshot import encoded
from memory.timeparse import QueryTime, query_time
from memory.view import OwnerView
from tests.memory.test_large_owners import _owner

WHENS = [
    QueryTime(spans=((date(2023, 5, 1), date(2023, 6, 1)),)),
    QueryTime(spans=((date(2023, 5, 9), date(2023, 5, 10)), (date(2022, 1, 1), date(2023, 1, 1)))),
    QueryTime(months=frozenset({6})),
    QueryTime(months=frozenset({1, 12})),
    QueryTime(spans=((date(2023, 7, 3), date(2023, 7, 10)),), months=frozenset({5})),
    QueryTime(spans=((date(1990, 1, 1), date(1991, 1, 1)),)),
]


def _reference(view: OwnerView, when: QueryTime) -> np.ndarray:
    """Per memory, whether a date it mentions meets ``when``, one memory at a time."""
    return np.array([any(when.overlaps(s, e) for s, e in mentioned_spans(c)) for c in view.cubes], dtype=bool)


def _check(view: OwnerView) -> None:
    assert len(view.mentions) > 0
    for when in WHENS:
        assert view.mentions.hits(when, view.n).tolist() == _reference(view, when).tolist(), when


def test_month_mask_is_the_months_a_span_touches() -> None:
    assert month_mask(date(2023, 5, 7), date(2023, 5, 8)) == 1 << 4
    assert month_mask(date(2023, 11, 27), date(2024, 2, 1)) == (1 << 10) | (1 << 11) | 1
    assert month_mask(date(2023, 3, 1), date(2025, 1, 1)) == (1 << 12) - 1
    assert month_mask(date(9999, 12, 1), date(9999, 12, 31)) == 1 << 11
    for months in ({6}, {1, 12}, {2}, set(range(1, 13))):  # the mask agrees with QueryTime.overlaps
        when = QueryTime(months=frozenset(months))
        wanted = sum(1 << (m - 1) for m in months)
        for start in (date(2023, 1, 31), date(2023, 4, 30), date(2023, 12, 15)):
            for days in (1, 7, 31, 92, 365, 800):
                end = start + timedelta(days=days)
                assert bool(month_mask(start, end) & wanted) == when.overlaps(start, end), (months, start, end)


def test_mentions_follow_appends_updates_and_removals() -> None:
    index = _owner(300)
    view = index.view()
    assert view is not None
    _check(view)
    vector = np.ones(24, dtype=np.float32) / np.sqrt(24)
    gone_dates = index.cubes["mem_00007"].evolve(content="the river trip", version=2)  # mentioned "yesterday"
    new_dates = index.cubes["mem_00008"].evolve(content="the river trip last month", version=2)
    for cube in (gone_dates, new_dates):
        index.upsert(cube, vector)
    for memory_id in ("mem_00014", "mem_00020", "mem_00299"):
        index.remove(memory_id)
    start = datetime(2023, 9, 1, tzinfo=UTC)
    for i in range(40):  # appended later, some mentioning dates
        content = "pottery class last week" if i % 3 else "a guitar lesson"
        cube = MemCube(id=f"mem_9{i:04d}", owner=Owner("u"), content=content, event_time=start + timedelta(days=i))
        index.upsert(cube, vector)
    after = index.view()
    assert after is view, "changes were absorbed, not rebuilt"
    assert view.n == 300 - 3 + 40
    _check(view)
    assert OwnerView.build(index.cubes, index.vectors).mentions.hits(WHENS[0], view.n).tolist() == (
        view.mentions.hits(WHENS[0], view.n).tolist()
    )


def test_mentions_survive_a_snapshot_and_ranking_stays_the_same() -> None:
    index = _owner(400)
    state = index.state()
    assert state is not None
    restored_index = type(index)()
    restored_index.restore(pickle.loads(pickle.dumps(encoded(state))))
    view = restored_index.view()
    assert view is not None
    _check(view)
    vectors = np.random.default_rng(3).normal(size=(3, 24)).astype(np.float32)
    queries = ["tuna in May 2023", "the dog in June", "Melanie on 3 May, 2023"]
    for query, vector in zip(queries, vectors, strict=True):
        when = query_time(query, now=datetime(2023, 9, 1, tzinfo=UTC))
        assert when is not None
        candidates = score_all(index, query, vector)
        assert candidates is not None
        expected = rank(candidates, 0.2, (), query, len(index.cubes), when)
        got = rank_view(view, restored_index.bm25, query, vector, 0.2, (), len(index.cubes), when)
        assert expected, query
        assert [(c.id, round(s, 12)) for c, s in got] == [(c.id, round(s, 12)) for c, s in expected], query
        assert any(in_time(c.cube, when) for c in candidates)
