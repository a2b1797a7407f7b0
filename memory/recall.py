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

``LEXICAL_WEIGHT`` (2.0) is what ranks: on LoCoMo, questions share their
rare words (names, places, objects) with the turns that answer them, and
exact terms beat paraphrase similarity (1,024-token recall 0.74 at 0.25,
0.80 at 1.0, 0.83 at 2.0). The gate below is calibrated on
``cos + GATE_LEXICAL_WEIGHT * bm25n`` (0.25) and keeps that weight, so an
everyday prompt sharing one common word with a memory stays out.

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

import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar

import numpy as np

from memory.candidates import candidate_positions, cosines_of
from memory.cube import META_KEY, MemCube
from memory.explain import RecallTrace
from memory.intent import is_self_question
from memory.lexcache import OwnerIndex
from memory.lexical import BM25Index, tokenize
from memory.render import render_item
from memory.timeparse import QueryTime, resolve_relative, span_of
from memory.topk import rank_order
from memory.view import OwnerView

LEXICAL_WEIGHT = 2.0
# the gate (does this query need memory at all?) keeps its own, calibrated
# lexical weight, so ranking can lean harder on exact terms without letting
# an everyday prompt in on a shared common word
GATE_LEXICAL_WEIGHT = 0.25
DEFAULT_MIN_SCORE = 0.35
NEAR_DUPLICATE = 0.85
TIE_MARGIN = 0.02
MIN_CANDIDATES = 48
# once the best memory clears the floor, the budget is filled down to this
# share of the floor (the floor gates the *query*, not every item)
ITEM_FLOOR_RATIO = 0.5
NEIGHBOUR_WEIGHT = 0.3
SESSION_WEIGHT = 0.5
SPEAKER_BOOST = 0.1
# a memory whose event day, or a date it mentions, falls in the time the
# query names ("on 16 June, 2023", "in May 2023", "in June") gains this
TIME_BOOST = 0.3
DATES_KEY = "dates"  # metadata["_memproxy"]["dates"]: relative dates resolved at write time
# the best of N unrelated memories creeps up with N (an extreme value), so the
# gate rises by GATE_PER_DECADE per tenfold growth of the owner beyond
# GATE_BASE_SIZE memories: 0.35 up to 10 memories, ~0.45 at 700
GATE_PER_DECADE = 0.055
GATE_BASE_SIZE = 10
# a question about the user's own life ("what speed is my new internet plan?",
# memory/intent.py) asks for memory itself: its gate grows this share as fast
# (0: the base min_score at any owner size). `memproxy bench longmemeval`, full
# dev split: 0.868 / 0.884 at 1,024 / 2,048 with the size-aware gate for every
# query, 0.917 / 0.940 with this (docs/benchmarks.md)
SELF_QUESTION_GROWTH = 0.0
# memories of one day share one date header in the rendered block (see pack)
GROUP_BY_DATE = True
MAX_RANKED = 256  # more than any budget holds (4,096 tokens ~ 160 turns)
TRACED_BEYOND = 32  # an explanation also shows this many of the best memories the ranking cut early

T = TypeVar("T")


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


def gate_score(candidate: Candidate) -> float:
    """The fused score the gate is calibrated on (see :data:`GATE_LEXICAL_WEIGHT`)."""
    return candidate.cosine + GATE_LEXICAL_WEIGHT * candidate.lexical


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
    query: str = "",
    population: int = 0,
    when: QueryTime | None = None,
    trace: RecallTrace | None = None,
) -> list[tuple[MemCube, float]]:
    """Context, gate, floor, order, and near-duplicate suppression.

    ``extra`` are already-scored memories recalled by another route (standing
    facts); each memory keeps its best score. The floor gates the query:
    nothing is recalled unless the best memory reaches ``min_score``; once it
    does, memories down to ``ITEM_FLOOR_RATIO * min_score`` may fill the budget.
    """
    best = max([gate_score(c) for c in candidates] + [score for _, score in extra], default=-1.0)
    threshold = gate(min_score, population or len(candidates), is_self_question(query))
    if trace is not None:
        for c in candidates:
            trace.part(c.cube, "dense", c.cosine)
            trace.part(c.cube, "lexical", LEXICAL_WEIGHT * c.lexical)
        _trace_gate(trace, extra, threshold, best, min_score * ITEM_FLOOR_RATIO)
    if best < threshold:  # plain relevance, before any context
        return []
    floor = min_score * ITEM_FLOOR_RATIO  # on plain relevance: context alone cannot bring a memory in
    scored = merge_best(contextualise(candidates, query, floor, when, trace), extra)
    plain = {c.cube.id: c.score for c in candidates}
    plain.update({cube.id: max(score, plain.get(cube.id, score)) for cube, score in extra})
    frequency = Counter(w for cube, _ in scored for w in words_of(cube))
    eligible = ((cube, score) for cube, score in scored if plain.get(cube.id, score) >= floor)
    ranked = _suppress_twins(eligible, words_of, lambda w: frequency.get(w, 0), trace)
    if trace is not None:
        trace.settle(ranked)
    return ranked


