"""A local Hugging Face transformers model (provider ``hf``), with prefix KV reuse.

Behaviour:

* **Model.** ``upstream.hf.model_path``: a directory with ``config.json``,
  weights and a tokenizer (``save_pretrained`` output). Loaded with
  ``local_files_only`` (never from a hub) on first use or through
  :meth:`warmup`, on ``device`` (``auto``: CUDA when available) in ``dtype``
  (``auto``: float32 on CPU, bfloat16 on CUDA, float16 where bf16 is not
  supported).
* **Prompt.** The tokenizer's chat template (``add_generation_prompt``),
  tokenized with ``add_special_tokens=False`` as ``apply_chat_template`` does
  (templates write their own BOS). A tokenizer without a template gets a
  plain ChatML one. Text parts of list contents are joined; ``developer``
  is ``system``.
* **Generation** is a loop written here (greedy at ``temperature: 0``,
  otherwise temperature + top_p sampling, ``seed`` honoured), so streaming is
  token by token: it runs on the one worker thread (an
  :class:`adapters.worker_thread.ModelWorker`, as for the llama.cpp upstream:
  requests served in arrival order, a ``model`` is never entered twice at
  once) and hands chunks to the event loop as they come (errors raise before
  the first chunk, closing the iterator stops generation at the next token,
  ``include_usage`` gets a usage chunk). It stops at the model's EOS /
  end-of-turn tokens, at ``stop`` strings (cut from the text) or at
  ``max_completion_tokens`` / ``max_tokens`` (default ``hf.max_tokens``,
  never past the model's context).
* **Activation memory.** The stable prefix is ``[system prompt + core
  block]``: the formatted prompt up to the end of the core block
  (``Activation.marker``), tokenized on its own and kept only as far as it
  agrees with the tokens of the full prompt (a BPE merge across the boundary
  shortens it by a token, never changes it). Its ``DynamicCache`` is built
  once per (model fingerprint, owner, core version, chat template, prefix
  text) and kept in a byte-capped RAM LRU; every request works on a
  ``copy.deepcopy`` of it, so the stored cache is never mutated (the forward
  pass appends to the cache object it is given). A newer core version of an
  owner drops their older entries at once and a cache built against an old
  version is never stored. ``activation.kv`` says ``hit`` / ``miss`` /
  ``off``; ``restore_ms`` is the copy time. On a hit only the tokens after
  the prefix are prefilled; greedy output is that of a cold prefill.
* **Unsupported** (400 naming the parameter): ``n`` > 1, ``logprobs``,
  ``tools`` (no tool-call parsing), ``response_format`` other than ``text``.
  Penalties and ``logit_bias`` are ignored.
* All output goes through :mod:`adapters.normalize`.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from adapters.base import Activation, CallContext, configured_models
from adapters.errors import UpstreamError, UpstreamUnavailable
from adapters.kvcache import CoreVersions, cache_key, common_prefix
from adapters.lru import ByteLRU
from adapters.normalize import content_text, normalize_completion
from adapters.settings import UpstreamSettings
from adapters.worker_thread import ChunkSink, ModelWorker, include_usage

log = logging.getLogger(__name__)

NAME = "hf"  # the provider name, and this backend's section under ``upstream:``
T = TypeVar("T")

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# End-of-turn tokens of common chat formats, also treated as EOS when the vocabulary has them.
_END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")


# ------------------------------------------------------------------ KV cache


@dataclass
class PrefixEntry:
    key: str
    owner: str
    core_version: str
    tokens: tuple[int, ...]
    cache: Any  # a transformers DynamicCache holding exactly ``tokens``; never mutated
    nbytes: int = 0


def cache_nbytes(cache: Any) -> int:
    """Bytes held by the key/value tensors of a transformers cache."""
    total = 0
    for layer in getattr(cache, "layers", None) or []:
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if tensor is not None and hasattr(tensor, "numel"):
                total += tensor.numel() * tensor.element_size()
    return total


class PrefixCache:
    """Byte-capped RAM LRU of prefix caches, invalidated by owner core version."""

    def __init__(self, ram_bytes: int) -> None:
        self._ram: ByteLRU[PrefixEntry] = ByteLRU(ram_bytes)
        self._versions = CoreVersions()
        self._lock = threading.RLock()
        self.stats = {"hits": 0, "misses": 0, "evictions": 0, "invalidations": 0}

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._ram.nbytes

    def __len__(self) -> int:
        return len(self._ram)

    def observe(self, owner: str, core_version: str) -> None:
        """An owner's current core version: older entries of theirs are dropped."""
        with self._lock:
            self.stats["invalidations"] += self._versions.observe(owner, core_version, self._ram) or 0

    def forget(self, owner: str) -> int:
        """Drop every entry of ``owner``; how many."""
        with self._lock:
            self._versions.forget(owner)
            return self._ram.remove_where(lambda e: e.owner == owner)

    def get(self, key: str, owner: str, core_version: str) -> PrefixEntry | None:
        with self._lock:
            entry = self._ram.get(key, lambda e: e.owner == owner and e.core_version == core_version)
            if entry is None:
                self.stats["misses"] += 1
                return None
            self.stats["hits"] += 1
            return entry

    def put(self, entry: PrefixEntry) -> None:
        with self._lock:
            if self._versions.is_stale(entry):
                return  # built against a core that has changed since: never kept
            if entry.nbytes > self._ram.max_bytes:
                return  # too big to keep: evicting the others for it would be in vain
            self.stats["evictions"] += self._ram.put(entry.key, entry)

    def clear(self) -> None:
        with self._lock:
            self._ram.clear()


