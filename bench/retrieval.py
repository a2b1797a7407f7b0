"""What the retrieval benchmarks (``bench locomo``, ``bench longmemeval``) share.

- :func:`pack_ranked`: greedy packing of a ranked list into a token budget,
  as ``memory.recall.pack`` does, for the baselines;
- :func:`baseline_orders`: BM25 and dense (the engine's embedder, i.e.
  all-MiniLM-L6-v2) rankings of the same texts the engine was given;
- :class:`Tally`: per-question scores summed per (system, budget, metric,
  category), turned into the report's :func:`recall_table` and
  :func:`ratios_to_best_baseline`, printed by :func:`render_table`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

BASELINES = ("bm25", "dense")
SEARCH_LIMIT = 1000  # the budget, not the item count, is what binds in these benchmarks


def pack_ranked(order: Sequence[int], costs: Sequence[int], budget: int) -> tuple[list[int], int]:
    """Greedy: take items in order while they fit the budget (as recall.pack does)."""
    chosen: list[int] = []
    used = 0
    for i in order:
        if used + costs[i] <= budget:
            chosen.append(i)
            used += costs[i]
    return chosen, used


def coverage(returned: Collection[Any], gold: Collection[Any]) -> float:
    """Share of ``gold`` found in ``returned`` (0 when there is no gold)."""
    return len(set(returned) & set(gold)) / len(gold) if gold else 0.0


class RecordingEmbedder:
    """The engine's embedder, keeping the vectors it computes for ``wanted`` texts,
    so the dense baseline reuses the whole-text vectors ingest computed anyway
    (a text the engine embedded otherwise, or not at all, is embedded again)."""

    def __init__(self, inner: Any, wanted: Collection[str]) -> None:
        self.inner = inner
        self.wanted = set(wanted)
        self.seen: dict[str, np.ndarray] = {}

    async def embed(self, texts: list[str]) -> np.ndarray:
        vectors = await self.inner.embed(texts)
        for text, vector in zip(texts, vectors, strict=True):
            if text in self.wanted:
                self.seen[text] = np.asarray(vector, dtype=np.float32)
        return vectors

    def __getattr__(self, name: str) -> Any:  # everything else is the inner embedder's
        return getattr(self.inner, name)


async def baseline_orders(
    texts: Sequence[str], queries: Sequence[str], embedder: Any, known: Mapping[str, np.ndarray] | None = None
) -> list[dict[str, list[int]]]:
    """For each query, the indices of ``texts`` ranked by BM25 (only texts sharing a
    term with the query) and by dense cosine (all of them), ties by position.
    ``known``: vectors already computed for some of the texts."""
    from memory.lexical import BM25Index

    bm25 = BM25Index()
    for i, text in enumerate(texts):
        bm25.upsert(str(i), text)
    if not texts or not queries:
        return [{"bm25": [], "dense": []} for _ in queries]
    known = known or {}
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    fresh = dict(zip(missing, np.asarray(await embedder.embed(missing)), strict=True)) if missing else {}
    vectors = np.stack([known[t] if t in known else fresh[t] for t in texts]).astype(np.float32)
    query_vectors = np.asarray(await embedder.embed(list(queries)))
    out = []
    for query, qv in zip(queries, query_vectors, strict=True):
        lexical = bm25.scores(query)
        bm25_order = sorted((i for i in range(len(texts)) if lexical.get(str(i), 0.0) > 0),
                            key=lambda i: (-lexical[str(i)], i))
        sims = vectors @ qv
        dense_order = sorted(range(len(texts)), key=lambda i: (-float(sims[i]), i))
        out.append({"bm25": bm25_order, "dense": dense_order})
    return out


class Tally:
    """Per-question scores (e.g. recall in 0..1) summed per (system, budget, metric, category)."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, int, str, str], float] = defaultdict(float)
        self.counts: dict[tuple[str, int, str], int] = defaultdict(int)
        self.tokens: dict[tuple[str, int], list[int]] = defaultdict(list)

    def add(self, system: str, budget: int, category: str, scores: Mapping[str, float], tokens: int) -> None:
        for metric, value in scores.items():
            self.sums[(system, budget, metric, category)] += value
        self.counts[(system, budget, category)] += 1
        self.tokens[(system, budget)].append(tokens)

    def mean(self, system: str, budget: int, metric: str, categories: Sequence[str]) -> float:
        """Mean over every question of ``categories`` (overall: weighted by question count)."""
        total = sum(self.sums[(system, budget, metric, c)] for c in categories)
        n = sum(self.counts[(system, budget, c)] for c in categories)
        return total / n if n else float("nan")

    def mean_tokens(self, system: str, budget: int) -> float:
        tokens = self.tokens[(system, budget)]
        return sum(tokens) / max(1, len(tokens))


def recall_table(
    tally: Tally, systems: Sequence[str], budgets: Sequence[int], metrics: Sequence[str], categories: Sequence[str]
) -> dict[str, Any]:
    """``{system: {budget: {metric: {category..., "overall"}, "mean_tokens"}}}`` (budgets as strings)."""
    table: dict[str, Any] = {}
    for system in systems:
        table[system] = {}
        for budget in budgets:
            row: dict[str, Any] = {}
            for metric in metrics:
                row[metric] = {c: round(tally.mean(system, budget, metric, [c]), 4) for c in categories}
                row[metric]["overall"] = round(tally.mean(system, budget, metric, categories), 4)
            row["mean_tokens"] = round(tally.mean_tokens(system, budget), 1)
            table[system][str(budget)] = row
    return table


def ratios_to_best_baseline(
    table: dict[str, Any], budgets: Sequence[int], metric: str, ours: str = "memproxy"
) -> dict[str, float | None]:
    """Our overall ``metric`` over the better baseline's, per budget (empty without baselines)."""
    if not all(b in table for b in BASELINES):
        return {}
    out: dict[str, float | None] = {}
    for budget in budgets:
        best = max(table[b][str(budget)][metric]["overall"] for b in BASELINES)
        out[str(budget)] = round(table[ours][str(budget)][metric]["overall"] / best, 3) if best else None
    return out


def render_table(
    table: dict[str, Any],
    budgets: Sequence[int],
    metric: str,
    categories: Sequence[str],
    extra: Sequence[tuple[str, str]] = (),
    width: int = 12,
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """One line per (system, budget): ``metric`` per category and overall, then the
    overall of each ``(label, metric)`` in ``extra``, then mean tokens. ``labels``:
    shorter column heads for long category names."""
    cats = [*categories, "overall"]
    heads = [(labels or {}).get(c, c)[: width - 1] for c in cats]
    lines = [
        f"{'system':<10}{'budget':>7}  " + "".join(f"{h:>{width}}" for h in heads)
        + "".join(f"{label:>9}" for label, _ in extra) + f"{'tokens':>9}"
    ]
    for system, rows in table.items():
        for budget in budgets:
            row = rows[str(budget)]
            lines.append(
                f"{system:<10}{budget:>7}  " + "".join(f"{row[metric][c]:>{width}.3f}" for c in cats)
                + "".join(f"{row[m]['overall']:>9.3f}" for _, m in extra) + f"{row['mean_tokens']:>9.0f}"
            )
    return lines


def render_ratios(ratios: Mapping[str, float | None]) -> list[str]:
    if not ratios:
        return []
    return ["", "ours / best baseline: " + ", ".join(f"{b}: {r:.3f}" for b, r in ratios.items() if r is not None)]