def _trace_gate(
    trace: RecallTrace, extra: Sequence[tuple[MemCube, float]], threshold: float, best: float, floor: float
) -> None:
    """The gate, the floor and the standing facts' scores; on a closed gate, everything traced is cut by it."""
    trace.gate, trace.best, trace.passed_gate = threshold, best, best >= threshold
    for cube, score in extra:
        trace.part(cube, "standing", score)
    if best < threshold:
        for entry in trace.candidates.values():
            trace.cut(entry.cube, "gate")
    else:
        trace.floor = floor


def _suppress_twins(
    scored: Iterable[tuple[MemCube, float]],
    words_of: Callable[[MemCube], frozenset[str]],
    frequency: Callable[[str], int],
    trace: RecallTrace | None = None,
) -> list[tuple[MemCube, float]]:
    """Near-duplicate suppression over memories in rank order (newer wins a
    tie), at most :data:`MAX_RANKED` kept, returned in rank order."""
    kept: list[tuple[MemCube, float, frozenset[str]]] = []
    by_prefix: dict[str, list[int]] = {}  # prefix filtering: twins share a prefix token
    for cube, score in scored:
        if len(kept) >= MAX_RANKED:
            break
        words = words_of(cube)
        prefix = _prefix(words, frequency)
        seen: set[int] = set()
        twin = None
        for token in prefix:
            for i in by_prefix.get(token, ()):
                if i not in seen:
                    seen.add(i)
                    if _similar(words, kept[i][2]):
                        twin = i
                        break
            if twin is not None:
                break
        if twin is None:
            for token in prefix:
                by_prefix.setdefault(token, []).append(len(kept))
            kept.append((cube, score, words))
        elif kept[twin][1] - score <= TIE_MARGIN and recency(cube) > recency(kept[twin][0]):
            if trace is not None:  # newer wins
                trace.cut(kept[twin][0], "near_duplicate", twin=cube.id)
            kept[twin] = (cube, score, words)
        elif trace is not None:
            trace.cut(cube, "near_duplicate", twin=kept[twin][0].id)
    ranked = [(cube, score) for cube, score, _ in kept]
    ranked.sort(key=_sort_key)
    return ranked


def gate(min_score: float, population: int, self_question: bool = False) -> float:
    """The score the best memory must reach for anything to be recalled."""
    if population <= GATE_BASE_SIZE:
        return min_score
    growth = GATE_PER_DECADE * (SELF_QUESTION_GROWTH if self_question else 1.0)
    return min_score + growth * math.log10(population / GATE_BASE_SIZE)


def session_key(cube: MemCube) -> object:
    """The conversation session a memory belongs to: its ``session`` metadata,
    else its owner session, else the calendar day of its event."""
    session = cube.metadata.get("session") if isinstance(cube.metadata, dict) else None
    if session is not None:
        return ("meta", str(session))
    if cube.owner.session:
        return ("owner", cube.owner.session)
    return ("day", recency(cube).date().isoformat())


def named_speakers(query: str, candidates: Sequence[Candidate]) -> set[str]:
    """Speakers (``metadata.speaker``) whose name the query mentions."""
    words = {w.lower() for w in _NAME.findall(query)}
    if not words:
        return set()
    speakers = {c.cube.metadata.get("speaker") for c in candidates if isinstance(c.cube.metadata, dict)}
    return {s for s in speakers if isinstance(s, str) and s and s.split()[0].lower() in words}


_NAME = re.compile(r"[A-Za-z][A-Za-z'-]+")


