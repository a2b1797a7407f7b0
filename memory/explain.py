"""Why recall injected what it did: a trace the ranking fills in as it runs.

:meth:`memory.engine.MemoryEngine.search` takes an optional
:class:`RecallTrace`; when given one, each step of the ranking writes down what
it did to each candidate (its score parts, the gate, why it was cut) and
nothing else changes: the trace is filled by the very calls that rank, so an
explanation is exactly the ranking chat gets for the same query and time.

Score parts (all additive, see :mod:`memory.recall`): ``dense`` (cosine),
``lexical`` (``LEXICAL_WEIGHT * bm25n``), ``time`` (the query names a time the
memory falls in), ``neighbour``, ``session``, ``speaker`` (context lifts),
``standing`` (the standing-facts bridge's score, when it beat the rest).
Cut reasons: ``gate`` (the query's best memory did not reach the gate:
nothing is recalled), ``floor`` (under the item floor), ``near_duplicate``
(a near-identical memory ranked instead: ``twin``), ``core`` (in the core
tier, injected anyway), ``budget`` (did not fit the token budget),
``limit`` (``max_items`` reached), ``ranked_out`` (past the ranking's cap of
``MAX_RANKED``). For a large owner the trace holds the memories the ranking
looked at plus the best few it cut early, not every memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memory.cube import MemCube

PARTS = ("dense", "lexical", "time", "neighbour", "session", "speaker", "standing")


@dataclass
class CandidateTrace:
    cube: MemCube
    parts: dict[str, float] = field(default_factory=dict)
    score: float | None = None  # the ranking score (None: cut before ranking)
    cut: str | None = None
    twin: str | None = None  # the near-duplicate kept instead
    injected: bool = False
    source: str = "owner"  # owner | pack

    def to_dict(self) -> dict[str, Any]:
        cube = self.cube
        parts = {name: round(self.parts.get(name, 0.0), 6) for name in PARTS}
        plain = parts["dense"] + parts["lexical"]
        return {
            "id": cube.id,
            "content": cube.content,
            "kind": cube.kind,
            "tier": cube.tier,
            "source": self.source,
            "score": round(self.score if self.score is not None else plain, 6),
            "parts": parts,
            "injected": self.injected,
            "cut": self.cut,
            "twin": self.twin,
        }


@dataclass
class RecallTrace:
    """Filled by one :meth:`MemoryEngine.search`; read by whoever asked for it."""

    candidates: dict[str, CandidateTrace] = field(default_factory=dict)
    gate: float | None = None  # the score the best memory had to reach
    best: float | None = None  # the best plain (gate) score
    passed_gate: bool | None = None
    floor: float | None = None  # the item floor (plain relevance) once the gate passed

    def candidate(self, cube: MemCube) -> CandidateTrace:
        found = self.candidates.get(cube.id)
        if found is None:
            found = self.candidates[cube.id] = CandidateTrace(cube)
        return found

    def part(self, cube: MemCube, name: str, value: float) -> None:
        if value:
            self.candidate(cube).parts[name] = value

    def cut(self, cube: MemCube, reason: str, twin: str | None = None) -> None:
        entry = self.candidate(cube)
        if entry.cut is None:
            entry.cut = reason
            entry.twin = twin

    def add_ranked(self, ranked: list[tuple[MemCube, float]], source: str) -> None:
        """Memories ranked elsewhere (installed packs) that joined this ranking."""
        for cube, score in ranked:
            if cube.id not in self.candidates:
                entry = self.candidate(cube)
                entry.source, entry.score = source, score

    def settle(self, ranked: list[tuple[MemCube, float]]) -> None:
        """The ranking's outcome: the ranked keep their score; any other traced candidate
        not cut for a reason was under the item floor, or past the ranking's cap."""
        for cube, score in ranked:
            self.candidate(cube).score = score
        for entry in self.candidates.values():
            if entry.score is None:
                plain = entry.parts.get("dense", 0.0) + entry.parts.get("lexical", 0.0)
                over = self.floor is not None and max(plain, entry.parts.get("standing", 0.0)) >= self.floor
                self.cut(entry.cube, "ranked_out" if over else "floor")

    def ordered(self) -> list[CandidateTrace]:
        """Injected first (in injection order is the caller's), then the rest by score."""
        def key(entry: CandidateTrace) -> tuple[int, float, str]:
            score = entry.score if entry.score is not None else sum(entry.parts.get(p, 0.0) for p in ("dense", "lexical"))
            return (0 if entry.injected else 1, -score, entry.cube.id)

        return sorted(self.candidates.values(), key=key)