# ------------------------------------------------------------------ requests


@dataclass
class HFRequest:
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


def build_request(body: dict[str, Any], settings: HFSettings) -> HFRequest:
    """The generation parameters of an OpenAI request body (400 for what is unsupported)."""
    n = body.get("n")
    if n is not None and n != 1:
        raise _invalid("The local model supports only n=1.", param="n")
    if body.get("logprobs"):
        raise _invalid("The local model does not return logprobs.", param="logprobs")
    if body.get("tools"):
        raise _invalid("The local Hugging Face model does not support tools.", param="tools")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise _invalid("The local Hugging Face model supports only response_format text.", param="response_format")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must be a non-empty array.", param="messages")
    prepared = []
    for message in messages:
        if not isinstance(message, dict):
            raise _invalid("Each message must be an object.", param="messages")
        role = "system" if message.get("role") == "developer" else str(message.get("role") or "user")
        prepared.append({"role": role, "content": content_text(message.get("content"))})
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str) and s]
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or settings.max_tokens
    return HFRequest(
        messages=prepared,
        max_tokens=max(1, int(max_tokens)),
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        seed=body.get("seed") if isinstance(body.get("seed"), int) else None,
        stop=stops,
    )


# ------------------------------------------------------------------ upstream


class HFSettings(BaseModel):
    """A local Hugging Face transformers model directory (provider ``hf``)."""

    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None  # a directory with config.json, weights and tokenizer (required)
    model_alias: str = "hf-local"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto: float32 on CPU, bfloat16 on CUDA
    max_tokens: int = 256  # default completion length when the client sends none
    kv_cache: bool = True  # activation memory: reuse the KV cache of [system + core memories]
    kv_cache_ram_mb: int = 1024  # RAM cap of the prefix KV LRU