def contextualise(
    candidates: Sequence[Candidate],
    query: str = "",
    floor: float = -math.inf,
    when: QueryTime | None = None,
    trace: RecallTrace | None = None,
) -> list[tuple[MemCube, float]]:
    """Fused scores lifted by their context, in rank order.

    - neighbouring turns: a memory gains ``NEIGHBOUR_WEIGHT`` of the better of
      its two neighbours in write order within the same session (the answer is
      often the turn after the question, and the question names the topic);
    - session: ``SESSION_WEIGHT`` of the best score in the memory's session;
    - speaker: ``SPEAKER_BOOST`` when the query names the memory's speaker;
    - time: ``TIME_BOOST`` when the memory falls in the time the query names
      (``when``, see :func:`in_time`).

    Memories whose own fused score is under ``floor`` are left out.
    """
    if not candidates:
        return []
    ordered = sorted(candidates, key=lambda c: c.cube.id)
    timed = TIME_BOOST if when is not None else 0.0
    base = [c.score + (timed if when is not None and in_time(c.cube, when) else 0.0) for c in ordered]
    keys = [session_key(c.cube) for c in ordered]
    best_in_session: dict[object, float] = {}
    for key, score in zip(keys, base, strict=True):
        if score > best_in_session.get(key, -1.0):
            best_in_session[key] = score
    speakers = named_speakers(query, ordered) if SPEAKER_BOOST else set()
    out: list[tuple[MemCube, float]] = []
    for i, cand in enumerate(ordered):
        score = base[i]
        if cand.score < floor:  # context never brings a memory in (only lifts one that is in)
            continue
        if trace is not None:
            trace.part(cand.cube, "time", base[i] - cand.score)
        if NEIGHBOUR_WEIGHT:
            near = [base[j] for j in (i - 1, i + 1) if 0 <= j < len(ordered) and keys[j] == keys[i]]
            if near:
                score += NEIGHBOUR_WEIGHT * max(near)
                if trace is not None:
                    trace.part(cand.cube, "neighbour", NEIGHBOUR_WEIGHT * max(near))
        if SESSION_WEIGHT:
            score += SESSION_WEIGHT * best_in_session[keys[i]]
            if trace is not None:
                trace.part(cand.cube, "session", SESSION_WEIGHT * best_in_session[keys[i]])
        if speakers and cand.cube.metadata.get("speaker") in speakers:
            score += SPEAKER_BOOST
            if trace is not None:
                trace.part(cand.cube, "speaker", SPEAKER_BOOST)
        out.append((cand.cube, score))
    out.sort(key=_sort_key)
    return out


def in_time(cube: MemCube, when: QueryTime) -> bool:
    """Whether the memory's event day, or a date it mentions, meets ``when``."""
    if cube.event_time is not None:
        day = cube.event_time.date()
        if when.overlaps(day, day + timedelta(days=1)):
            return True
    return any(when.overlaps(start, end) for start, end in mentioned_spans(cube))


class CubeMemo(Generic[T]):
    """Values derived from a memory's text, kept per (id, version, content),
    least recently used dropped first past ``limit`` entries (recall's
    per-memory caches for candidates outside an owner's view; the view keeps
    its own, per owner). Extra arguments are passed to ``derive`` but are not
    part of the key."""

    def __init__(self, derive: Callable[..., T], limit: int = 200_000) -> None:
        self._derive = derive
        self._limit = limit
        self._values: OrderedDict[tuple[str, int, str], T] = OrderedDict()
        self._lock = threading.Lock()  # recall runs on a thread pool

    def __call__(self, cube: MemCube, *args: Any) -> T:
        key = (cube.id, cube.version, cube.content)
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
                return value
        value = self._derive(cube, *args)
        with self._lock:
            self._values[key] = value
            while len(self._values) > self._limit:
                self._values.popitem(last=False)
        return value


def cube_spans(cube: MemCube) -> tuple[tuple[date, date], ...]:
    meta = cube.metadata.get(META_KEY) if isinstance(cube.metadata, dict) else None
    stored = meta.get(DATES_KEY) if isinstance(meta, dict) else None
    if isinstance(stored, list):
        values = [v for v in stored if isinstance(v, str)]
    else:
        values = resolve_relative(cube.content, recency(cube))
    return tuple(span for span in map(span_of, values) if span is not None)


