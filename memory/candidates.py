"""Which memories of a large owner recall scores: candidates instead of a full scan.

Up to :data:`ANN_MIN_MEMORIES` memories, recall scores every memory of an
owner with one matrix-vector product (memory/view.py); that product reads
the whole matrix (384 float32 per memory: 154 MB at 100,000 memories), so
its time grows with the owner (~0.6 ms at 10,000, 10-35 ms at 100,000 on the
2-core machine, depending on load). Above it, recall scores a candidate set:

- the :data:`DENSE_CANDIDATES` nearest memories by the store's own HNSW
  index (Chroma's, maintained and persisted by the store: nothing to build
  in process);
- the :data:`LEXICAL_CANDIDATES` best BM25 matches (the owner's inverted
  index: every memory sharing a query term is already known);
- and both neighbours (in write order) of each, so the neighbour context of
  every candidate is exact.

Everything else scores ``-inf`` (neither in the dense top nor sharing a
rare enough word: far under the floor). Scores of the candidates are the
full scan's, except the session context, which is the best of the session's
candidates rather than of the whole session (the session's best memory is a
candidate unless it is neither near the query nor sharing its words).
``tests/test_candidates.py`` checks the top results against the full scan
on a real store.

The store loads an HNSW index from disk on its first query (2.4 s at
100,000 memories, then ~5 ms a query), so loading a large owner's recall
index also queries the store's index once (:meth:`ChromaStore.warm_index`):
the cold load pays for it, not a later recall.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memory.view import OwnerView

ANN_MIN_MEMORIES = 40_000
DENSE_CANDIDATES = 512
LEXICAL_CANDIDATES = 1024


def candidate_positions(
    view: OwnerView, dense_ids: Sequence[str], lexical: np.ndarray, lexical_top: int | None = None
) -> np.ndarray:
    """Sorted view positions of the dense hits, the best lexical hits and their neighbours."""
    lexical_top = LEXICAL_CANDIDATES if lexical_top is None else lexical_top
    position = view.position
    dense = np.fromiter((position[i] for i in dense_ids if i in position), dtype=np.int64)
    hits = np.nonzero(lexical > 0.0)[0]
    if hits.size > lexical_top:
        hits = hits[np.argpartition(-lexical[hits], lexical_top - 1)[:lexical_top]]
    core = np.concatenate([dense, hits])
    around = np.concatenate([core - 1, core, core + 1])
    return np.unique(around[(around >= 0) & (around < view.n)])


def cosines_of(view: OwnerView, embedding: np.ndarray, subset: np.ndarray | None) -> np.ndarray:
    """Every memory's cosine with the query (float64), or only ``subset``'s (in its order)."""
    query = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if subset is None:
        return (view.matrix @ query).astype(np.float64)
    return (view.matrix[subset] @ query).astype(np.float64)
