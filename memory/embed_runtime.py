"""The runtimes an embedding lane can run on (see :mod:`memory.embedder`).

Every runtime turns texts into L2-normalised float32 vectors of the same
model (mean pooling over at most 256 word pieces); they differ in speed and
in the last digits of the vectors (``memproxy bench embed`` measures both).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from memory.priority import lower_this_thread

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

RUNTIMES = ("auto", "onnx", "onnx-int8", "openvino", "torch", "torch-bf16")
MAX_SEQ_LENGTH = 256  # the model's own limit (sentence_bert_config.json)
# Rows x padded length per ONNX call: bounds the attention tensors (and so
# the runtime's peak memory) of a batch of long texts; short texts still go
# ``batch_size`` at a time.
BATCH_TOKENS = 4096
# A batch takes one more text while its padding stays under PADDING of its word
# pieces plus SLACK (a batch's own overhead is worth about that many word pieces).
PADDING = 0.2
SLACK = 64


class Runtime(Protocol):
    name: str

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), 384)`` float32, each row L2-normalised."""
        ...

    def token_states(self, sequences: list[list[int]]) -> list[np.ndarray]:
        """The model's last hidden states, one ``(len(ids), 384)`` float32 array per
        sequence of word-piece ids (each with its ``[CLS]``/``[SEP]``, at most 256)."""
        ...


def batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped shortest first into batches of at most ``batch_size`` rows and
    ``BATCH_TOKENS`` padded word pieces, a batch growing only while its padding stays
    small (at most ``PADDING`` of its word pieces plus ``SLACK``): one batch of a long
    and many short texts pads them all to the long one."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    out: list[list[int]] = []
    start = 0
    while start < len(order):
        end = start + 1
        real = lengths[order[start]]
        while end < len(order) and end - start < batch_size:
            width = lengths[order[end]]
            padded = (end - start + 1) * width
            if padded > BATCH_TOKENS or padded > (1 + PADDING) * (real + width) + SLACK:
                break
            real += width
            end += 1
        out.append(order[start:end])
        start = end
    return out


def _shares(sequences: list[list[int]], groups: list[list[int]], workers: int) -> list[list[list[int]]]:
    """``groups`` (batches) dealt to at most ``workers`` shares of about equal padded size."""
    shares: list[list[list[int]]] = [[] for _ in range(min(workers, len(groups)))]
    sizes = [0] * len(shares)
    for rows in sorted(groups, key=lambda g: -len(g) * max(len(sequences[i]) for i in g)):
        k = sizes.index(min(sizes))
        shares[k].append(rows)
        sizes[k] += len(rows) * max(len(sequences[i]) for i in rows)
    return shares


Run = Callable[[int, list[list[int]], list[list[int]], list[np.ndarray]], None]


def side_by_side(sequences: list[list[int]], batch_size: int, workers: int,
                 pool: ThreadPoolExecutor | None, run: Run) -> list[np.ndarray]:
    """The last hidden states of ``sequences``, their batches dealt to ``workers`` shares:
    share ``k`` runs as ``run(k, sequences, share, out)``, the first on the calling thread
    and the others on ``pool`` at the same time."""
    out: list[np.ndarray] = [np.zeros((0, 0), dtype=np.float32)] * len(sequences)
    shares = _shares(sequences, batches([len(s) for s in sequences], batch_size), workers)
    if pool is None or len(shares) < 2:
        for share in shares:
            run(0, sequences, share, out)
        return out
    pending = [pool.submit(run, k, sequences, share, out) for k, share in enumerate(shares[1:], start=1)]
    run(0, sequences, shares[0], out)
    for future in pending:
        future.result()
    return out


def _mean_pooled(tokenizer: Tokenizer, token_states: Callable[[list[list[int]]], list[np.ndarray]],
                 texts: list[str]) -> np.ndarray:
    """sentence-transformers' own encode: the mean of the token states, normalised."""
    states = token_states([e.ids for e in tokenizer.encode_batch(texts)])
    if not states:
        return np.zeros((0, 0), dtype=np.float32)
    return _normalised(np.stack([s.mean(axis=0) for s in states]))


