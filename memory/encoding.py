"""A memory's vector: its whole text blended with its sentences.

A conversation turn often says several things ("Thanks, Mel! I signed up for
a pottery class yesterday. How are the kids?"). One embedding of the whole
turn averages them, so a question about any one of them meets a diluted
vector; and MiniLM reads at most 256 word pieces, so the tail of a long turn
is not embedded at all. A memory with two or more sentences is therefore
stored as::

    normalise(0.5 * e(whole) + 0.5 * mean(e(sentence) for each sentence))

where each sentence keeps its line's speaker label ("Melanie: I signed up
for a pottery class yesterday."), since the label is part of what a
question about that person matches. A one-sentence memory keeps ``e(whole)``.
It stays one vector per memory, so the store and every index are unchanged,
and a query is embedded as before.

On the LoCoMo dev split this moved evidence recall from 0.846 to 0.862 at
1,024 tokens and from 0.894 to 0.911 at 2,048, and abstention from 95.1% to
96.2% (``memproxy bench locomo``; :data:`SENTENCE_WEIGHT` = 0 gives the
whole-text vector alone, i.e. the "before"; see docs/benchmarks.md).

Writes compute this through :class:`memory.late_chunking.LateChunker` (the
``blend`` recipe, ``memory.embedding_recipe``): the same vectors (cosine
> 0.99999 to :func:`encode`), with the whole texts and all their sentences
in one forward call batched by length. The opt-in ``late`` recipe pools the
sentences of texts over 256 word pieces from the whole-text pass instead:
2.8x the LongMemEval exchanges per CPU second, but lower recall (figures in
:mod:`memory.late_chunking`). A store keeps the vectors it was written
with; switching the recipe affects new writes only (and texts of at most
256 word pieces get the same vector under both).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

SENTENCE_WEIGHT = 0.5
MAX_SENTENCES = 32  # beyond this, the rest of a long text shares the last part
EMBED_CHUNK = 64  # the embedder's batch size (see _embed_by_length)
_LABEL = re.compile(r"^([^:\n]{1,40}):\s+(.*)$", re.S)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")

Embed = Callable[[list[str]], Awaitable[np.ndarray]]


@dataclass(frozen=True, slots=True)
class Span:
    """One sentence of a text: ``text[start:end]``, said under ``label`` (``""``: none)."""

    label: str
    start: int
    end: int


def sentence_spans(text: str) -> list[Span]:
    """Where each sentence of ``text`` is (all of them, uncapped; see :func:`sentences`)."""
    out: list[Span] = []
    at = 0
    for raw in text.splitlines(keepends=True):
        line_at, at = at, at + len(raw)
        line = raw.strip()
        if not line:
            continue
        line_at += len(raw) - len(raw.lstrip())
        labelled = _LABEL.match(line)
        label, body, body_at = (labelled.group(1), labelled.group(2), labelled.start(2)) if labelled else ("", line, 0)
        for match in _SENTENCE.finditer(body):
            found = match.group(0)
            sentence = found.strip()
            if len(sentence) > 3:
                start = line_at + body_at + match.start() + len(found) - len(found.lstrip())
                out.append(Span(label, start, start + len(sentence)))
    return out


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, each prefixed with its line's ``Label:`` if any.

    Fewer than two sentences: ``[]`` (the whole text is the only part).
    """
    out = [f"{s.label}: {text[s.start:s.end]}" if s.label else text[s.start : s.end] for s in sentence_spans(text)]
    if len(out) < 2:
        return []
    if len(out) > MAX_SENTENCES:
        out = out[: MAX_SENTENCES - 1] + [" ".join(out[MAX_SENTENCES - 1 :])]
    return out


async def _embed_by_length(embed: Embed, texts: list[str]) -> np.ndarray:
    """``embed(texts)`` shortest first, in calls of at most ``EMBED_CHUNK``.

    SentenceTransformer sorts one call's texts longest first and cuts batches
    of 64, so the full first batch holds the long whole turns together with
    the longer sentences, all padded to the longest turn. Cutting shortest
    first ourselves leaves the long texts to the last, small call. Ingest in
    ``memproxy bench locomo``: 17-19 turns/s this way, about 13 with one call.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    ordered = [texts[i] for i in order]
    parts = [await embed(ordered[i : i + EMBED_CHUNK]) for i in range(0, len(ordered), EMBED_CHUNK)]
    embedded = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])
    vectors = np.empty_like(embedded)
    vectors[order] = embedded
    return vectors


async def encode(embed: Embed, texts: list[str]) -> np.ndarray:
    """One unit vector per text (see the module docstring), embedded in one pass."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    parts = [sentences(t) for t in texts]
    flat = list(texts) + [s for p in parts for s in p]
    vectors = await _embed_by_length(embed, flat)
    out = vectors[: len(texts)].copy()
    at = len(texts)
    for i, p in enumerate(parts):
        if not p:
            continue
        mean = vectors[at : at + len(p)].mean(axis=0)
        at += len(p)
        blend = (1.0 - SENTENCE_WEIGHT) * out[i] + SENTENCE_WEIGHT * mean
        out[i] = blend / max(float(np.linalg.norm(blend)), 1e-12)
    return out
