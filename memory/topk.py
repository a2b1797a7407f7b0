"""Positions in rank order, sorted only as far as they are read.

Ranking orders every memory that passed the floor by score, newest first on
ties, then id order (``np.lexsort``), but reads only until
:data:`memory.recall.MAX_RANKED` distinct memories are kept: a few hundred
of what can be 100,000 positions. :func:`rank_order` yields the same
sequence a full ``np.lexsort`` gives, sorting one head at a time: a head is
every position scoring at least the ``size``-th best score (ties included),
so everything after it scores strictly less and the concatenation of the
sorted heads is the full order. A head is cut with ``np.partition`` (linear),
and each next head is larger, so a reader that stops early pays for what it
read.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

FIRST_HEAD = 1024
GROWTH = 4


def rank_order(
    scores: np.ndarray, recency: np.ndarray, positions: np.ndarray, first: int = FIRST_HEAD
) -> Iterator[int]:
    """``positions`` by ``-scores``, then ``-recency``, then position, lazily."""
    remaining = positions
    size = max(1, first)
    while remaining.size:
        if remaining.size > size:
            values = scores[remaining]
            cut = np.partition(values, remaining.size - size)[remaining.size - size]  # the size-th best
            take = values >= cut
            head, remaining = remaining[take], remaining[~take]
        else:
            head, remaining = remaining, remaining[:0]
        yield from head[np.lexsort((head, -recency[head], -scores[head]))].tolist()
        size *= GROWTH
