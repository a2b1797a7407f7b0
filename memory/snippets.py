"""Snippets: the part of a long memory that matters to the query, as injected.

A chat turn written by the proxy is ``User: …\\nAssistant: …``. With an
assistant, the reply often runs to hundreds of tokens (a LongMemEval
exchange costs ~500), so two whole turns fill a 1,024-token block and the
short turn that holds the fact never fits. A memory whose rendered line costs
more than :data:`EXCERPT_FROM` tokens is therefore injected as an *excerpt*:

- the user's words are kept whole up to :data:`USER_TOKENS` (what the user
  said about themselves is what is asked about later); a longer user part
  keeps its first sentence and the sentences sharing the most (rarest) query
  terms, in their order;
- of everyone else's words (the assistant), only the sentences that share
  query terms are kept, best first, up to :data:`OTHER_TOKENS`; with none, the
  first sentence (clipped) says what the reply was about;
- left-out runs are marked with ``…``.

Sentence relevance is lexical (the query's index terms weighted by their
inverse document frequency in the owner's index): no model runs on the read
path. The excerpt keeps the memory's id, metadata, provenance and times (the
returned memory is the same memory, its ``content`` the part injected), so
evidence counting and provenance are unchanged. Short memories (every LoCoMo
turn, every fact) are injected whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memory.cube import MemCube
from memory.lexical import tokenize
from memory.recall import CubeMemo
from memory.render import render_item

EXCERPT_FROM = 160  # tokens of the rendered line above which a memory is excerpted
USER_TOKENS = 120  # most tokens of the user's words kept
OTHER_TOKENS = 70  # most tokens of the other speakers' words kept
MAX_EXCERPTED = 96  # ranked memories looked at (more than any budget holds once excerpted)
SPARE = 1.5  # excerpts made up to this many times the budget (packing skips what does not fit)
ELLIPSIS = "…"
USER_LABEL = "User"
_LABEL = re.compile(r"^([A-Z][\w .'-]{0,30}):\s?(.*)$")
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+[\"')\]]*|$)")


@dataclass(frozen=True, slots=True)
class Sentence:
    text: str
    terms: frozenset[str]
    size: int  # approximate tokens (characters / 4), for choosing; the excerpt is counted exactly


@dataclass(frozen=True, slots=True)
class Part:
    label: str  # "" for unlabelled text
    sentences: tuple[Sentence, ...]

    @property
    def size(self) -> int:
        return sum(s.size for s in self.sentences)


def approx_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def parts_of(content: str) -> tuple[Part, ...]:
    """The memory's text as speaker parts (a ``Label:`` line starts one), each as sentences."""
    raw: list[tuple[str, list[str]]] = []
    for line in content.strip().splitlines():
        labelled = _LABEL.match(line.strip())
        if labelled and (labelled.group(1) in (USER_LABEL, "Assistant") or not raw):
            raw.append((labelled.group(1), [labelled.group(2)]))
        elif raw:
            raw[-1][1].append(line)
        else:
            raw.append(("", [line]))
    parts = []
    for label, lines in raw:
        sentences = tuple(
            Sentence(text, frozenset(tokenize(text)), approx_tokens(text))
            for line in lines
            for text in (m.group(0).strip() for m in _SENTENCE.finditer(line))
            if text
        )
        parts.append(Part(label, sentences))
    return tuple(parts)


def _clip(text: str, tokens: int) -> str:
    limit = tokens * 4
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return f"{cut} {ELLIPSIS}"


def choose(sentences: Sequence[Sentence], weights: dict[str, float], budget: int, keep_first: bool) -> str:
    """The best sentences for the query within ``budget`` (approximate tokens), in text order.

    ``keep_first``: the first sentence is kept whatever it scores (it says what
    the part is about); otherwise it is kept only when nothing scores."""
    if not sentences:
        return ""
    if sum(s.size for s in sentences) <= budget:
        return " ".join(s.text for s in sentences)
    scored = [(sum(weights.get(t, 0.0) for t in s.terms), i) for i, s in enumerate(sentences)]
    order = [i for score, i in sorted(scored, key=lambda p: (-p[0], p[1])) if score > 0]
    chosen: list[int] = []
    used = 0
    if keep_first or not order:
        chosen.append(0)
        used = min(sentences[0].size, budget)
    for i in order:
        if i in chosen:
            continue
        if used + sentences[i].size > budget:
            continue
        chosen.append(i)
        used += sentences[i].size
    chosen.sort()
    out: list[str] = []
    previous = -1
    for i in chosen:
        if i != previous + 1:
            out.append(ELLIPSIS)
        out.append(_clip(sentences[i].text, budget))
        previous = i
    if previous != len(sentences) - 1:
        out.append(ELLIPSIS)
    return " ".join(out)


def excerpt(parts: Sequence[Part], weights: dict[str, float]) -> str:
    """The memory's text cut to the parts and sentences that matter (see the module docstring)."""
    lines = []
    for part in parts:
        mine = part.label in (USER_LABEL, "")
        text = choose(part.sentences, weights, USER_TOKENS if mine else OTHER_TOKENS, keep_first=mine)
        lines.append(f"{part.label}: {text}" if part.label else text)
    return "\n".join(lines)


# a memory's parts and sentences, split once per (id, version, content)
cached_parts: CubeMemo[tuple[Part, ...]] = CubeMemo(lambda cube: parts_of(cube.content), limit=20_000)


def query_weights(query: str, idf: Callable[[str], float]) -> dict[str, float]:
    """The query's index terms, each weighted by its rarity in the owner's memories."""
    return {term: max(idf(term), 0.0) for term in set(tokenize(query))}


def excerpted(
    ranked: Sequence[tuple[MemCube, float]],
    query: str,
    idf: Callable[[str], float],
    count: Callable[[str], int],
    budget: int | None = None,
    parts: Callable[[MemCube], tuple[Part, ...]] | None = None,
) -> list[tuple[MemCube, float]]:
    """``ranked`` with its long memories replaced by their excerpts for ``query``
    (same id, metadata, provenance, times; ``tokens`` the excerpt's rendered
    line), in rank order until the excerpts would fill ``budget`` well over
    (:data:`SPARE`; the rest could not be packed anyway) or
    :data:`MAX_EXCERPTED` were looked at."""
    split = parts or cached_parts
    weights: dict[str, float] | None = None
    out: list[tuple[MemCube, float]] = []
    used = 0
    enough = None if budget is None else SPARE * budget + EXCERPT_FROM
    for n, (cube, score) in enumerate(ranked):
        if n < MAX_EXCERPTED and (enough is None or used <= enough):
            if cube.tokens > EXCERPT_FROM:
                if weights is None:
                    weights = query_weights(query, idf)
                text = excerpt(split(cube), weights)
                if text and text != cube.content.strip():
                    short = cube.evolve(content=text, tokens=0)
                    cube = short.evolve(tokens=count(render_item(short)))
            used += cube.tokens
        out.append((cube, score))
    return out
