"""Standing facts: durable personal constraints that matter beyond their words.

"I'm allergic to peanuts" should shape "suggest a dinner recipe", yet the two
share no words and MiniLM puts them at cosine ~0.1 — below any sane
relevance floor. Standing facts bridge that gap by *life domain*:

1. A memory is a standing fact when its user-side text states something
   durable about the user (allergies, diets, dislikes, health conditions,
   where they live, who they live with, what they do) — see
   :data:`STANDING_PATTERNS`.
2. Each standing fact and each query is compared with a small set of domain
   anchors (food, health, travel, …) in the same embedding space.
3. A standing fact is recalled when the query and the fact both lean clearly
   into the same domain (both at least :data:`DOMAIN_FLOOR`), with a score
   just over the relevance floor so that direct matches still rank first.

Unrelated prompts (greetings, arithmetic, a haiku, code) lean into no domain,
so nothing is injected for them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from memory.cube import MemCube

# Life domains, each described by a few phrases; a text's lean into a domain
# is its best cosine with any of the domain's phrases.
DOMAINS: tuple[tuple[str, ...], ...] = (
    (
        "food, meals, cooking, recipes, restaurants, diet and food allergies",
        "ideas for what to cook or eat",
    ),
    ("health, illness, medicine, doctors and allergies",),
    ("travel, trips, flights, holidays and places to visit",),
    ("work, job, career and office",),
    ("family, partner, children and relatives",),
    ("pets and animals",),
    ("sports, fitness and exercise",),
    ("home, house and where someone lives",),
)
DOMAIN_ANCHORS = tuple(phrase for domain in DOMAINS for phrase in domain)
_DOMAIN_STARTS = np.cumsum([0] + [len(d) for d in DOMAINS[:-1]])
DOMAIN_FLOOR = 0.25
BRIDGE_MARGIN = 0.01
MAX_CACHED_PROFILES = 100_000

STANDING_PATTERNS = re.compile(
    r"\b("
    r"allerg\w*|intoleran\w*|vegetarian|vegan|pescatarian|kosher|halal|gluten|lactose|celiac|coeliac"
    r"|diabet\w*|asthma\w*|pregnan\w*|sober"
    r"|(i|we) (don'?t|do not|can'?t|cannot|never|won'?t) (eat|drink|fly|drive)"
    r"|(i|we) (hate|dislike|avoid|prefer|love)"
    r"|i'?m afraid of|i am afraid of"
    r"|my name is|i live in|i'?m from|i am from|we live in|i work (as|at|in)"
    r"|i have (a|an|two|three|\d+) (kids?|children|sons?|daughters?|dogs?|cats?)"
    r")\b",
    re.IGNORECASE,
)

Embed = Callable[[list[str]], Awaitable[np.ndarray]]


def user_side(content: str) -> str:
    """The user's words of an episodic turn (``User: …`` lines); else all of it."""
    lines = content.splitlines()
    if not lines or not lines[0].startswith("User:"):
        return content
    kept: list[str] = []
    for line in lines:
        if line.startswith("Assistant:"):
            break
        kept.append(line.removeprefix("User:").strip())
    return " ".join(kept)


def is_standing(cube: MemCube) -> bool:
    return bool(STANDING_PATTERNS.search(user_side(cube.content)))


def domain_lean(phrase_scores: np.ndarray) -> np.ndarray:
    """Per-domain lean from per-phrase cosines: the best phrase of each domain."""
    return np.maximum.reduceat(phrase_scores, _DOMAIN_STARTS)


class DomainBridge:
    """Scores standing facts against a query by shared life domain."""

    def __init__(self, embed: Embed) -> None:
        self._embed = embed
        self._anchors: np.ndarray | None = None
        self._profiles: dict[tuple[str, int], np.ndarray] = {}
        self._standing: dict[tuple[str, int], bool] = {}

    def _is_standing(self, cube: MemCube) -> bool:
        key = (cube.id, cube.version)
        known = self._standing.get(key)
        if known is None:
            if len(self._standing) >= MAX_CACHED_PROFILES:
                self._standing.clear()
            known = self._standing[key] = is_standing(cube)
        return known

    async def _anchor_matrix(self) -> np.ndarray:
        if self._anchors is None:
            self._anchors = await self._embed(list(DOMAIN_ANCHORS))
        return self._anchors

    async def scores(
        self, query_vector: np.ndarray, cubes: Sequence[MemCube], min_score: float
    ) -> list[tuple[MemCube, float]]:
        """Standing facts among ``cubes`` that share a domain with the query."""
        anchors = await self._anchor_matrix()
        query_domains = domain_lean(anchors @ query_vector)
        if float(query_domains.max()) < DOMAIN_FLOOR:
            return []
        standing = [c for c in cubes if self._is_standing(c)]
        if not standing:
            return []
        profiles = await self._profiles_of(standing, anchors)
        out: list[tuple[MemCube, float]] = []
        for cube in standing:
            shared = np.minimum(query_domains, profiles[(cube.id, cube.version)])
            strength = float(shared.max())
            if strength >= DOMAIN_FLOOR:
                out.append((cube, min_score + BRIDGE_MARGIN * strength))
        return out

    async def _profiles_of(self, cubes: Sequence[MemCube], anchors: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
        missing = [c for c in cubes if (c.id, c.version) not in self._profiles]
        if len(self._profiles) + len(missing) > MAX_CACHED_PROFILES:
            self._profiles.clear()
            missing = list(cubes)
        if missing:
            # Shielded: a recall that hits its deadline must not throw away the
            # embeddings, or a large owner would restart this work every request.
            await asyncio.shield(asyncio.ensure_future(self._fill(missing, anchors)))
        return {(c.id, c.version): self._profiles[(c.id, c.version)] for c in cubes}

    async def _fill(self, cubes: Sequence[MemCube], anchors: np.ndarray) -> None:
        vectors = await self._embed([user_side(c.content) for c in cubes])
        for cube, vector in zip(cubes, vectors, strict=True):
            self._profiles[(cube.id, cube.version)] = domain_lean(anchors @ vector)
