"""The litellm upstream against a real local OpenAI-compatible server.

``openai/<model>`` + ``base_url`` routes litellm to
:class:`testing.fake_openai.FakeOpenAI`; everything runs on loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.base import CallContext, Upstream
from adapters.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from adapters.litellm_upstream import create, upstream_error
from adapters.settings import UpstreamSettings
from testing.fake_openai import MODELS, TOOL_ARGUMENTS, TOOL_CALL_ID, FakeOpenAI
from testing.serving import ServerThread, free_port
from tests.openai_schema import assert_valid

CTX = CallContext(request_id="req-1", client_api_key="client-key")
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as server:
        yield fake, f"{server.url}/v1"


@pytest.fixture()
def fake(fake_server: tuple[FakeOpenAI, str]) -> FakeOpenAI:
    fake_server[0].clear()
    return fake_server[0]


@pytest.fixture()
def base_url(fake_server: tuple[FakeOpenAI, str]) -> str:
    return fake_server[1]


def make(base_url: str, **settings: Any) -> Upstream:
    return create(UpstreamSettings(provider="litellm", base_url=base_url, **settings), data_dir=None)  # type: ignore[arg-type]


def ask(content: str, model: str = "openai/fake-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def collect(upstream: Upstream, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [chunk async for chunk in await upstream.open_stream(body, CTX)]


def test_non_streaming(fake: FakeOpenAI, base_url: str) -> None:
    upstream = make(base_url)
    assert isinstance(upstream, Upstream)
    asyncio.run(upstream.warmup())  # type: ignore[attr-defined]
    result = asyncio.run(upstream.chat(ask("hello", temperature=0.2, seed=3, user="u-1", metadata={"k": "v"}), CTX))
    assert_valid("CreateChatCompletionResponse", result)
    assert result["choices"][0]["message"]["content"] == "Echo: hello"
    [request] = fake.chat_requests()
    assert result["usage"] == request.sent[-1]["usage"], "usage passes through intact"
    sent, headers = request.body, request.headers
    assert sent["model"] == "fake-model"
    assert (sent["temperature"], sent["seed"], sent["user"], sent["metadata"]) == (0.2, 3, "u-1", {"k": "v"})
    assert headers["authorization"] == "Bearer client-key"
    assert headers["x-request-id"] == "req-1"


def test_configured_model_and_key_win(fake: FakeOpenAI, base_url: str) -> None:
    upstream = make(base_url, model="openai/gpt-4o-mini", api_key="server-key")
    asyncio.run(upstream.chat(ask("hi"), CTX))
    assert fake.requests[-1].body["model"] == "gpt-4o-mini"
    assert fake.requests[-1].headers["authorization"] == "Bearer server-key"


def test_client_cannot_steer_litellm(fake: FakeOpenAI, base_url: str) -> None:
    upstream = make(base_url, api_key="server-key")
    body = ask("hi", api_base="http://127.0.0.1:9/v1", api_key="stolen", mock_response="fake", timeout=0.001)
    result = asyncio.run(upstream.chat(body, CTX))
    assert result["choices"][0]["message"]["content"] == "Echo: hi"
    assert fake.requests[-1].headers["authorization"] == "Bearer server-key"


def test_streaming_with_usage(fake: FakeOpenAI, base_url: str) -> None:
    upstream = make(base_url)
    chunks = asyncio.run(collect(upstream, ask("hello", stream=True, stream_options={"include_usage": True})))
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Echo: hello"
    [request] = fake.chat_requests()
    sent_usage = [p["usage"] for p in request.sent if isinstance(p, dict) and p.get("usage")]
    assert chunks[-1]["choices"] == []
    [usage] = sent_usage
    assert {key: chunks[-1]["usage"][key] for key in usage} == usage, "the counts pass through intact"
    assert request.body["stream_options"] == {"include_usage": True}


def test_tool_calls_intact(fake: FakeOpenAI, base_url: str) -> None:
    upstream = make(base_url)
    body = ask("Weather in Paris?", tools=TOOLS, tool_choice="auto", parallel_tool_calls=False)
    result = asyncio.run(upstream.chat(body, CTX))
    assert_valid("CreateChatCompletionResponse", result)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {"id": TOOL_CALL_ID, "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}}
    ]
    sent = fake.requests[-1].body
    assert (sent["tools"], sent["tool_choice"], sent["parallel_tool_calls"]) == (TOOLS, "auto", False)

    chunks = asyncio.run(collect(upstream, {**body, "stream": True}))
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk)
    calls = [call for c in chunks for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["id"] == TOOL_CALL_ID and calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(c["function"].get("arguments", "") for c in calls)) == json.loads(TOOL_ARGUMENTS)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("status", [400, 429, 500])
def test_error_status_and_message_kept(fake: FakeOpenAI, base_url: str, status: int) -> None:
    upstream = make(base_url)
    for call in (upstream.chat, upstream.open_stream):
        with pytest.raises(UpstreamError) as info:
            asyncio.run(call(ask("hi", model=f"openai/error-{status}", stream=call == upstream.open_stream), CTX))
        error = info.value
        assert not isinstance(error, (UpstreamTimeout, UpstreamUnavailable))
        sent = fake.requests[-1].sent[-1]["error"]
        assert (error.status, error.message, error.code) == (status, sent["message"], sent["code"])
        assert error.to_body()["error"]["type"] == sent["type"]


def test_param_litellm_rejects_is_a_400(base_url: str) -> None:
    upstream = make(base_url)
    with pytest.raises(UpstreamError) as info:
        asyncio.run(upstream.chat(ask("hi", verbosity="low"), CTX))
    assert info.value.status == 400
    assert "verbosity" in info.value.message


def test_connection_refused_is_unavailable() -> None:
    upstream = make(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UpstreamUnavailable):
        asyncio.run(upstream.chat(ask("hi"), CTX))
    with pytest.raises(UpstreamUnavailable):
        asyncio.run(upstream.open_stream(ask("hi", stream=True), CTX))


def test_slow_upstream_times_out(base_url: str) -> None:
    upstream = make(base_url, timeout_s=0.3)
    with pytest.raises(UpstreamTimeout) as info:
        asyncio.run(upstream.chat(ask("hi", model="openai/hang"), CTX))
    assert info.value.status == 504
    with pytest.raises(UpstreamTimeout):
        asyncio.run(upstream.open_stream(ask("hi", model="openai/hang", stream=True), CTX))


def test_list_models(base_url: str) -> None:
    assert [m["id"] for m in asyncio.run(make(base_url).list_models())] == list(MODELS)
    configured = asyncio.run(make(base_url, models=["a", "b"]).list_models())
    assert [m["id"] for m in configured] == ["a", "b"]
    fallback = create(UpstreamSettings(model="anthropic/claude-x"), data_dir=None)  # type: ignore[arg-type]
    models = asyncio.run(fallback.list_models())
    assert [m["id"] for m in models] == ["anthropic/claude-x"]
    assert_valid("ListModelsResponse", {"object": "list", "data": models})
    unreachable = asyncio.run(make(f"http://127.0.0.1:{free_port()}/v1").list_models())
    assert [m["id"] for m in unreachable] == ["default"]


def test_unknown_exception_is_a_502() -> None:
    error = upstream_error(RuntimeError("boom"))
    assert (error.status, error.message) == (502, "boom")
