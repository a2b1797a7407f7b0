"""End to end: the official ``openai`` client -> memproxy -> a fake upstream, all over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import OpenAI

from tests.conftest import wait_for_memories
from tests.openai_schema import validate

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    }
]


def client_for(server, user: str | None = None, **headers: str) -> OpenAI:
    default_headers = dict(headers)
    if user:
        default_headers["X-Memory-User"] = user
    return OpenAI(base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0, default_headers=default_headers)


def upstream_prompt(request) -> str:
    return json.dumps(request.body["messages"])


def test_non_streaming_completion_is_valid_and_tagged(proxy, upstream):
    raw = client_for(proxy, "alice").chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "Hello there"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Echo: Hello there"
    validate("CreateChatCompletionResponse", completion.model_dump(exclude_unset=True))
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-memory-status"] == "ok"
    assert raw.headers["x-memory-recalled"] == "0"
    assert raw.headers["x-memory-tokens"] == "0"
    assert len(upstream.chat_requests()) == 1


def test_streaming_relays_every_chunk_with_usage(proxy, upstream):
    chunks = []
    with httpx.stream(
        "POST",
        f"{proxy.url}/v1/chat/completions",
        json={
            "model": "fake-model",
            "messages": [{"role": "user", "content": "stream me four words"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers={"X-Memory-User": "bob"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-memory-status"] == "ok"
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert line.startswith("data: ")
        chunk = json.loads(line[len("data: ") :])
        validate("CreateChatCompletionStreamResponse", chunk)
        chunks.append(chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Echo: stream me four words"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert upstream.chat_requests()[0].body["stream_options"] == {"include_usage": True}


def test_streaming_with_the_official_client(proxy):
    stream = client_for(proxy, "carol").chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Echo: one two three"


def test_a_fact_told_earlier_reaches_a_later_conversation_of_the_same_user_only(proxy, upstream):
    alice = client_for(proxy, "alice")
    alice.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Just so you know, I'm allergic to peanuts."}]
    )
    stored = wait_for_memories(proxy.url, "alice", 1)
    assert any("peanuts" in m["content"] for m in stored)
    upstream.clear()

    raw = alice.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "Can you suggest a dinner recipe for tonight?"}]
    )
    raw.parse()
    prompt = upstream_prompt(upstream.chat_requests()[-1])
    assert "allergic to peanuts" in prompt
    assert "<memproxy:memories>" in prompt
    assert int(raw.headers["x-memory-recalled"]) >= 1
    assert int(raw.headers["x-memory-tokens"]) > 0
    first = upstream.chat_requests()[-1].body["messages"][0]
    assert first["role"] == "system" and "peanuts" in first["content"]

    client_for(proxy, "bob").chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Can you suggest a dinner recipe for tonight?"}]
    )
    assert "peanuts" not in upstream_prompt(upstream.chat_requests()[-1])


def test_body_user_field_names_the_owner_when_no_header(proxy, upstream):
    plain = client_for(proxy)
    plain.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "My cat is called Miso."}], user="dora"
    )
    assert wait_for_memories(proxy.url, "dora", 1)
    assert upstream.chat_requests()[-1].body["user"] == "dora"


def test_memory_off_injects_and_stores_nothing(proxy, upstream):
    alice = client_for(proxy, "erin")
    alice.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "I live in Porto."}])
    wait_for_memories(proxy.url, "erin", 1)

    off = client_for(proxy, "erin", **{"X-Memory": "off"})
    raw = off.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "Where do I live? My passport number is X123."}]
    )
    raw.parse()
    assert raw.headers["x-memory-status"] == "off"
    assert "Porto" not in upstream_prompt(upstream.chat_requests()[-1])

    # A later "on" turn is a barrier: writes are queued in order.
    alice.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "I like sardines."}])
    stored = wait_for_memories(proxy.url, "erin", 2)
    assert len(stored) == 2
    assert not any("X123" in m["content"] for m in stored)


def test_read_and_write_modes(proxy, upstream):
    writer = client_for(proxy, "fay", **{"X-Memory": "write"})
    raw = writer.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "My favourite colour is teal."}]
    )
    raw.parse()
    assert raw.headers["x-memory-recalled"] == "0"
    wait_for_memories(proxy.url, "fay", 1)

    reader = client_for(proxy, "fay", **{"X-Memory": "read"})
    raw = reader.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "What is my favourite colour?"}]
    )
    raw.parse()
    assert "teal" in upstream_prompt(upstream.chat_requests()[-1])
    reader.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "I also like mauve."}])
    writer.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "I own a kayak."}])
    stored = wait_for_memories(proxy.url, "fay", 2)
    assert len(stored) == 2 and not any("mauve" in m["content"] for m in stored)


def test_invalid_memory_header_is_a_clear_400(proxy):
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Memory": "sometimes"},
    )
    assert response.status_code == 400
    validate("ErrorResponse", response.json())
    assert response.json()["error"]["param"] == "X-Memory"


def test_tool_calls_round_trip_non_streaming(proxy, upstream):
    completion = client_for(proxy, "gus").chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        tool_choice="auto",
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}
    assert completion.choices[0].finish_reason == "tool_calls"
    sent = upstream.chat_requests()[-1].body
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto"
    validate("CreateChatCompletionResponse", completion.model_dump(exclude_unset=True))


def test_tool_calls_round_trip_streaming(proxy, upstream):
    stream = client_for(proxy, "gus").chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS, stream=True
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        choice = chunk.choices[0]
        for call in choice.delta.tool_calls or []:
            name += call.function.name or ""
            arguments += call.function.arguments or ""
        finish = choice.finish_reason or finish
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris", "unit": "c"}
    assert finish == "tool_calls"


def test_tool_result_follow_up_keeps_the_conversation_intact(proxy, upstream):
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
    ]
    client_for(proxy, "gus").chat.completions.create(model="fake-model", messages=messages, tools=TOOLS, tool_choice="none")
    assert upstream.chat_requests()[-1].body["messages"][-3:] == messages


def test_unused_request_fields_pass_through_untouched(proxy, upstream):
    extra = {
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 42,
        "n": 1,
        "stop": ["\n\n"],
        "max_tokens": 64,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 2,
        "response_format": {"type": "json_object"},
        "metadata": {"trace": "abc"},
        "parallel_tool_calls": False,
        "service_tier": "auto",
    }
    client_for(proxy, "hal").chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "Return JSON please"}], **extra
    )
    sent = upstream.chat_requests()[-1].body
    for key, value in extra.items():
        assert sent[key] == value, key
    assert sent["model"] == "fake-model"


def test_each_chunk_is_relayed_before_the_upstream_sends_the_next(proxy, upstream):
    # The fake sends one content piece per step; stepping only after a piece
    # has reached the client proves the proxy relays every chunk as it comes
    # (a buffering proxy would deliver nothing until the fake gave up waiting).
    pacer = upstream.pace_streams()
    received: list[str] = []
    with httpx.stream(
        "POST",
        f"{proxy.url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "a b c d e f"}], "stream": True},
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[len("data: ") :])
            piece = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if not piece:
                continue
            received.append(piece)
            [request] = upstream.chat_requests()
            sent = [p["choices"][0]["delta"].get("content") for p in request.sent if isinstance(p, dict) and p["choices"]]
            assert [p for p in sent if p] == received, "the upstream got ahead of what the client had received"
            pacer.step()
    assert "".join(received) == "Echo: a b c d e f"
    assert len(received) == 7
    assert not pacer.timed_out
    assert upstream.chat_requests()[0].sent[-1] == "[DONE]"


def test_memory_blocks_are_never_stored_back(make_proxy, upstream):
    proxy = make_proxy(memory={"placement": "last_user"})
    client = client_for(proxy, "ivy")
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "I am vegetarian."}])
    wait_for_memories(proxy.url, "ivy", 1)
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "Dinner ideas that suit my diet?"}])
    sent = upstream.chat_requests()[-1].body["messages"]
    assert sent[-1]["role"] == "user" and sent[-1]["content"].startswith("<memproxy:memories>")
    assert sent[-1]["content"].endswith("Dinner ideas that suit my diet?")
    # The fake echoes the block back in its reply; the write must strip it.
    stored = wait_for_memories(proxy.url, "ivy", 2)
    assert len(stored) == 2
    assert not any("<memproxy:memories>" in m["content"] or "Reference data" in m["content"] for m in stored)


def test_system_placement_merges_into_the_clients_system_message(proxy, upstream):
    client = client_for(proxy, "jon")
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "I play the cello."}])
    wait_for_memories(proxy.url, "jon", 1)
    client.chat.completions.create(
        model="fake-model",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Which instrument do I play?"},
        ],
    )
    sent = upstream.chat_requests()[-1].body["messages"]
    assert len(sent) == 2
    assert sent[0]["content"].startswith("You are terse.\n\n<memproxy:memories>")
    assert "cello" in sent[0]["content"]
    assert sent[1] == {"role": "user", "content": "Which instrument do I play?"}


def test_models_list_is_valid(proxy):
    response = httpx.get(f"{proxy.url}/v1/models")
    assert response.status_code == 200
    validate("ListModelsResponse", response.json())
    assert {m["id"] for m in response.json()["data"]} >= {"fake-model"}
    models = client_for(proxy).models.list()
    assert "fake-model" in [m.id for m in models.data]


def test_configured_models_are_listed(make_proxy):
    proxy = make_proxy(upstream={"models": ["alpha", "beta"]})
    body = httpx.get(f"{proxy.url}/v1/models").json()
    validate("ListModelsResponse", body)
    assert [m["id"] for m in body["data"]] == ["alpha", "beta"]


def test_health_and_readiness(proxy):
    assert httpx.get(f"{proxy.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{proxy.url}/readyz")
    assert ready.status_code == 200 and ready.json()["memory"] == "ok"


def test_upstream_model_override(make_proxy, upstream):
    proxy = make_proxy(upstream={"model": "gpt-4o-mini"})
    client_for(proxy).chat.completions.create(model="whatever", messages=[{"role": "user", "content": "hi"}])
    assert upstream.chat_requests()[-1].body["model"] == "gpt-4o-mini"


def test_client_bearer_is_forwarded_unless_a_key_is_configured(make_proxy, upstream):
    proxy = make_proxy()
    client_for(proxy).chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert upstream.chat_requests()[-1].headers["authorization"] == "Bearer sk-test"
    keyed = make_proxy(upstream={"api_key": "sk-upstream"})
    client_for(keyed).chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert upstream.chat_requests()[-1].headers["authorization"] == "Bearer sk-upstream"


@pytest.mark.parametrize("content", ["plain text", [{"type": "text", "text": "multi-part text"}]])
def test_multipart_user_content_is_accepted(proxy, upstream, content):
    completion = client_for(proxy, "kim").chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": content}]
    )
    assert completion.choices[0].message.content.startswith("Echo: ")


def test_litellm_upstream_end_to_end(make_proxy, upstream):
    """The same drop-in behaviour with litellm as the upstream (``openai/<model>`` + base_url)."""
    proxy = make_proxy(upstream={"provider": "litellm"})
    client = client_for(proxy, "lin")
    client.chat.completions.create(model="openai/fake-model", messages=[{"role": "user", "content": "I'm allergic to shellfish."}])
    wait_for_memories(proxy.url, "lin", 1)
    completion = client.chat.completions.create(
        model="openai/fake-model", messages=[{"role": "user", "content": "Any dinner ideas for tonight?"}]
    )
    assert completion.choices[0].message.content.startswith("Echo: ")
    assert "shellfish" in upstream_prompt(upstream.chat_requests()[-1])
    stream = client.chat.completions.create(
        model="openai/fake-model", messages=[{"role": "user", "content": "one two"}], stream=True, tools=TOOLS
    )
    names = "".join(c.choices[0].delta.tool_calls[0].function.name or "" for c in stream if c.choices and c.choices[0].delta.tool_calls)
    assert names == "get_weather"