# The dates the memory's relative expressions resolve to: those stored at
# write time (``metadata._memproxy.dates``), else resolved now.
mentioned_spans = CubeMemo(cube_spans)
# The memory's index terms.
words_of = CubeMemo(lambda cube: frozenset(tokenize(cube.content)))
# Tokens of the memory's line without its date header (``count`` is the one
# token counter a process uses, cl100k, so it is not part of the key).
_body_tokens: CubeMemo[int] = CubeMemo(lambda cube, count: count(cube.content.strip()))


def _prefix(words: frozenset[str], frequency: Callable[[str], int]) -> list[str]:
    """The first tokens (rarest first) that any near-duplicate must share.

    Any fixed order makes the filter exact; rarest first keeps common words (a
    speaker's name, on every one of their turns) out of the prefixes, so few
    pairs are compared (alphabetical order compared almost every pair, which
    was most of the ranking time on the LoCoMo dev questions)."""
    if not words:
        return [""]
    ordered = sorted(words, key=lambda w: (frequency(w), w))
    size = len(ordered) - math.ceil(NEAR_DUPLICATE * len(ordered)) + 1
    return ordered[: max(1, size)]


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    if not a or not b:
        return a == b
    if min(len(a), len(b)) < NEAR_DUPLICATE * max(len(a), len(b)):
        return False
    return len(a & b) / len(a | b) >= NEAR_DUPLICATE


def pack(
    ranked: Sequence[tuple[MemCube, float]],
    budget: int,
    max_items: int,
    count: Callable[[str], int],
    trace: RecallTrace | None = None,
) -> RecallResult:
    """Greedily take items by score while they fit the token budget.

    ``MemCube.tokens`` (set at write time, the full ``[date] content`` line)
    is the cost; ``count`` is used for cubes stored without a count and for
    the date-less body of a dated memory.

    With :data:`GROUP_BY_DATE`, memories of one calendar day share one date
    header: the first of them (in time order) is rendered with its date, the
    rest without, so a day's header is paid once. Items come back day by day,
    the days in the rank order of their best memory (so the first item belongs
    to the best day; an undated memory is a day of its own), each day's
    memories in time order; ``score`` still says how each ranked.
    """
    chosen: list[tuple[MemCube, float, int, int]] = []  # cube, score, full cost, body cost
    used = 0
    days: set[object] = set()
    for n, (cube, score) in enumerate(ranked):
        if len(chosen) >= max_items:
            if trace is not None:
                for late, _ in ranked[n:]:
                    trace.cut(late, "limit")
            break
        full = cube.tokens if cube.tokens > 0 else count(render_item(cube))
        day = cube.event_time.date() if (GROUP_BY_DATE and cube.event_time is not None) else None
        body = full if day is None else min(full, _body_tokens(cube, count))
        cost = body if (day is not None and day in days) else full
        if used + cost > budget:
            if trace is not None:
                trace.cut(cube, "budget")
            continue
        if trace is not None:
            trace.candidate(cube).injected = True
        chosen.append((cube, score, full, body))
        used += cost
        if day is not None:
            days.add(day)
    if not GROUP_BY_DATE:
        plain = [Recalled(cube=c, score=s, tokens=f, text=render_item(c)) for c, s, f, _ in chosen]
        return RecallResult(items=plain, tokens=used)
    groups: dict[object, list[tuple[MemCube, float, int, int]]] = {}
    for entry in chosen:  # in rank order, so a group's first entry is its best
        group_key: object = entry[0].event_time.date() if entry[0].event_time is not None else ("undated", entry[0].id)
        groups.setdefault(group_key, []).append(entry)
    items: list[Recalled] = []
    for group in groups.values():
        group.sort(key=lambda e: (e[0].event_time, e[0].created_at, e[0].id))
        for n, (c, s, f, b) in enumerate(group):
            if n == 0:
                items.append(Recalled(cube=c, score=s, tokens=f, text=render_item(c)))
            else:
                items.append(Recalled(cube=c, score=s, tokens=b, text=c.content.strip()))
    return RecallResult(items=items, tokens=sum(i.tokens for i in items))


