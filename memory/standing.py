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
from collections.abc import Awaitable, Callable, Mapping, Sequence

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
PROFILE_DECIMALS = 4

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
    """Domain profiles of standing facts (at write time) and of queries.

    A memory's standing flag and profile are computed when it is written and
    stored with it (:meth:`stamp`), so neither a query nor a restart
    recomputes them. Profiles are embedded on the *bulk* lane (they belong
    to writes, and to the lazy backfill of rows written before profiles were
    stored), so a large owner never holds up other owners' queries.
    """

    def __init__(self, embed_query: Embed, embed_bulk: Embed | None = None) -> None:
        self._embed_query = embed_query
        self._embed_bulk = embed_bulk or embed_query
        self._anchors: np.ndarray | None = None
        self._anchors_lock = asyncio.Lock()

    async def anchors(self) -> np.ndarray:
        if self._anchors is None:
            async with self._anchors_lock:
                if self._anchors is None:
                    self._anchors = await self._embed_query(list(DOMAIN_ANCHORS))
        return self._anchors

    async def query_domains(self, query_vector: np.ndarray) -> np.ndarray:
        """The query's lean into each domain."""
        return domain_lean(await self.anchors() @ query_vector)

    async def profiles(self, cubes: Sequence[MemCube]) -> np.ndarray:
        """The domain profile of each memory's user-side text, ``(n, domains)``."""
        if not cubes:
            return np.zeros((0, len(DOMAINS)), dtype=np.float32)
        anchors = await self.anchors()
        vectors = await self._embed_bulk([user_side(c.content) for c in cubes])
        return np.stack([profile_of(anchors @ v) for v in vectors])

    async def stamp(self, cubes: Sequence[MemCube]) -> list[MemCube]:
        """``cubes`` with their standing flag and, for standing facts, profile set
        (cubes already stamped are kept as they are)."""
        flags = [c.standing if c.standing is not None else is_standing(c) for c in cubes]
        todo = [c for c, flag in zip(cubes, flags, strict=True) if flag and c.standing is None]
        profiles = dict(zip((c.id for c in todo), await self.profiles(todo), strict=True))
        return [
            c
            if c.standing is not None
            else c.evolve(standing=flag, domains=tuple(float(x) for x in profiles[c.id]) if flag else ())
            for c, flag in zip(cubes, flags, strict=True)
        ]


def profile_of(phrase_scores: np.ndarray) -> np.ndarray:
    """A stored profile: the domain lean, rounded so it reads back the same."""
    return np.round(domain_lean(phrase_scores), PROFILE_DECIMALS).astype(np.float32)


def bridge_scores(
    query_domains: np.ndarray,
    profiles: Mapping[str, np.ndarray | None],
    cubes: Mapping[str, MemCube],
    min_score: float,
) -> list[tuple[MemCube, float]]:
    """Standing facts that share a domain with the query, scored just over the floor.

    Facts whose profile is not known yet (``None``) are left out."""
    if float(query_domains.max()) < DOMAIN_FLOOR:
        return []
    known = [(i, p) for i, p in profiles.items() if p is not None and i in cubes]
    if not known:
        return []
    matrix = np.stack([p for _, p in known])
    strength = np.minimum(matrix, query_domains[None, :]).max(axis=1)
    return [
        (cubes[i], min_score + BRIDGE_MARGIN * float(s))
        for (i, _), s in zip(known, strength, strict=True)
        if float(s) >= DOMAIN_FLOOR
    ]
