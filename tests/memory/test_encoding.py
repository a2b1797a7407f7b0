"""A memory's vector blends its whole text with its sentences (memory/encoding.py)."""

from __future__ import annotations

import asyncio

import numpy as np

from memory.encoding import MAX_SENTENCES, SENTENCE_WEIGHT, encode, sentences


def test_sentences_keep_the_speaker_label() -> None:
    assert sentences("Melanie: Thanks! I signed up for pottery yesterday. How are the kids?") == [
        "Melanie: Thanks!", "Melanie: I signed up for pottery yesterday.", "Melanie: How are the kids?"
    ]
    assert sentences("User: I moved to Lisbon. It is sunny.\nAssistant: Nice city! Enjoy it.") == [
        "User: I moved to Lisbon.", "User: It is sunny.", "Assistant: Nice city!", "Assistant: Enjoy it."
    ]


def test_one_sentence_has_no_parts_and_long_texts_are_capped() -> None:
    assert sentences("Caroline: I went to a support group yesterday.") == []
    assert sentences("ok. yes.") == []  # fragments of three characters or fewer are not sentences
    long = " ".join(f"Sentence number {i} is here." for i in range(50))
    parts = sentences(long)
    assert len(parts) == MAX_SENTENCES and parts[-1].startswith("Sentence number 31")


def test_encode_blends_whole_and_mean_of_sentences() -> None:
    table = {
        "A: one thing. two thing.": np.array([1.0, 0.0, 0.0]),
        "A: one thing.": np.array([0.0, 1.0, 0.0]),
        "A: two thing.": np.array([0.0, 0.0, 1.0]),
        "B: single.": np.array([0.6, 0.8, 0.0]),
    }
    seen: list[list[str]] = []

    async def embed(texts: list[str]) -> np.ndarray:
        seen.append(list(texts))
        return np.stack([table[t] for t in texts]).astype(np.float32)

    out = asyncio.run(encode(embed, ["A: one thing. two thing.", "B: single."]))
    assert len(seen) == 1  # one batch for the texts and all their sentences
    w = SENTENCE_WEIGHT
    blend = np.array([1 - w, w / 2, w / 2])
    assert np.allclose(out[0], blend / np.linalg.norm(blend))
    assert np.allclose(out[1], table["B: single."])  # one sentence: the whole-text vector
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
