"""Tokenizer and BM25 index units."""

from __future__ import annotations

from memory.lexical import BM25Index, tokenize


def test_tokenize_lowercases_strips_punctuation_stopwords_and_stems() -> None:
    assert tokenize("User: I'm ALLERGIC to Peanuts!!") == ["allergic", "peanut"]
    assert tokenize("Cooking dinners, running races") == ["cook", "dinner", "run", "race"]
    assert tokenize("allergies") == tokenize("allergy")
    assert tokenize("I do not like cats") == ["not", "like", "cat"]  # negation kept
    assert tokenize("the of and, to!") == []


def test_bm25_scores_are_normalised_and_incremental() -> None:
    index = BM25Index()
    index.upsert("a", "I work as a nurse at the hospital")
    index.upsert("b", "my dog is called Biscuit")
    index.upsert("c", "the nurse said my dog is healthy")
    scores = index.scores("nurse dog")
    assert set(scores) == {"a", "b", "c"}
    assert scores["c"] > scores["a"] and scores["c"] > scores["b"]
    assert all(0.0 < s < 1.0 for s in scores.values())
    assert index.scores("haiku autumn") == {}
    index.remove("c")
    assert set(index.scores("nurse dog")) == {"a", "b"} and len(index) == 2
    index.upsert("a", "a cellist in an orchestra")
    assert "a" not in index.scores("nurse")
    assert "a" in index.scores("orchestra cellist")
