"""Explanations of recall: what one recall injected and why, for the API and for chat.

:func:`explanation` turns a filled :class:`memory.explain.RecallTrace` (and the
core set and result of the same recall) into the answer of
``POST /v1/memories/explain``. A chat request sent with ``X-Memory-Explain:
1`` gets the same explanation, kept in an :class:`ExplanationLog` under the
request id (``X-Memory-Explain-Id``) for ``GET /v1/memories/explain/{id}``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory.cube import isoformat
from memory.engine import CoreSet, RecallResult
from memory.explain import RecallTrace
from proxy.pipeline.blocks import render_block, render_core_block

KEPT_EXPLANATIONS = 256
MAX_CANDIDATES = 50  # the injected ones, then the best of the rest


@dataclass(frozen=True, slots=True)
class Explanation:
    owner: str  # the stored owner (who may read it back)
    body: dict[str, Any]


def explanation(
    query: str,
    now: datetime,
    token_budget: int,
    core: CoreSet,
    result: RecallResult | None,
    trace: RecallTrace,
) -> dict[str, Any]:
    items = result.items if result is not None else []
    injected = [item.cube.id for item in items]
    ranked = trace.ordered()
    rest = [c for c in ranked if not c.injected][: max(0, MAX_CANDIDATES - len(injected))]
    by_id = {c.cube.id: c for c in ranked}
    shown = [by_id[i] for i in injected if i in by_id] + rest
    return {
        "object": "memory.explanation",
        "query": query,
        "now": isoformat(now),
        "token_budget": token_budget,
        "tokens": result.tokens if result is not None else 0,
        "gate": {"threshold": trace.gate, "best": trace.best, "passed": trace.passed_gate, "floor": trace.floor},
        "core": {
            "version": core.version,
            "ids": [c.id for c in core.items],
            "tokens": core.tokens,
            "block": render_core_block(core.texts, core.profile) if core.items or core.profile else None,
        },
        "injected": injected,
        "scores": {item.cube.id: round(item.score, 6) for item in items},
        "recalled_block": render_block([item.text for item in items]) if items else None,
        "candidates": [c.to_dict() for c in shown],
        "candidates_total": len(ranked),
    }


class ExplanationLog:
    """The explanations of the last :data:`KEPT_EXPLANATIONS` explained chat requests, by request id."""

    def __init__(self, size: int = KEPT_EXPLANATIONS) -> None:
        self._size = size
        self._items: OrderedDict[str, Explanation] = OrderedDict()

    def put(self, explain_id: str, item: Explanation) -> None:
        self._items[explain_id] = item
        self._items.move_to_end(explain_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, explain_id: str) -> Explanation | None:
        return self._items.get(explain_id)
