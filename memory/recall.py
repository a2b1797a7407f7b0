"""Hybrid recall: dense + lexical candidates, one fused score, a floor, packing.

Score of a memory ``m`` for a query ``q``::

    score = cos(q, m) + LEXICAL_WEIGHT * bm25n(q, m)

``cos`` is the cosine similarity of the MiniLM embeddings (in practice
-0.1..1). ``bm25n`` is BM25 divided by the best BM25 the query could reach
(see :mod:`memory.lexical`), in ``[0, 1)``: a bounded, corpus-size-stable
"share of the query's terms this memory contains". Both candidate sets
(top-k dense from the store, top-k lexical from the owner's BM25 index) are
scored with the same formula; lexical-only candidates get their cosine from
their stored vectors.

Then:

1. relevance floor: drop ``score < min_score``. Calibrated on
   all-MiniLM-L6-v2 against short personal facts (allergies, job, pets,
   car, family): unrelated prompts top out at 0.31 ("hello" -> "My name is
   Sam"; "tell me a joke" -> "I work as a nurse" 0.28; most 0.05-0.25),
   related ones start at 0.36 ("can I eat a Snickers bar?" -> "allergic to
   peanuts"; most 0.40-0.65). Greetings are frequent in chat, so the floor
   sits just under the related band, at 0.35 (:data:`DEFAULT_MIN_SCORE`,
   the same as ``MemorySettings.min_score``). The lexical term lifts
   exact-term matches (names, codes, rare words) over it. Limit: links that
   need world knowledge are out of reach — "suggest a dinner recipe" vs
   "I'm allergic to peanuts" has cosine 0.14, below "tell me a joke"
   against the same memory (0.23), so no floor can separate them; standing
   constraints like that belong in the ``core`` tier.
2. order by score, newest first on ties (event time, else creation time).
3. near-duplicate suppression: a memory whose word set is nearly that of an
   already kept one is skipped; when near-duplicates score within
   :data:`TIE_MARGIN` the newer one is the one kept ("newer wins").
4. greedy packing by score into the token budget (tokens of the rendered
   line), at most ``max_items`` items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from memory.cube import MemCube
from memory.lexcache import OwnerIndex
from memory.lexical import tokenize
from memory.render import render_item
from memory.store import MemoryStore

LEXICAL_WEIGHT = 0.25
DEFAULT_MIN_SCORE = 0.35
NEAR_DUPLICATE = 0.85
TIE_MARGIN = 0.02
MIN_CANDIDATES = 48


@dataclass(frozen=True, slots=True)
class Recalled:
    cube: MemCube
    score: float
    tokens: int
    text: str  # render_item(cube)


@dataclass(frozen=True, slots=True)
class RecallResult:
    items: list[Recalled]
    tokens: int  # sum of item tokens


@dataclass(frozen=True, slots=True)
class Candidate:
    cube: MemCube
    cosine: float
    lexical: float

    @property
    def score(self) -> float:
        return fuse(self.cosine, self.lexical)


def fuse(cosine: float, lexical: float) -> float:
    return cosine + LEXICAL_WEIGHT * lexical


def candidate_count(max_items: int) -> int:
    return max(MIN_CANDIDATES, 2 * max_items)


def recency(cube: MemCube) -> datetime:
    return cube.event_time or cube.created_at


def _sort_key(item: tuple[MemCube, float]) -> tuple[float, float, str]:
    cube, score = item
    return (-score, -recency(cube).timestamp(), cube.id)


def rank(
    candidates: Sequence[Candidate],
    min_score: float,
    extra: Sequence[tuple[MemCube, float]] = (),
) -> list[tuple[MemCube, float]]:
    """Floor, order, and near-duplicate suppression.

    ``extra`` are already-scored memories recalled by another route (standing
    facts); each memory keeps its best score.
    """
    scored = merge_best([(c.cube, c.score) for c in candidates if c.score >= min_score], extra)
    kept: list[tuple[MemCube, float, frozenset[str]]] = []
    for cube, score in scored:
        words = frozenset(tokenize(cube.content))
        twin = next((i for i, (_, _, w) in enumerate(kept) if _similar(words, w)), None)
        if twin is None:
            kept.append((cube, score, words))
        elif kept[twin][1] - score <= TIE_MARGIN and recency(cube) > recency(kept[twin][0]):
            kept[twin] = (cube, score, words)
    ranked = [(cube, score) for cube, score, _ in kept]
    ranked.sort(key=_sort_key)
    return ranked


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    if not a or not b:
        return a == b
    return len(a & b) / len(a | b) >= NEAR_DUPLICATE


def pack(
    ranked: Sequence[tuple[MemCube, float]], budget: int, max_items: int, count: Callable[[str], int]
) -> RecallResult:
    """Greedily take items by score while they fit the token budget.

    ``MemCube.tokens`` (set at write time) is the cost; ``count`` is only
    used for cubes stored without a count.
    """
    items: list[Recalled] = []
    used = 0
    for cube, score in ranked:
        if len(items) >= max_items:
            break
        text = render_item(cube)
        tokens = cube.tokens if cube.tokens > 0 else count(text)
        if used + tokens > budget:
            continue
        items.append(Recalled(cube=cube, score=score, tokens=tokens, text=text))
        used += tokens
    return RecallResult(items=items, tokens=used)


def merge_best(
    scored: Sequence[tuple[MemCube, float]], extra: Sequence[tuple[MemCube, float]]
) -> list[tuple[MemCube, float]]:
    """Union of two scored lists, each memory at its best score, in rank order."""
    best = {cube.id: (cube, score) for cube, score in scored}
    for cube, score in extra:
        if cube.id not in best or best[cube.id][1] < score:
            best[cube.id] = (cube, score)
    return sorted(best.values(), key=_sort_key)


async def gather_candidates(
    store: MemoryStore, owner_index: OwnerIndex, user: str, query: str, embedding: np.ndarray, k: int
) -> list[Candidate]:
    """Top-k dense hits from the store plus top-k lexical hits from the owner's index."""
    dense = await store.query(user, embedding, k)
    lexical = owner_index.bm25.scores(query)
    top_lexical = sorted(lexical, key=lexical.__getitem__, reverse=True)[:k]
    cosines = {cube.id: cos for cube, cos in dense}
    cubes = {cube.id: cube for cube, _ in dense}
    missing = [i for i in top_lexical if i not in cosines and i in owner_index.cubes]
    if missing:
        cosines.update(await store.similarities(user, embedding, missing))
        cubes.update({i: owner_index.cubes[i] for i in missing if i in cosines})
    return [Candidate(cube, cosines[i], lexical.get(i, 0.0)) for i, cube in cubes.items()]