def merge_best(
    scored: Sequence[tuple[MemCube, float]], extra: Sequence[tuple[MemCube, float]]
) -> list[tuple[MemCube, float]]:
    """Union of two scored lists, each memory at its best score, in rank order."""
    best = {cube.id: (cube, score) for cube, score in scored}
    for cube, score in extra:
        if cube.id not in best or best[cube.id][1] < score:
            best[cube.id] = (cube, score)
    return sorted(best.values(), key=_sort_key)


def score_all(owner_index: OwnerIndex, query: str, embedding: np.ndarray) -> list[Candidate] | None:
    """Dense + lexical scores of every memory of the owner, or None without cached
    vectors (one object per memory: :func:`rank_view` ranks the same on arrays)."""
    cached = owner_index.matrix()
    if cached is None:
        return None
    ids, matrix = cached
    cosines = matrix @ np.asarray(embedding, dtype=np.float32).reshape(-1)
    lexical = owner_index.bm25.scores(query)
    cubes = owner_index.cubes
    return [Candidate(cubes[i], float(c), lexical.get(i, 0.0)) for i, c in zip(ids, cosines, strict=True)]


# -- every memory of an owner at once (the view) --------------------------------


def rank_view(
    view: OwnerView,
    bm25: BM25Index,
    query: str,
    embedding: np.ndarray,
    min_score: float,
    extra: Sequence[tuple[MemCube, float]] = (),
    population: int = 0,
    when: QueryTime | None = None,
    trace: RecallTrace | None = None,
    dense: Sequence[str] | None = None,
) -> list[tuple[MemCube, float]]:
    """:func:`rank` of :func:`score_all`'s candidates, on arrays.

    The same scores in the same order (the same float operations: cosine +
    weighted BM25, the time boost, neighbours and session best within a
    session in id order, the speaker boost), without a Python object per
    memory; only the memories that reach the near-duplicate pass become
    tuples. Near-duplicate prefixes are ordered by the owner's BM25 document
    frequency (rarest first) instead of the candidates' word counts: any fixed
    order finds the same twins (see :func:`_prefix`).

    ``dense``: a large owner's nearest memories by the store's index; then only
    they, the best lexical matches and their neighbours are scored
    (memory/candidates.py), the rest are out.
    """
    n = view.n
    lexical = view.postings.scores(bm25, view, query)  # bm25.scores(query) by position (memory/postings.py)
    # the rows scored: a large owner's candidates, else all (None); everything below is
    # computed on them only, a row outside scoring -inf as if computed on every row
    rows = candidate_positions(view, dense, lexical) if dense is not None else None
    cosines = cosines_of(view, embedding, rows)
    if trace is not None and rows is not None:  # an explanation reads parts by position: every row
        cosines, rows = _spread(cosines, rows, n), None
    lex = lexical if rows is None else lexical[rows]
    fused = cosines + LEXICAL_WEIGHT * lex
    gated = cosines + GATE_LEXICAL_WEIGHT * lex
    best = max([float(gated.max()) if gated.size else (-np.inf if n else -1.0)] + [score for _, score in extra])
    threshold = gate(min_score, population or n, is_self_question(query))
    if trace is not None and best < threshold:  # the best plain scores, all cut by the gate
        for pos in np.argsort(-gated, kind="stable")[:TRACED_BEYOND]:
            trace.part(view.cubes[pos], "dense", float(cosines[pos]))
            trace.part(view.cubes[pos], "lexical", float(LEXICAL_WEIGHT * lexical[pos]))
        _trace_gate(trace, extra, threshold, best, min_score * ITEM_FLOOR_RATIO)
    if best < threshold:
        return []
    floor = min_score * ITEM_FLOOR_RATIO
    if when is not None:
        timed = _in_time(view, when)
        base = fused + TIME_BOOST * (timed if rows is None else timed[rows])
    else:
        base = fused
    codes = view.sessions if rows is None else view.sessions[rows]
    scores = base.copy()
    if NEIGHBOUR_WEIGHT and n > 1:
        m = base.size
        same = codes[1:] == codes[:-1]
        if rows is not None:  # neighbours in write order: adjacent positions
            same &= rows[1:] == rows[:-1] + 1
        left = np.full(m, -np.inf)
        left[1:] = np.where(same, base[:-1], -np.inf)
        right = np.full(m, -np.inf)
        right[:-1] = np.where(same, base[1:], -np.inf)
        near = np.maximum(left, right)
        has = near > -np.inf
        scores = np.where(has, scores + NEIGHBOUR_WEIGHT * np.where(has, near, 0.0), scores)
    if SESSION_WEIGHT:
        best_in_session = np.full(len(view.session_codes), -1.0)
        np.maximum.at(best_in_session, codes, base)
        scores = scores + SESSION_WEIGHT * best_in_session[codes]
    speakers = _named_speaker_codes(query, view) if SPEAKER_BOOST else []
    if speakers:
        spoken = view.speakers if rows is None else view.speakers[rows]
        scores = np.where(np.isin(spoken, speakers), scores + SPEAKER_BOOST, scores)
    final = np.where(fused < floor, -np.inf, scores)
    if rows is not None:
        final = _spread(final, rows, n)
    outside: list[tuple[MemCube, float]] = []
    for cube, score in extra:  # each memory at its best score (merge_best)
        pos = view.position.get(cube.id)
        if pos is None:
            outside.append((cube, score))
        elif final[pos] < score:
            final[pos] = score
    chosen = np.nonzero(final > -np.inf)[0]
    if trace is not None:
        order = chosen[np.lexsort((chosen, -view.recency[chosen], -final[chosen]))]
        # the parts of the memories the ranking looks at, and of the best ones under the floor
        under = np.nonzero((final == -np.inf) & np.isfinite(fused))[0]  # not the rows candidates left out
        under = under[np.argsort(-fused[under], kind="stable")[:TRACED_BEYOND]]
        for pos in np.concatenate([order[: 2 * MAX_RANKED], under]):
            cube = view.cubes[pos]
            trace.part(cube, "dense", float(cosines[pos]))
            trace.part(cube, "lexical", float(LEXICAL_WEIGHT * lexical[pos]))
            trace.part(cube, "time", float(base[pos] - fused[pos]))
            if NEIGHBOUR_WEIGHT and n > 1 and has[pos]:
                trace.part(cube, "neighbour", float(NEIGHBOUR_WEIGHT * near[pos]))
            if SESSION_WEIGHT:
                trace.part(cube, "session", float(SESSION_WEIGHT * best_in_session[codes[pos]]))
            if speakers and view.speakers[pos] in speakers:
                trace.part(cube, "speaker", SPEAKER_BOOST)
        _trace_gate(trace, extra, threshold, best, floor)
    ordered: Iterable[tuple[MemCube, float]] = (
        (view.cubes[i], float(final[i])) for i in rank_order(final, view.recency, chosen)
    )  # sorted only as far as the near-duplicate pass reads (memory/topk.py)
    if outside:
        ordered = merge_best(list(ordered), outside)
    frequencies: dict[str, int] = {}  # each word's document frequency, read once per query

    def frequency(term: str) -> int:
        value = frequencies.get(term)
        if value is None:
            value = frequencies[term] = bm25.document_frequency(term)
        return value

    ranked = _suppress_twins(ordered, lambda cube: _indexed_words(bm25, cube), frequency, trace)
    if trace is not None:
        trace.settle(ranked)
    return ranked


def _spread(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """``values`` of ``rows`` as every row's, ``-inf`` elsewhere."""
    out = np.full(n, -np.inf)
    out[rows] = values
    return out


def _in_time(view: OwnerView, when: QueryTime) -> np.ndarray:
    """Per memory, 1.0 when it meets the time the query names (see :func:`in_time`)."""
    days = view.days
    hit = np.zeros(view.n, dtype=bool)
    dated = days >= 0
    for lo, hi in when.spans:
        hit |= dated & (days >= lo.toordinal()) & (days < hi.toordinal())
    if when.months:
        hit |= dated & np.isin(view.months, sorted(when.months))
    hit |= view.mentions.hits(when, view.n)
    return hit.astype(np.float64)


def _named_speaker_codes(query: str, view: OwnerView) -> list[int]:
    words = {w.lower() for w in _NAME.findall(query)}
    if not words:
        return []
    return [code for name, code in view.speaker_codes.items() if name.split()[0].lower() in words]


def _indexed_words(bm25: BM25Index, cube: MemCube) -> frozenset[str]:
    terms = bm25.terms(cube.id)
    return frozenset(terms) if terms is not None else words_of(cube)
