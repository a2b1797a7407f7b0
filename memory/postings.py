"""BM25 on arrays: a large owner's lexical scores without a Python step per matching memory.

:meth:`BM25Index.scores <memory.lexical.BM25Index.scores>` walks each query
term's postings in Python: a common word ("like", "time") is in thousands of
an owner's memories, so at 100,000 memories that walk (and mapping its ids to
view positions) was most of a query's ranking time. Here each query term's
postings are kept as arrays in the positions of one :class:`~memory.view.OwnerView`
(position, term frequency, document length), built the first time the term is
queried and kept until the term's postings change
(:meth:`BM25Index.changed <memory.lexical.BM25Index.changed>`) or the view's
rows move (a removal). A memory that entered the view after its postings were
read (its vector came later) is checked for on the next query.

:meth:`PostingArrays.scores` computes the same normalised BM25 as
``BM25Index.scores`` with the same float operations in the same order (each
term's contribution, summed term by term in query order), so the values are
equal, not close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from memory.lexical import BM25Index, tokenize

if TYPE_CHECKING:
    from memory.view import OwnerView

PRIME_OWNER_MIN = 10_000  # owners this large get their common terms' arrays built ahead (memory/engine.py)
PRIME_MIN_DOCUMENTS = 64  # rarer terms build their arrays on first query (~tens of µs)
PRIME_SLICE = 10_000  # postings per prime() call (a few ms)


@dataclass(slots=True)
class _Term:
    built: int  # BM25Index.changes when read
    seen: int  # the view's rows checked for this term's postings
    positions: np.ndarray
    tfs: np.ndarray
    lengths: np.ndarray


class PostingArrays:
    """Per query term, its postings in one view's positions (one BM25 index at a time)."""

    def __init__(self) -> None:
        self._terms: dict[str, _Term] = {}
        self._bm25: BM25Index | None = None
        self._unprimed: list[str] | None = None  # terms :meth:`prime` has yet to look at

    def clear(self) -> None:
        """Forget every term (the view's rows moved)."""
        self._terms.clear()
        self._unprimed = None

    def prime(
        self, bm25: BM25Index, view: OwnerView, budget: int = PRIME_SLICE, stop: Callable[[], bool] = lambda: False
    ) -> bool:
        """Build the arrays of the index's common terms ahead of their first query, about
        ``budget`` postings per call; True once every term was looked at.

        A common term's first query paid for its arrays (a Python step per memory holding
        it: 1-13 ms a term at 100,000 memories, the slow first searches of a fresh process;
        `memproxy bench scale --sizes 100000`, docs/benchmarks.md).
        Terms in fewer than :data:`PRIME_MIN_DOCUMENTS` memories are left to their first
        query (cheap then). Arrays built here are what :meth:`scores` would build: they
        follow later changes the same way. ``stop()`` true ends the call early (between terms)."""
        if bm25 is not self._bm25:
            self._terms.clear()
            self._bm25 = bm25
            self._unprimed = None
        if self._unprimed is None:
            self._unprimed = bm25.vocabulary()
        done = 0
        while self._unprimed and done < budget and not stop():
            term = self._unprimed.pop()
            size = len(bm25.postings(term))
            done += size + 1
            if size >= PRIME_MIN_DOCUMENTS and term not in self._terms:
                self._postings(bm25, view, term)
        return not self._unprimed

    def scores(self, bm25: BM25Index, view: OwnerView, query: str) -> np.ndarray:
        """Normalised BM25 of every view row (0.0 where no term matches): ``bm25.scores(query)`` by position."""
        out = np.zeros(view.n, dtype=np.float64)
        terms = tokenize(query)
        if not terms or not len(bm25):
            return out
        if bm25 is not self._bm25:
            self._terms.clear()
            self._bm25 = bm25
        k1, b = bm25.k1, bm25.b
        avg = bm25.average_length()
        ideal = 0.0
        for term in terms:
            idf = bm25.idf(term)
            ideal += idf * (k1 + 1.0)
            entry = self._postings(bm25, view, term)
            if entry.positions.size:
                tfs = entry.tfs
                norm = k1 * (1.0 - b + b * entry.lengths / avg)
                out[entry.positions] += idf * tfs * (k1 + 1.0) / (tfs + norm)
        if ideal <= 0.0:
            return np.zeros(view.n, dtype=np.float64)
        return np.minimum(out / ideal, 1.0)

    def _postings(self, bm25: BM25Index, view: OwnerView, term: str) -> _Term:
        entry = self._terms.get(term)
        if entry is not None and bm25.changed(term) <= entry.built:
            if entry.seen == view.n:
                return entry
            docs = bm25.postings(term)
            if not any(view.ids[pos] in docs for pos in range(entry.seen, view.n)):
                entry.seen = view.n  # rows added since hold none of its postings
                return entry
        docs = bm25.postings(term)
        position = view.position
        if docs.keys() <= position.keys():
            ids, tfs = list(docs), list(docs.values())
        else:  # some are not in the view (no vector yet)
            ids = [d for d in docs if d in position]
            tfs = [docs[d] for d in ids]
        entry = _Term(
            bm25.changes, view.n, _ints(map(position.__getitem__, ids), len(ids)), _ints(tfs, len(ids)),
            _ints(map(bm25.length, ids), len(ids)),
        )
        self._terms[term] = entry
        return entry


def _ints(values: Iterable[int], count: int) -> np.ndarray:
    return np.fromiter(values, dtype=np.int64, count=count)
