"""Okapi BM25 over one owner's memories, updated incrementally.

Tokenizer: lowercase, split on anything that is not a letter or digit
(apostrophes join contractions: "I'm" -> "im"), drop English stopwords (negations are kept: they matter for
near-duplicate detection), then
a light suffix stemmer (plurals, -ing, -ed, -ly) so "allergies" and
"allergy", "cooking" and "cook" meet.

:meth:`BM25Index.scores` returns BM25 normalised by the best score the query
could reach (every query term matched with saturated term frequency), so
values are in ``[0, 1)`` and comparable across owners and corpus sizes: it
reads as "how much of the query's information this memory covers".
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves im ive id ill youre please tell
    let get got also really user assistant""".split()
)


def stem(word: str) -> str:
    """A deliberately light stemmer: strip a few common English suffixes."""
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    for suffix in ("ing", "edly", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return _undouble(word[: -len(suffix)])
    if word.endswith("es") and word[-3:-2] in ("s", "x", "z", "h"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _undouble(word: str) -> str:
    if len(word) >= 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    words = (w.replace("'", "") for w in _WORD.findall(text.lower()))
    return [stem(w) for w in words if w and w not in STOPWORDS]


class BM25Index:
    """An incremental inverted index with BM25 scoring."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._postings: dict[str, dict[str, int]] = {}
        self._lengths: dict[str, int] = {}
        self._terms: dict[str, tuple[str, ...]] = {}
        self._total = 0
        # term -> the change count when its postings last changed (memory/postings.py caches by it)
        self._changed: dict[str, int] = {}
        self._changes = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self._lengths

    def upsert(self, doc_id: str, text: str) -> None:
        self.remove(doc_id)
        counts = Counter(tokenize(text))
        self._changes += 1
        for term, tf in counts.items():
            self._postings.setdefault(term, {})[doc_id] = tf
            self._changed[term] = self._changes
        length = sum(counts.values())
        self._lengths[doc_id] = length
        self._terms[doc_id] = tuple(counts)
        self._total += length

    def remove(self, doc_id: str) -> None:
        length = self._lengths.pop(doc_id, None)
        if length is None:
            return
        self._total -= length
        self._changes += 1
        for term in self._terms.pop(doc_id, ()):
            self._changed[term] = self._changes
            docs = self._postings.get(term)
            if docs is not None:
                docs.pop(doc_id, None)
                if not docs:
                    del self._postings[term]

    def terms(self, doc_id: str) -> tuple[str, ...] | None:
        """The distinct index terms of a document (None: not indexed)."""
        return self._terms.get(doc_id)

    def changed(self, term: str) -> int:
        """When the term's postings last changed (a count of changes; 0: not since the index was made)."""
        return self._changed.get(term, 0)

    @property
    def changes(self) -> int:
        return self._changes

    def postings(self, term: str) -> Mapping[str, int]:
        """The documents holding ``term``, with its frequency in each."""
        return self._postings.get(term, {})

    def vocabulary(self) -> list[str]:
        """Every indexed term (their postings are not read)."""
        return list(dict.keys(self._postings))

    def length(self, doc_id: str) -> int:
        """The document's length in index terms."""
        return self._lengths[doc_id]

    def average_length(self) -> float:
        return self._total / len(self._lengths) or 1.0

    def document_frequency(self, term: str) -> int:
        return len(self._postings.get(term, ()))

    def idf(self, term: str) -> float:
        """The term's inverse document frequency (rarer terms weigh more)."""
        return self._idf(term)

    def _idf(self, term: str) -> float:
        n = len(self._lengths)
        df = len(self._postings.get(term, ()))
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def scores(self, query: str | Iterable[str]) -> dict[str, float]:
        """Normalised BM25 in ``[0, 1)`` of every document matching the query."""
        terms = tokenize(query) if isinstance(query, str) else list(query)
        if not terms or not self._lengths:
            return {}
        avg = self._total / len(self._lengths) or 1.0
        ideal = 0.0
        raw: dict[str, float] = {}
        for term in terms:
            idf = self._idf(term)
            ideal += idf * (self.k1 + 1.0)
            for doc_id, tf in self._postings.get(term, {}).items():
                norm = self.k1 * (1.0 - self.b + self.b * self._lengths[doc_id] / avg)
                raw[doc_id] = raw.get(doc_id, 0.0) + idf * tf * (self.k1 + 1.0) / (tf + norm)
        if ideal <= 0.0:
            return {}
        return {doc_id: min(value / ideal, 1.0) for doc_id, value in raw.items()}
