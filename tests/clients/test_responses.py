"""The official ``openai`` client's Responses API and embeddings -> memproxy -> the fake upstream.

Both paths: ``native`` (the fake speaks the Responses API) and ``bridge``
(translated onto chat completions), plus ``auto`` detection.
"""

from __future__ import annotations

import base64
import json
import struct

import httpx
import pytest
from openai import BadRequestError, OpenAI

from testing.fake_openai import fake_vector
from tests.conftest import memories_before_barrier, wait_for_memories
from tests.openai_schema import validate

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": False,
    }
]
MODES = ["native", "bridge"]
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
}


def client_for(server, user: str | None = None) -> OpenAI:
    headers = {"X-Memory-User": user} if user else {}
    return OpenAI(base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0, default_headers=headers)


@pytest.fixture(params=MODES)
def mode_proxy(request, make_proxy):
    return request.param, make_proxy(upstream={"responses": request.param})


def raw_events(server, body: dict, user: str = "raw") -> list[dict]:
    validate("CreateResponse", body)
    with httpx.stream("POST", f"{server.url}/v1/responses", json=body, headers={"X-Memory-User": user}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    events, names = [], []
    for line in lines:
        if line.startswith("event: "):
            names.append(line[len("event: ") :])
        elif line.startswith("data: "):
            events.append(json.loads(line[len("data: ") :]))
    assert names == [e["type"] for e in events]
    for event in events:
        validate("ResponseStreamEvent", event)
        validate(EVENT_SCHEMAS[event["type"]], event)
    assert [e["sequence_number"] for e in events] == sorted(e["sequence_number"] for e in events)
    return events


def test_create_returns_a_valid_response(mode_proxy, upstream):
    mode, proxy = mode_proxy
    request = {"model": "fake-model", "input": "Hello responses", "instructions": "Be brief.", "max_output_tokens": 64}
    validate("CreateResponse", request)
    raw = client_for(proxy, "rita").responses.with_raw_response.create(**request)
    response = raw.parse()
    assert response.output_text == "Echo: Hello responses"
    assert response.status == "completed" and response.instructions == "Be brief."
    validate("Response", json.loads(raw.text))
    assert raw.headers["x-memory-status"] == "ok"
    if mode == "native":
        sent = upstream.requests_to("/v1/responses")[-1].body
        assert sent["input"] == "Hello responses" and sent["max_output_tokens"] == 64
        assert upstream.requests_to("/chat/completions") == []
    else:
        sent = upstream.chat_requests()[-1].body
        assert sent["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello responses"},
        ]
        assert sent["max_tokens"] == 64
        assert upstream.requests_to("/v1/responses") == []


def test_stream_events_are_valid_and_complete(mode_proxy, upstream):
    mode, proxy = mode_proxy
    events = raw_events(proxy, {"model": "fake-model", "input": "stream four words please", "stream": True})
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in kinds, kind
    assert kinds[-1] == "response.completed"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Echo: stream four words please"
    final = events[-1]["response"]
    validate("Response", final)
    assert final["output"][0]["content"][0]["text"] == text
    assert final["usage"]["total_tokens"] > 0


def test_official_client_stream_helper(mode_proxy, upstream):
    _, proxy = mode_proxy
    with client_for(proxy, "sam").responses.stream(model="fake-model", input="one two three") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Echo: one two three" == final.output_text
    stream_iter = client_for(proxy, "sam").responses.create(model="fake-model", input="via create", stream=True)
    assert [e.type for e in stream_iter][-1] == "response.completed"


def test_function_calls_round_trip(mode_proxy, upstream):
    mode, proxy = mode_proxy
    client = client_for(proxy, "tom")
    raw = client.responses.with_raw_response.create(model="fake-model", input="Weather in Paris?", tools=TOOLS)
    validate("Response", json.loads(raw.text))
    call = raw.parse().output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "c"}

    events = raw_events(proxy, {"model": "fake-model", "input": "Weather?", "tools": TOOLS, "stream": True})
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert json.loads(done["arguments"]) == {"city": "Paris", "unit": "c"} and done["name"] == "get_weather"

    follow_up = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C and sunny"},
    ]
    validate("CreateResponse", {"model": "fake-model", "input": follow_up})
    client.responses.create(model="fake-model", input=follow_up, tool_choice="none", tools=TOOLS)
    if mode == "bridge":
        messages = upstream.chat_requests()[-1].body["messages"]
        assert messages[-2]["tool_calls"][0]["id"] == call.call_id
        assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "18 C and sunny"}
        assert upstream.chat_requests()[-1].body["tools"][0]["function"]["name"] == "get_weather"
    else:
        assert upstream.requests_to("/v1/responses")[-1].body["input"][-1]["output"] == "18 C and sunny"


