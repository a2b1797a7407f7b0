"""proxy/fastjson.py and the upstream parser: the same JSON values as the standard library."""

from __future__ import annotations

import json
import math

import pytest

from adapters.errors import UpstreamUnavailable
from adapters.transport import json_object
from proxy.fastjson import FastJSONResponse, dumps

CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1_700_000_000,
    "model": "fake-model",
    "choices": [{"index": 0, "delta": {"content": "héllo ☃ 😀 \u2028 \"quoted\" \x00"}, "finish_reason": None}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cost": 1e-7, "x": 0.1 + 0.2},
}


@pytest.mark.parametrize("value", [CHUNK, {"big": 2**70}, {1: "a non-string key"}, [], "plain"])
def test_dumps_writes_what_the_standard_library_reads_back(value: object) -> None:
    written = dumps(value)
    assert b", " not in written and b": " not in written  # compact
    assert json.loads(written) == json.loads(json.dumps(value))


def test_a_nan_is_written_as_valid_json() -> None:
    assert json.loads(dumps({"x": math.nan})) == {"x": None}


def test_the_response_class_renders_the_same_values() -> None:
    response = FastJSONResponse(CHUNK, headers={"X-Memory-Status": "ok"})
    assert json.loads(response.body) == CHUNK and response.headers["content-type"] == "application/json"


def test_upstream_json_is_read_as_before() -> None:
    assert json_object(json.dumps(CHUNK).encode(), "the upstream") == CHUNK
    assert json_object(b'{"n": NaN, "big": 123456789012345678901234567890}', "the upstream")["big"] == 123456789012345678901234567890
    with pytest.raises(UpstreamUnavailable, match="invalid JSON"):
        json_object(b'{"cut": ', "the upstream")
    with pytest.raises(UpstreamUnavailable, match="non-object"):
        json_object(b"[1]", "the upstream")