class HFUpstream:
    """An :class:`adapters.base.Upstream` backed by an in-process transformers model."""

    name = NAME

    def __init__(self, settings: UpstreamSettings, data_dir: Path) -> None:
        self.settings = settings
        self.hf = settings.options(NAME, HFSettings)
        self.data_dir = Path(data_dir)
        self._worker = ModelWorker("hf", "The local model has been shut down.")
        self._model: Any = None  # worker thread only
        self._tokenizer: Any = None
        self._device: Any = None
        self._eos: set[int] = set()
        self._context = 0
        self._fingerprint = ""
        self._template = ""
        self.kv: PrefixCache | None = PrefixCache(self.hf.kv_cache_ram_mb * 1024 * 1024) if self.hf.kv_cache else None
        self.load_seconds: float | None = None
        self.last_completion_ids: list[int] = []  # the last request's generated token ids (tests, benchmarks)

    # ------------------------------------------------------------ protocol


    @property
    def kv_bytes(self) -> int:
        """Bytes of prefix caches held in RAM (0 with the cache off)."""
        return self.kv.used_bytes if self.kv is not None else 0

    async def warmup(self) -> None:
        await self._on_worker(self._load)

    async def chat(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        request = build_request(body, self.hf)
        raw = await self._on_worker(self._complete, request, ctx.activation)
        return normalize_completion(raw, model=self._reported_model(body))

    async def open_stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        request = build_request(body, self.hf)
        return await self._worker.stream(
            self._stream_worker,
            request,
            ctx.activation,
            model=self._reported_model(body),
            include_usage=include_usage(body),
        )

    async def list_models(self) -> list[dict[str, Any]]:
        return configured_models(self.settings.models or [self.hf.model_alias])

    async def forget(self, owner: str) -> int:
        """Drop ``owner``'s cached prefixes (RAM only: this backend keeps no files); how many."""
        return self.kv.forget(owner) if self.kv is not None else 0

    async def aclose(self) -> None:
        if not await self._worker.aclose():
            return
        self._model = self._tokenizer = None
        if self.kv is not None:
            self.kv.clear()

    # ----------------------------------------------------------- internals

    async def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._worker.call(fn, *args)

    def _reported_model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        return model if isinstance(model, str) and model else self.hf.model_alias

    def _complete(self, request: HFRequest, activation: Activation | None) -> dict[str, Any]:
        pieces: list[str] = []
        finish, prompt_tokens, completion_tokens = self._generate(request, activation, pieces.append, None)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(pieces)}, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _stream_worker(self, sink: ChunkSink, request: HFRequest, activation: Activation | None) -> None:
        """Worker thread: generate into ``sink`` (errors are handed to it by the worker)."""
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        started = False

        def emit(text: str) -> None:
            nonlocal started
            if not started:
                started = True
                sink.put(chunk({"role": "assistant", "content": ""}))
            if text:
                sink.put(chunk({"content": text}))

        finish, prompt_tokens, completion_tokens = self._generate(request, activation, emit, sink.cancelled)
        if sink.cancelled.is_set():
            sink.stop()
            return
        emit("")
        sink.put(chunk({}, finish))
        sink.done({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens})

    def _load(self) -> Any:
        """Worker thread: the model (loaded the first time)."""
        if self._model is not None:
            return self._model
        started = time.perf_counter()
        if not self.hf.model_path:
            raise UpstreamUnavailable("upstream.hf.model_path is not set: point it at a local model directory.")
        path = Path(self.hf.model_path).expanduser()
        if not (path / "config.json").is_file():
            raise UpstreamUnavailable(f"Hugging Face model directory not found (no config.json): {path}")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.hf.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.hf.dtype
        if dtype == "auto":
            dtype = "float32" if device == "cpu" else ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = CHATML_TEMPLATE
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype))
        model.to(device).eval()  # type: ignore[arg-type]  # transformers types .to() through a decorator mypy misreads
        self._device = torch.device(device)
        self._tokenizer = tokenizer
        self._eos = _eos_ids(model, tokenizer)
        self._context = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        self._template = str(tokenizer.chat_template)
        self._fingerprint = model_fingerprint(path, f"{device}|{dtype}")
        self._model = model
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s on %s (%s) in %.2fs", path, device, dtype, self.load_seconds)
        return model

    def _prompt(self, messages: list[dict[str, Any]]) -> tuple[str, list[int]]:
        text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return text, list(ids)

    def _prefix(self, model: Any, text: str, ids: list[int], activation: Activation | None) -> tuple[Any, int]:
        """Worker thread: a private copy of the prefix cache and how many prompt tokens it holds."""
        if activation is None:
            return None, 0
        activation.kv = "off"
        if self.kv is None or not activation.marker:
            return None, 0
        cut = text.find(activation.marker)
        if cut < 0:
            return None, 0
        prefix_text = text[: cut + len(activation.marker)]
        prefix_ids = self._tokenizer(prefix_text, add_special_tokens=False)["input_ids"]
        # at least one prompt token must be prefilled: its logits start the reply
        n = min(common_prefix(prefix_ids, ids), len(ids) - 1)
        if n <= 0:
            return None, 0
        owner, version = activation.owner, activation.core_version
        key = cache_key(self._fingerprint, owner, version, self._template, prefix_text)
        self.kv.observe(owner, version)
        entry = self.kv.get(key, owner, version)
        if entry is not None:
            usable = min(common_prefix(entry.tokens, ids), len(ids) - 1)
            if usable > 0:
                started = time.perf_counter()
                cache = copy.deepcopy(entry.cache)
                try:
                    if usable < len(entry.tokens):
                        cache.crop(usable - len(entry.tokens))  # the copy only
                except (ValueError, NotImplementedError, AttributeError):
                    cache = None  # a cache class that cannot be cropped: prefill cold
                if cache is not None:
                    activation.restore_ms = (time.perf_counter() - started) * 1000
                    activation.prefix_tokens = usable
                    activation.kv = "hit"
                    return cache, usable
                return None, 0
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            model(input_ids=torch.tensor([ids[:n]], device=self._device), past_key_values=cache, use_cache=True, logits_to_keep=1)
        self.kv.put(PrefixEntry(key, owner, version, tuple(ids[:n]), cache, cache_nbytes(cache)))
        activation.prefix_tokens = n
        activation.kv = "miss"
        return copy.deepcopy(cache), n

    def _generate(
        self,
        request: HFRequest,
        activation: Activation | None,
        emit: Callable[[str], None],
        cancelled: threading.Event | None,
    ) -> tuple[str, int, int]:
        """Worker thread: generate, calling ``emit`` with each new piece of text.

        Returns (finish_reason, prompt tokens, completion tokens).
        """
        import torch

        model = self._load()
        text, ids = self._prompt(request.messages)
        if self._context and len(ids) >= self._context:
            raise ValueError(
                f"The prompt ({len(ids)} tokens) does not fit the model's context window ({self._context} tokens)."
            )
        budget = request.max_tokens if not self._context else min(request.max_tokens, self._context - len(ids))
        cache, start = self._prefix(model, text, ids, activation)
        generator = None
        if request.seed is not None:
            generator = torch.Generator(device="cpu").manual_seed(request.seed)
        decoder = _TextDecoder(self._tokenizer, request.stop)
        generated: list[int] = []
        finish = "length"
        with torch.no_grad():
            out = model(
                input_ids=torch.tensor([ids[start:]], device=self._device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = out.past_key_values
            while len(generated) < budget:
                if cancelled is not None and cancelled.is_set():
                    break
                token = _pick(out.logits[0, -1], request, generator)
                if token in self._eos:
                    finish = "stop"
                    break
                generated.append(token)
                piece, stopped = decoder.add(generated)
                emit(piece)
                if stopped:
                    finish = "stop"
                    break
                if len(generated) >= budget:
                    break
                out = model(
                    input_ids=torch.tensor([[token]], device=self._device),
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
        emit(decoder.flush())
        self.last_completion_ids = generated
        return finish, len(ids), len(generated)


class _TextDecoder:
    """Incremental detokenization with ``stop`` strings: emits only settled text."""

    def __init__(self, tokenizer: Any, stops: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.emitted = 0
        self.text = ""
        self.stopped = False

    def add(self, tokens: list[int]) -> tuple[str, bool]:
        self.text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for stop in self.stops:
            at = self.text.find(stop)
            if at >= 0:
                self.text = self.text[:at]
                self.stopped = True
        if self.stopped:
            return self._take(len(self.text)), True
        end = len(self.text)
        if self.text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its next byte
            end = len(self.text.rstrip("\ufffd"))
        for stop in self.stops:  # hold back a tail that may become a stop string
            for k in range(min(len(stop) - 1, end), 0, -1):
                if self.text[end - k : end] == stop[:k]:
                    end -= k
                    break
        return self._take(end), False

    def flush(self) -> str:
        return self._take(len(self.text))

    def _take(self, end: int) -> str:
        if end <= self.emitted:
            return ""
        piece, self.emitted = self.text[self.emitted : end], end
        return piece


def _pick(logits: Any, request: HFRequest, generator: Any) -> int:
    import torch

    if request.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / request.temperature, dim=-1)
    if request.top_p < 1.0:
        ordered, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(ordered, dim=-1) - ordered < request.top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in _END_OF_TURN if t in vocab)
    return ids


def model_fingerprint(path: Path, extra: str = "") -> str:
    """Identity of the weights, tokenizer and numeric setup a KV cache belongs to."""
    import transformers

    parts = [str(path.resolve()), transformers.__version__, extra]
    for file in sorted(path.iterdir()):
        if file.is_file():
            stat = file.stat()
            parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:16]



def _invalid(message: str, *, param: str | None = None) -> UpstreamError:
    return UpstreamError(message, status=400, type="invalid_request_error", param=param)


def create(settings: UpstreamSettings, data_dir: Path) -> HFUpstream:
    return HFUpstream(settings, data_dir)