def test_memory_is_recalled_into_instructions_and_written_from_the_output(mode_proxy, upstream):
    mode, proxy = mode_proxy
    client = client_for(proxy, "alice")
    client.responses.create(model="fake-model", input="Just so you know, I'm allergic to peanuts.")
    stored = wait_for_memories(proxy.url, "alice", 1)
    assert any("peanuts" in m["content"] and "Echo:" in m["content"] for m in stored)

    with client.responses.stream(
        model="fake-model", input="Suggest a dinner recipe that is safe with my allergy.", instructions="Be kind."
    ) as stream:
        final = stream.get_final_response()
    assert final.instructions == "Be kind."  # the client never sees the memory block
    if mode == "native":
        instructions = upstream.requests_to("/v1/responses")[-1].body["instructions"]
    else:
        instructions = upstream.chat_requests()[-1].body["messages"][0]["content"]
    assert instructions.startswith("Be kind.") and "allergic to peanuts" in instructions
    assert "<memproxy:memories>" in instructions

    client_for(proxy, "bob").responses.create(model="fake-model", input="Suggest a dinner recipe that is safe with my allergy.")
    last = upstream.requests[-1].body
    assert "peanuts" not in json.dumps(last)


def test_last_user_placement_goes_into_the_input(make_proxy, upstream):
    # the profile (memory/profile.py) is core: it goes to the instructions; this test is about recall
    proxy = make_proxy(memory={"placement": "last_user", "profile_token_budget": 0}, upstream={"responses": "native"})
    client = client_for(proxy, "lucy")
    client.responses.create(model="fake-model", input="I have a cat called Miso.")
    wait_for_memories(proxy.url, "lucy", 1)
    client.responses.create(
        model="fake-model", input=[{"role": "user", "content": [{"type": "input_text", "text": "What is my cat called?"}]}]
    )
    sent = upstream.requests_to("/v1/responses")[-1].body
    assert "instructions" not in sent or sent["instructions"] is None
    parts = sent["input"][-1]["content"]
    assert "Miso" in parts[0]["text"] and parts[-1]["text"] == "What is my cat called?"


def test_previous_response_id_and_store_reach_a_native_upstream(make_proxy, upstream):
    proxy = make_proxy(upstream={"responses": "native"})
    response = client_for(proxy).responses.create(
        model="fake-model", input="second turn", previous_response_id="resp_earlier", store=True
    )
    sent = upstream.requests_to("/v1/responses")[-1].body
    assert sent["previous_response_id"] == "resp_earlier" and sent["store"] is True
    assert response.previous_response_id == "resp_earlier"


def test_the_bridge_refuses_state_it_cannot_keep(make_proxy, upstream):
    proxy = make_proxy(upstream={"responses": "bridge"})
    with pytest.raises(BadRequestError) as caught:
        client_for(proxy).responses.create(model="fake-model", input="x", previous_response_id="resp_1")
    assert caught.value.body["param"] == "previous_response_id"
    validate("ErrorResponse", caught.value.response.json())
    with pytest.raises(BadRequestError):
        client_for(proxy).responses.create(model="fake-model", input="x", tools=[{"type": "web_search"}])


def test_auto_detects_an_upstream_without_the_responses_api(make_proxy, upstream):
    upstream.responses_api = False
    try:
        proxy = make_proxy()  # responses: auto
        client = client_for(proxy)
        assert client.responses.create(model="fake-model", input="first").output_text == "Echo: first"
        assert client.responses.create(model="fake-model", input="second").output_text == "Echo: second"
        assert len(upstream.requests_to("/v1/responses")) == 0  # the 404 is not recorded
        assert len(upstream.chat_requests()) == 2
    finally:
        upstream.responses_api = True


def test_native_mode_upstream_errors_keep_their_status(make_proxy, upstream):
    proxy = make_proxy(upstream={"responses": "native"})
    response = httpx.post(f"{proxy.url}/v1/responses", json={"model": "error-429", "input": "x"})
    assert response.status_code == 429
    validate("ErrorResponse", response.json())
    missing = httpx.post(f"{proxy.url}/v1/responses", json={"input": "x"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model"


def test_structured_output_and_sampling_fields_are_translated(make_proxy, upstream):
    proxy = make_proxy(upstream={"responses": "bridge"})
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    request = {
        "model": "fake-model",
        "input": [{"role": "user", "content": "json please"}],
        "text": {"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
        "temperature": 0.2,
        "top_p": 0.9,
        "max_output_tokens": 33,
    }
    validate("CreateResponse", request)
    raw = client_for(proxy).responses.with_raw_response.create(**request)
    validate("Response", json.loads(raw.text))
    sent = upstream.chat_requests()[-1].body
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9 and sent["max_tokens"] == 33


def test_embeddings_pass_through_float_and_base64(proxy, upstream):
    client = client_for(proxy)
    result = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    assert [round(x, 4) for x in result.data[0].embedding] == fake_vector("hello")
    raw = httpx.post(
        f"{proxy.url}/v1/embeddings", json={"model": "m", "input": "hello", "encoding_format": "float"}
    ).json()
    validate("CreateEmbeddingResponse", raw)
    assert raw["data"][0]["embedding"] == fake_vector("hello")
    encoded = httpx.post(
        f"{proxy.url}/v1/embeddings", json={"model": "m", "input": "hello", "encoding_format": "base64"}
    ).json()
    # base64 embeddings are a wire variant the OpenAPI spec does not describe
    decoded = struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert [round(x, 4) for x in decoded] == fake_vector("hello")
    assert memories_before_barrier(proxy.url, "default") == [], "embeddings are never stored"
    error = httpx.post(f"{proxy.url}/v1/embeddings", json={"model": "error-400", "input": "x"})
    assert error.status_code == 400
    validate("ErrorResponse", error.json())
