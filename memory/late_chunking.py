"""Late chunking: a memory's sentence vectors pooled from one pass over its text.

The stored vector blends the whole text with its sentences
(:mod:`memory.encoding`). Embedding every sentence on its own costs a second
forward pass over the text, sentence by sentence (and the whole-text pass
reads only the first 256 word pieces anyway). Here the text is tokenised
once and run through the model in windows of at most 256 word pieces
(``[CLS]`` + 254 + ``[SEP]``); then

- the whole-text vector is the mean of the first window's token states,
  which is exactly what embedding the text on its own gives (the model
  truncates at 256 word pieces);
- each sentence's vector is the mean of the token states of its own word
  pieces, read in the context of the whole window (late chunking, Günther
  et al. 2024), so a sentence costs no forward pass of its own.

The blend, the sentence split, the cap on sentences and the one-sentence
case are those of :func:`memory.encoding.encode`; only where a sentence's
vector comes from differs. At most :data:`MAX_WINDOWS` windows are run per
text: sentences past them get no vector (the lexical index still reads the
whole text). Texts of at most :data:`LATE_FROM` word pieces (every LoCoMo
turn) keep the exact blend, their sentences embedded alone in the same call.

This is the ``late`` recipe (``memory.embedding_recipe``), not the default:
pooled in context, the sentence vectors lean towards the whole-text vector,
and recall drops. Measured (``memproxy bench longmemeval --limit 12
--no-baselines --embedding-recipe late|blend``, same sitting): evidence
recall 0.778 / 0.944 / 0.972 / 0.972 against 0.875 / 0.944 / 1.000 / 1.000 at
512 / 1,024 / 2,048 / 4,096 tokens, for 2.8x the exchanges per CPU second
through ``MemoryEngine.add`` (35.2 against 12.4 on main, one thread). Pooled
late for every text (no :data:`LATE_FROM`, two windows), LoCoMo dev recall
fell from 0.807 / 0.862 / 0.911 / 0.949 to 0.790 / 0.841 / 0.893 / 0.931
(abstention 96.2 % -> 95.3 %): about what the whole-text vector alone gives.
With ``late_from=None`` the same code is the ``blend`` recipe.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memory.encoding import MAX_SENTENCES, SENTENCE_WEIGHT, sentence_spans, sentences

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MAX_SEQ_LENGTH = 256  # the model's own limit (sentence_bert_config.json)
MAX_WINDOWS = 1  # windows of word pieces run per long text (see the module docstring)
LATE_FROM = 256  # a text of more word pieces than this has its sentences pooled late
# texts per forward call: the token states of a call are held until pooled (32 LongMemEval
# exchanges and their sentences: ~25k word pieces, ~40 MB of float32 states)
TEXTS_PER_CALL = 32

# one forward pass over many id sequences -> their last hidden states, one (len, dim) array each
TokenStates = Callable[[list[list[int]]], list[np.ndarray]]


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


class LateChunker:
    """Turns texts into stored vectors in one forward call per batch of texts. Holds a
    fast tokenizer, so one instance belongs to one thread.

    A text of at most ``late_from`` word pieces is encoded exactly as
    :func:`memory.encoding.encode` does (its sentences embedded each on its own,
    in the same call as the whole texts); a longer one has its sentences pooled
    late. ``late_from=None``: every text the first way (the ``blend`` recipe).
    """

    def __init__(self, model_path: str, *, late_from: int | None = LATE_FROM,
                 max_windows: int = MAX_WINDOWS) -> None:
        from tokenizers import Tokenizer

        root = Path(model_path)
        tokenizer: Tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        limit = MAX_SEQ_LENGTH
        config = root / "sentence_bert_config.json"
        if config.exists():
            limit = int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", limit))
        self._tokenizer = tokenizer
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise ValueError(f"the tokenizer of {model_path} has no [CLS]/[SEP]: not a BERT-style model")
        self._cls, self._sep = int(cls), int(sep)
        self.window = limit - 2  # word pieces of text per window
        self.late_from = late_from
        self.max_windows = max_windows

    def _sequence(self, ids: list[int]) -> list[int]:
        return [self._cls, *ids[: self.window], self._sep]

    def vectors(self, texts: Sequence[str], states: TokenStates) -> np.ndarray:
        """One unit vector per text (see the class docstring)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if len(texts) > TEXTS_PER_CALL:
            return np.concatenate([self.vectors(texts[i : i + TEXTS_PER_CALL], states)
                                   for i in range(0, len(texts), TEXTS_PER_CALL)])
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        late = [self.late_from is not None and len(e.ids) > self.late_from for e in encodings]
        parts = [[] if is_late else sentences(t) for t, is_late in zip(texts, late, strict=True)]
        flat = [p for ps in parts for p in ps]
        sequences: list[list[int]] = []
        first: list[tuple[int, int]] = []  # each text's windows in ``sequences``
        for encoding, is_late in zip(encodings, late, strict=True):
            ids = encoding.ids[: self.window * (self.max_windows if is_late else 1)]
            at = len(sequences)
            sequences += [self._sequence(ids[i:]) for i in range(0, max(len(ids), 1), self.window)]
            first.append((at, len(sequences)))
        alone = len(sequences)  # then every sentence of the other texts, on its own
        sequences += [self._sequence(e.ids) for e in self._tokenizer.encode_batch(flat, add_special_tokens=False)]
        hidden = states(sequences)
        out = np.empty((len(texts), np.asarray(hidden[0]).shape[-1]), dtype=np.float32)
        for i, text in enumerate(texts):
            lo, hi = first[i]
            whole = _unit(np.asarray(hidden[lo], dtype=np.float32).mean(axis=0))
            if late[i]:
                tokens = np.concatenate([np.asarray(w[1:-1], dtype=np.float32) for w in hidden[lo:hi]])
                vectors = self._pooled(text, [s for s, _ in encodings[i].offsets[: len(tokens)]], tokens)
            else:
                vectors = [_unit(np.asarray(h, dtype=np.float32).mean(axis=0))
                           for h in hidden[alone : alone + len(parts[i])]]
                alone += len(parts[i])
            if not vectors:
                out[i] = whole
                continue
            out[i] = _unit((1.0 - SENTENCE_WEIGHT) * whole + SENTENCE_WEIGHT * np.mean(vectors, axis=0))
        return out

    @staticmethod
    def _pooled(text: str, starts: list[int], tokens: np.ndarray) -> list[np.ndarray]:
        """Each sentence's vector pooled from ``tokens`` (``[]``: fewer than two sentences)."""
        spans = sentence_spans(text)
        if len(spans) < 2:
            return []
        ranges = [(bisect.bisect_left(starts, s.start), bisect.bisect_left(starts, s.end)) for s in spans]
        if len(ranges) > MAX_SENTENCES:  # as encoding.sentences: the rest is one last part
            ranges = ranges[: MAX_SENTENCES - 1] + [(ranges[MAX_SENTENCES - 1][0], ranges[-1][1])]
        return [_unit(tokens[lo:hi].mean(axis=0)) for lo, hi in ranges if hi > lo]
