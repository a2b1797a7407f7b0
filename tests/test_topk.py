"""memory/topk.py: the lazy rank order is exactly the full lexsort order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from memory.topk import rank_order


@pytest.mark.parametrize("n, first", [(0, 4), (1, 4), (50, 4), (5000, 16), (5000, 100_000)])
def test_rank_order_is_the_full_sort_with_ties(n: int, first: int) -> None:
    rng = np.random.default_rng(n)
    scores = np.round(rng.normal(size=n), 1)  # many ties on score
    recency = rng.integers(0, 5, size=n).astype(np.float64)  # and on recency
    positions = np.nonzero(scores > -1.0)[0]
    full = positions[np.lexsort((positions, -recency[positions], -scores[positions]))].tolist()
    assert list(rank_order(scores, recency, positions, first=first)) == full


def test_a_reader_that_stops_early_gets_the_head() -> None:
    rng = np.random.default_rng(7)
    scores = rng.normal(size=20_000)
    recency = np.zeros(20_000)
    positions = np.arange(20_000)
    head = list(itertools.islice(rank_order(scores, recency, positions, first=8), 30))
    assert head == np.argsort(-scores, kind="stable")[:30].tolist()