def _padded(sequences: list[list[int]], rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(sequences[i]) for i in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, i in enumerate(rows):
        ids[r, : len(sequences[i])] = sequences[i]
        mask[r, : len(sequences[i])] = 1
    return ids, mask


def has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has AMX bfloat16 tiles (Linux; False where unknown)."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        return False
    return False


def resolve(lane: str, runtime: str) -> str:
    """The concrete runtime ``runtime`` means on ``lane`` (``auto`` resolved)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown embedding runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if runtime != "auto":
        return runtime
    return "onnx" if lane == "query" else "openvino"


def torch_fallback() -> str:
    """The runtime ``auto`` falls back to where its choice cannot load: torch, under
    bfloat16 autocast on a CPU with AMX."""
    return "torch-bf16" if has_amx() else "torch"


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class _BatchedRuntime:
    """What the torch and OpenVINO runtimes share: their own tokenizer, batches dealt to
    ``_workers`` side by side (:func:`side_by_side`), mean pooling; ``_run`` is theirs."""

    _batch_size: int
    _workers: int
    _pool: ThreadPoolExecutor | None
    _tokenizer: Tokenizer

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def encode(self, texts: list[str]) -> np.ndarray:
        return _mean_pooled(self._tokenizer, self.token_states, texts)

    def token_states(self, sequences: list[list[int]]) -> list[np.ndarray]:
        return side_by_side(sequences, self._batch_size, self._workers, self._pool, self._run)

    def _run(self, worker: int, sequences: list[list[int]], share: list[list[int]], out: list[np.ndarray]) -> None:
        raise NotImplementedError


class TorchRuntime(_BatchedRuntime):
    """The sentence-transformers model on torch (its transformer; tokenising, batching
    and mean pooling done here as in :class:`OnnxRuntime`); ``bf16``: under bfloat16
    autocast (on AMX tiles where the CPU has them). Autocast rather than bfloat16 weights:
    those were ~7 % faster in ``memproxy bench embed`` and their vectors moved by an ulp
    on an export -> import round trip through the store (tests/portable); that drift is
    Chroma renormalising each vector it stores (not idempotent in float32 for ~10 % of
    vectors, whatever made them), so it is no longer a reason against them."""

    def __init__(self, model_path: str, *, batch_size: int, threads: int | None, bf16: bool) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        # More than one thread: that many batches run side by side, each on one intra-op
        # thread. torch's intra-op pool is process-wide and its threads spin at every op's
        # barrier: two of them on a shared 2-core machine ran LoCoMo turns at 1/6 the speed
        # of one, while two forward passes side by side ran at 1.3x (a one-off measurement).
        self._workers = max(1, threads or 1)
        if threads is not None:
            torch.set_num_threads(1 if self._workers > 1 else threads)
        self._pool = (ThreadPoolExecutor(self._workers - 1, thread_name_prefix="memproxy-embed-bulk",
                                         initializer=_one_thread_below) if self._workers > 1 else None)
        self.name = "torch-bf16" if bf16 else "torch"
        self._bf16 = bf16
        self._batch_size = batch_size
        self._model: SentenceTransformer = SentenceTransformer(model_path, device="cpu")
        self._tokenizer = _tokenizer(model_path)  # one runtime per lane: its thread's own

    def _run(self, _worker: int, sequences: list[list[int]], share: list[list[int]], out: list[np.ndarray]) -> None:
        import torch

        transformer: Any = self._model[0].auto_model  # the Hugging Face BertModel
        for rows in share:
            ids, mask = (torch.from_numpy(a) for a in _padded(sequences, rows))
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self._bf16 else contextlib.nullcontext()
            with torch.inference_mode(), autocast:
                hidden = transformer(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
            states = hidden.last_hidden_state.float().numpy()
            for r, i in enumerate(rows):
                out[i] = states[r, : len(sequences[i])]


def _one_thread_below() -> None:
    """A side-by-side bulk worker: one intra-op thread (OpenMP's setting is per thread:
    set where the thread runs), at the bulk lane's lower priority."""
    import torch

    torch.set_num_threads(1)
    lower_this_thread()


def _tokenizer(model_path: str) -> Tokenizer:
    from tokenizers import Tokenizer

    root = Path(model_path)
    tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
    limit = MAX_SEQ_LENGTH
    config = root / "sentence_bert_config.json"
    if config.exists():
        limit = int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", limit))
    tokenizer.enable_truncation(max_length=limit)
    tokenizer.no_padding()
    return tokenizer


def _session(path: Path, threads: int | None) -> onnxruntime.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_cpu_mem_arena = False  # no arena held at the size of the largest batch ever seen
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntime:
    """ONNX Runtime on the exported model; mean pooling and normalisation in numpy."""

    def __init__(self, name: str, session: onnxruntime.InferenceSession, tokenizer: Tokenizer, *,
                 batch_size: int, model_path: str, threads: int | None) -> None:
        self.name = name
        self.threads = threads
        self.session = session
        self._tokenizer = tokenizer
        self._batch_size = batch_size
        self._model_path = model_path

    @classmethod
    def load(cls, name: str, model_path: str, *, batch_size: int, threads: int | None,
             cache_dir: str | Path | None) -> OnnxRuntime:
        from memory.onnx_export import onnx_model

        path = onnx_model(model_path, "int8" if name == "onnx-int8" else "fp32", cache_dir)
        return cls(name, _session(path, threads), _tokenizer(model_path), batch_size=batch_size,
                   model_path=model_path, threads=threads)

    def sibling(self, batch_size: int) -> OnnxRuntime:
        """The same session (thread-safe to run) with a tokenizer of its own."""
        return OnnxRuntime(self.name, self.session, _tokenizer(self._model_path), batch_size=batch_size,
                           model_path=self._model_path, threads=self.threads)

    def token_states(self, sequences: list[list[int]]) -> list[np.ndarray]:
        out: list[np.ndarray] = [np.zeros((0, 0), dtype=np.float32)] * len(sequences)
        for rows in batches([len(s) for s in sequences], self._batch_size):
            ids, mask = _padded(sequences, rows)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            states = np.asarray(self.session.run(None, feed)[0], dtype=np.float32)
            for r, i in enumerate(rows):
                out[i] = states[r, : len(sequences[i])]
        return out

    def encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        out = np.empty((len(texts), 0), dtype=np.float32)
        for rows in batches(lengths, self._batch_size):
            width = max(lengths[i] for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, : lengths[i]] = encodings[i].ids
                mask[r, : lengths[i]] = 1
            hidden = self.session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            if out.shape[1] == 0:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = _normalised(pooled)
        return out


class OpenVinoRuntime(_BatchedRuntime):
    """OpenVINO on the exported ONNX file (the same file as :class:`OnnxRuntime`), in
    bfloat16 on a CPU with AMX (its AMX kernels), else in fp32; tokenising, batching and
    mean pooling as in :class:`TorchRuntime`. Per batch it has less overhead than eager
    torch: LoCoMo turns 16 at a time ~1.6x, LongMemEval exchanges ~1.25x the vectors
    per CPU second of ``torch-bf16``, at the same cosine to torch fp32 (``memproxy bench
    embed --runtimes torch-bf16,openvino``, docs/benchmarks.md).

    Each worker has a one-thread compiled model and infer request of its own: a request
    runs on the thread that calls it (so at the bulk lane's lower priority), and more
    than one worker means that many batches side by side, as for torch."""

    def __init__(self, model_path: str, *, batch_size: int, threads: int | None,
                 cache_dir: str | Path | None) -> None:
        import openvino

        from memory.onnx_export import onnx_model

        path = onnx_model(model_path, "fp32", cache_dir)
        self.name = "openvino"
        self.precision = "bf16" if has_amx() else "f32"
        self._workers = max(1, threads or 1)
        core = openvino.Core()
        model = core.read_model(str(path))
        config = {"INFERENCE_NUM_THREADS": "1", "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": self.precision}
        self._requests = [core.compile_model(model, "CPU", config).create_infer_request()
                          for _ in range(self._workers)]
        self._pool = (ThreadPoolExecutor(self._workers - 1, thread_name_prefix="memproxy-embed-bulk",
                                         initializer=lower_this_thread) if self._workers > 1 else None)
        self._batch_size = batch_size
        self._tokenizer = _tokenizer(model_path)

    def _run(self, worker: int, sequences: list[list[int]], share: list[list[int]], out: list[np.ndarray]) -> None:
        request = self._requests[worker]
        for rows in share:
            ids, mask = _padded(sequences, rows)
            result = request.infer({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
            states = np.array(result[request.model_outputs[0]], dtype=np.float32)  # the request reuses its own
            for r, i in enumerate(rows):
                out[i] = states[r, : len(sequences[i])]


def load_runtime(name: str, model_path: str, *, batch_size: int, threads: int | None,
                 cache_dir: str | Path | None, shared: Iterable[Any] = ()) -> Runtime:
    """Load ``name`` (concrete, see :func:`resolve`); an ONNX session already
    loaded for another lane (in ``shared``) with the same threads is reused."""
    if name in ("onnx", "onnx-int8"):
        for other in shared:
            if isinstance(other, OnnxRuntime) and other.name == name and other.threads == threads:
                return other.sibling(batch_size)
        return OnnxRuntime.load(name, model_path, batch_size=batch_size, threads=threads, cache_dir=cache_dir)
    if name == "openvino":
        return OpenVinoRuntime(model_path, batch_size=batch_size, threads=threads, cache_dir=cache_dir)
    if name in ("torch", "torch-bf16"):
        return TorchRuntime(model_path, batch_size=batch_size, threads=threads, bf16=name == "torch-bf16")
    raise ValueError(f"unknown embedding runtime {name!r}")
