"""Unit tests for adapters.normalize: backend dicts become valid OpenAI shapes."""

from __future__ import annotations

import copy

import pytest

from adapters.normalize import (
    dedupe_tool_call_deltas,
    normalize_chunk,
    normalize_completion,
    normalize_finish_reason,
    normalize_usage,
)
from tests.openai_schema import assert_valid
from tests.openai_schema import errors as schema_errors

LLAMACPP_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "/models/gemma.gguf",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}

LITELLM_COMPLETION = {
    "id": "chatcmpl-2",
    "created": 1700000000,
    "model": "gpt-x",
    "object": "chat.completion",
    "system_fingerprint": None,
    "choices": [
        {
            "finish_reason": "tool_use",
            "index": 0,
            "message": {
                "content": None,
                "role": "assistant",
                "tool_calls": [
                    {"function": {"arguments": {"city": "Paris"}, "name": "weather"}, "id": None, "type": "function"}
                ],
                "function_call": None,
                "provider_specific_fields": {"x": 1},
            },
            "provider_specific_fields": {},
        }
    ],
    "usage": {
        "completion_tokens": 5,
        "prompt_tokens": 7,
        "total_tokens": 12,
        "completion_tokens_details": None,
        "prompt_tokens_details": {"audio_tokens": None, "cached_tokens": 0, "text_tokens": None},
    },
}


def test_raw_backend_dicts_are_invalid() -> None:
    assert schema_errors("CreateChatCompletionResponse", LLAMACPP_COMPLETION)
    assert schema_errors("CreateChatCompletionResponse", LITELLM_COMPLETION)


def test_llamacpp_completion_gets_required_fields() -> None:
    out = normalize_completion(LLAMACPP_COMPLETION, model="gpt-4o")
    assert_valid("CreateChatCompletionResponse", out)
    assert out["model"] == "gpt-4o"
    assert out["choices"][0]["logprobs"] is None
    assert out["choices"][0]["message"]["refusal"] is None
    assert out["choices"][0]["message"]["content"] == "hi"


def test_litellm_completion_keeps_tool_calls_and_extras() -> None:
    original = copy.deepcopy(LITELLM_COMPLETION)
    out = normalize_completion(LITELLM_COMPLETION)
    assert LITELLM_COMPLETION == original, "input must not be mutated"
    assert_valid("CreateChatCompletionResponse", out)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
    assert call["id"].startswith("call_")
    assert choice["message"]["provider_specific_fields"] == {"x": 1}
    assert "function_call" not in choice["message"]
    assert "completion_tokens_details" not in out["usage"]
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}


def test_empty_tool_calls_list_is_removed() -> None:
    body = copy.deepcopy(LLAMACPP_COMPLETION)
    body["choices"][0]["message"]["tool_calls"] = []
    out = normalize_completion(body)
    assert "tool_calls" not in out["choices"][0]["message"]


def test_missing_top_level_fields_are_filled() -> None:
    out = normalize_completion({"choices": [{"message": {"content": "x"}}]})
    assert_valid("CreateChatCompletionResponse", out)
    assert out["id"].startswith("chatcmpl-")
    assert out["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("raw", "allow_none", "expected"),
    [
        ("stop", False, "stop"),
        ("length", True, "length"),
        ("max_tokens", False, "length"),
        ("end_turn", False, "stop"),
        ("tool_use", False, "tool_calls"),
        ("SAFETY", False, "content_filter"),
        ("weird", False, "stop"),
        (None, True, None),
        (None, False, "stop"),
    ],
)
def test_finish_reason_mapping(raw: str | None, allow_none: bool, expected: str | None) -> None:
    assert normalize_finish_reason(raw, allow_none=allow_none) == expected


def test_llamacpp_chunks_validate() -> None:
    first = {
        "id": "chatcmpl-3",
        "model": "/m.gguf",
        "created": 1,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}],
    }
    last = {
        "id": "chatcmpl-3",
        "model": "/m.gguf",
        "created": 1,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "eos"}],
    }
    for chunk in (first, last):
        out = normalize_chunk(chunk, model="m")
        assert_valid("CreateChatCompletionStreamResponse", out)
    assert normalize_chunk(last)["choices"][0]["finish_reason"] == "stop"


def test_chunk_tool_call_deltas_and_usage() -> None:
    chunk = {
        "id": "c",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": None,
                    "content": None,
                    "tool_calls": [{"id": None, "function": {"arguments": '{"a"', "name": None}, "type": None}],
                },
                "finish_reason": None,
            }
        ],
        "usage": None,
    }
    out = normalize_chunk(chunk)
    assert_valid("CreateChatCompletionStreamResponse", out)
    assert out["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": '{"a"'}}]
    assert out["usage"] is None
    usage_chunk = normalize_chunk({"id": "c", "created": 1, "model": "m", "choices": [], "usage": {"prompt_tokens": 2}})
    assert_valid("CreateChatCompletionStreamResponse", usage_chunk)
    assert usage_chunk["usage"] == {"prompt_tokens": 2, "completion_tokens": 0, "total_tokens": 2}


def test_completion_style_logprobs_are_converted() -> None:
    body = copy.deepcopy(LLAMACPP_COMPLETION)
    body["choices"][0]["logprobs"] = {
        "tokens": ["hi"],
        "text_offset": [0],
        "token_logprobs": [-0.5],
        "top_logprobs": [{"hi": -0.5, "yo": -1.5}],
    }
    out = normalize_completion(body)
    assert_valid("CreateChatCompletionResponse", out)
    content = out["choices"][0]["logprobs"]["content"]
    assert content[0]["token"] == "hi" and content[0]["logprob"] == -0.5
    assert [t["token"] for t in content[0]["top_logprobs"]] == ["hi", "yo"]


def test_usage_total_is_computed() -> None:
    assert normalize_usage({"prompt_tokens": 2, "completion_tokens": 3}) == {
        "prompt_tokens": 2,
        "completion_tokens": 3,
        "total_tokens": 5,
    }


def test_function_call_dropped_next_to_tool_calls() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = copy.deepcopy(LLAMACPP_COMPLETION)
    body["choices"][0]["message"].update(
        {"content": None, "function_call": {"name": "f", "arguments": "{}"}, "tool_calls": [call]}
    )
    message = normalize_completion(body)["choices"][0]["message"]
    assert "function_call" not in message and message["tool_calls"] == [call]
    legacy = copy.deepcopy(LLAMACPP_COMPLETION)
    legacy["choices"][0]["message"]["function_call"] = {"name": "f", "arguments": "{}"}
    assert normalize_completion(legacy)["choices"][0]["message"]["function_call"]["name"] == "f"


def test_dedupe_tool_call_deltas_keeps_only_first_announcement() -> None:
    def chunk(arguments: str) -> dict:
        call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        return {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}

    seen: frozenset = frozenset()
    outs = []
    for part in ('{"a"', ": 1}"):
        out, seen = dedupe_tool_call_deltas(normalize_chunk(chunk(part)), seen)
        assert_valid("CreateChatCompletionStreamResponse", out)
        outs.append(out["choices"][0]["delta"]["tool_calls"][0])
    assert outs[0] == {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}
    assert outs[1] == {"index": 0, "function": {"arguments": ": 1}"}}
    plain = normalize_chunk({"choices": [{"index": 0, "delta": {"content": "x"}}]})
    assert dedupe_tool_call_deltas(plain, seen) == (plain, seen)
