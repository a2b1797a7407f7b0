"""Streams that stop early are errors, ``upstream.timeout_s`` bounds the whole
request, and an upstream 429's ``Retry-After`` reaches the client."""

from __future__ import annotations

import json

import httpx
import pytest

from testing.fake_ollama import FakeOllama
from testing.fake_openai import RETRY_AFTER, TRUNCATED
from testing.serving import ServerThread
from tests.conftest import memories_before_barrier


def sse_payloads(text: str) -> list[str]:
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]


def test_a_chat_stream_cut_off_upstream_is_an_error_event_and_stores_nothing(proxy, upstream):
    user = "cut-chat"
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": TRUNCATED, "stream": True, "messages": [{"role": "user", "content": "tell me about the Alps"}]},
        headers={"X-Memory-User": user},
        timeout=60,
    )
    assert response.status_code == 200
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    error = json.loads(payloads[-2])["error"]
    assert "ended before it finished" in error["message"] and error["code"] == "upstream_unavailable"
    assert any("Alps" in p for p in payloads[:-2]), "what did arrive was relayed"
    assert memories_before_barrier(proxy.url, user) == []


def test_a_responses_stream_cut_off_upstream_is_an_error_event_and_stores_nothing(proxy, upstream):
    user = "cut-responses"
    response = httpx.post(
        f"{proxy.url}/v1/responses",
        json={"model": TRUNCATED, "stream": True, "input": "tell me about the Alps"},
        headers={"X-Memory-User": user},
        timeout=60,
    )
    assert response.status_code == 200
    events = [json.loads(p) for p in sse_payloads(response.text)]
    assert events[-1]["type"] == "error" and "ended before it finished" in events[-1]["message"]
    assert not any(e["type"] == "response.completed" for e in events)
    assert memories_before_barrier(proxy.url, user) == []


def test_an_ollama_stream_cut_off_upstream_is_an_error_line_and_stores_nothing(make_proxy):
    fake = FakeOllama()
    with ServerThread(fake.app()) as server:
        proxy = make_proxy(ollama={"base_url": server.url})
        user = "cut-ollama"
        response = httpx.post(
            f"{proxy.url}/api/chat",
            json={"model": TRUNCATED, "messages": [{"role": "user", "content": "tell me about the Alps"}]},
            headers={"X-Memory-User": user},
            timeout=60,
        )
        lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
        assert "ended before its final (done) line" in lines[-1]["error"]
        assert not any(line.get("done") for line in lines)
        assert memories_before_barrier(proxy.url, user) == []


def test_timeout_s_bounds_the_whole_stream_not_each_read(make_proxy, upstream):
    """Every piece arrives well within the timeout, but the whole reply does not."""
    proxy = make_proxy(upstream={"timeout_s": 1.0})
    user = "slow-drip"
    words = " ".join(f"w{i}" for i in range(40))  # 40+ pieces, 150 ms apart: ~6 s in all
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "slow-150", "stream": True, "messages": [{"role": "user", "content": words}]},
        headers={"X-Memory-User": user},
        timeout=60,
    )
    payloads = sse_payloads(response.text)
    error = json.loads(payloads[-2])["error"]
    assert error["code"] == "upstream_timeout" and "whole-request timeout" in error["message"]
    relayed = sum(1 for p in payloads[:-2] if "w" in p)
    assert 0 < relayed < 40, "some pieces were relayed before the deadline, not all"
    assert memories_before_barrier(proxy.url, user) == []


def test_timeout_s_bounds_a_non_streamed_call(make_proxy, upstream):
    proxy = make_proxy(upstream={"timeout_s": 0.5})
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "sleep-5000", "messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/embeddings"])
def test_retry_after_of_an_upstream_429_is_relayed(proxy, upstream, path):
    body = {"model": "error-429", "messages": [{"role": "user", "content": "hi"}], "input": "hi"}
    response = httpx.post(f"{proxy.url}{path}", json=body, timeout=60)
    assert response.status_code == 429
    assert response.headers["retry-after"] == RETRY_AFTER
    assert response.json()["error"]["code"] == "fake_429"


def test_retry_after_is_relayed_when_streaming_too(proxy, upstream):
    body = {"model": "error-429", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{proxy.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 429 and response.headers["retry-after"] == RETRY_AFTER
