"""A memory's stored vector through one windowed pass (memory/late_chunking.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from memory.embedder import Embedder
from memory.encoding import encode, sentence_spans, sentences
from memory.late_chunking import LATE_FROM, LateChunker

SHORT = [
    "Melanie: Thanks! I signed up for pottery yesterday. How are the kids?",
    "Caroline: I went to a support group yesterday.",
    "User: I moved to Lisbon. It is sunny.\nAssistant: Nice city! Enjoy it.",
    "",
]
LONG = ("User: Which stretches help after a long run?\nAssistant: "
        + " ".join(f"Stretch number {i} works the {['calves', 'quads', 'hips'][i % 3]} for thirty seconds." for i in range(60)))


def test_sentence_spans_point_at_the_sentences() -> None:
    text = "  Melanie:  Thanks! I signed up.\r\n\nCaroline: Great. "
    spans = sentence_spans(text)
    assert [(s.label, text[s.start : s.end]) for s in spans] == [
        ("Melanie", "Thanks!"), ("Melanie", "I signed up."), ("Caroline", "Great.")
    ]
    assert sentences(text) == ["Melanie: Thanks!", "Melanie: I signed up.", "Caroline: Great."]


def test_short_texts_get_exactly_the_blend_and_long_ones_are_pooled_late(embedder: Embedder) -> None:
    chunker = LateChunker(embedder.model_path)
    calls: list[list[list[int]]] = []

    async def run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        reference = await encode(embedder.embed, [*SHORT, LONG])
        model = embedder._models.get("bulk") or embedder._load("bulk")

        def states(sequences: list[list[int]]) -> list[np.ndarray]:
            calls.append(sequences)
            return model.token_states(sequences)

        one = chunker.vectors([*SHORT, LONG], states)
        return reference, one, chunker.vectors([*SHORT, LONG] * 8, states)  # 40 texts: two forward calls

    reference, vectors, many = asyncio.run(run())
    assert all(len(s) <= 256 for s in calls[0])  # windows within the model's limit
    assert vectors.shape == (5, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (reference * vectors).sum(axis=1)
    assert float(cosines[:4].min()) > 0.9999  # at most LATE_FROM word pieces: the blend itself
    assert 0.8 < float(cosines[4]) < 0.999  # longer: the same text, sentences pooled from its one pass
    # sequences: each text's first window, then the short texts' sentences (3 + 4); the long
    # text's 61 sentences cost nothing beyond its one window
    assert len(calls[0]) == 4 + 1 + 7
    assert len(calls) == 3 and np.allclose(many, np.tile(vectors, (8, 1)), atol=1e-3)


def test_the_default_blend_recipe_embeds_every_sentence_on_its_own(embedder: Embedder) -> None:
    blend = Embedder(query_runtime="onnx", bulk_runtime="onnx", cache_dir=embedder.cache_dir)  # the default
    late = Embedder(query_runtime="onnx", bulk_runtime="onnx", cache_dir=embedder.cache_dir, recipe="late")
    try:
        async def run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            texts = [*SHORT, LONG]
            return await encode(blend.embed, texts), await blend.embed_memories(texts), await late.embed_memories(texts)

        reference, old, new = asyncio.run(run())
    finally:
        blend.close()
        late.close()
    assert float((reference * old).sum(axis=1).min()) > 0.99999
    assert float((reference[:4] * new[:4]).sum(axis=1).min()) > 0.99999
    assert float((reference[4] * new[4]).sum()) < 0.999
    with pytest.raises(ValueError, match="recipe"):
        Embedder(recipe="nope")
    assert LATE_FROM == 256
