"""Every failure is an OpenAI-format error with the right status; memory fails open."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from testing.serving import free_port
from tests.openai_schema import validate


def chat(url: str, body: object, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30, **kwargs)


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    validate("ErrorResponse", body)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


def test_invalid_json_is_400(proxy):
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 400)
    assert error["type"] == "invalid_request_error"


def test_missing_messages_is_400_naming_the_param(proxy):
    assert_error(chat(proxy.url, {"model": "fake-model"}), 400, "messages")


def test_empty_messages_is_400(proxy):
    assert_error(chat(proxy.url, {"model": "fake-model", "messages": []}), 400, "messages")


def test_bad_role_is_400(proxy):
    error = assert_error(chat(proxy.url, {"model": "m", "messages": [{"role": "wizard", "content": "x"}]}), 400)
    assert error["param"].startswith("messages[0]")


def test_non_object_body_is_400(proxy):
    assert_error(chat(proxy.url, [1, 2, 3]), 400)


def test_unknown_route_is_404(proxy):
    error = assert_error(httpx.get(f"{proxy.url}/v1/nope"), 404)
    assert "/v1/nope" in error["message"]


def test_wrong_method_is_405(proxy):
    assert_error(httpx.get(f"{proxy.url}/v1/chat/completions"), 405)


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
def test_upstream_errors_keep_status_and_message(proxy, status):
    error = assert_error(chat(proxy.url, {"model": f"error-{status}", "messages": [{"role": "user", "content": "hi"}]}), status)
    assert error["message"] == f"Fake upstream error {status}."
    assert error["code"] == f"fake_{status}"


@pytest.mark.parametrize("status", [400, 429, 500])
def test_upstream_errors_keep_status_when_streaming(proxy, status):
    body = {"model": f"error-{status}", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    error = assert_error(chat(proxy.url, body), status)
    assert error["message"] == f"Fake upstream error {status}."


def test_official_client_sees_typed_errors(proxy):
    client = OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="error-429", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 429
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="fake-model", messages=[])


def test_upstream_down_is_502(make_proxy):
    dead = make_proxy(upstream={"base_url": f"http://127.0.0.1:{free_port()}/v1"})
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    assert assert_error(chat(dead.url, body), 502)["code"] == "upstream_unavailable"
    assert_error(chat(dead.url, {**body, "stream": True}), 502)


def test_upstream_timeout_is_504(make_proxy):
    slow = make_proxy(upstream={"timeout_s": 0.5})
    body = {"model": "hang", "messages": [{"role": "user", "content": "hi"}]}
    assert assert_error(chat(slow.url, body), 504)["code"] == "upstream_timeout"
    assert_error(chat(slow.url, {**body, "stream": True}), 504)


def test_mid_stream_failure_ends_with_an_error_event_and_stores_nothing(proxy, upstream):
    body = {"model": "broken-stream", "messages": [{"role": "user", "content": "my secret is 42"}], "stream": True}
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json=body, headers={"X-Memory-User": "zed"}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2][len("data: ") :])
    validate("ErrorResponse", error)
    # barrier: a successful turn after it, then only that one is stored
    chat(proxy.url, {"model": "fake-model", "messages": [{"role": "user", "content": "ok then"}]}, headers={"X-Memory-User": "zed"})
    from tests.conftest import wait_for_memories

    stored = wait_for_memories(proxy.url, "zed", 1)
    assert len(stored) == 1 and "secret" not in stored[0]["content"]


def test_failed_upstream_calls_store_nothing(proxy):
    headers = {"X-Memory-User": "yan"}
    chat(proxy.url, {"model": "error-500", "messages": [{"role": "user", "content": "remember 7"}]}, headers=headers)
    chat(proxy.url, {"model": "fake-model", "messages": [{"role": "user", "content": "barrier"}]}, headers=headers)
    from tests.conftest import wait_for_memories

    stored = wait_for_memories(proxy.url, "yan", 1)
    assert [m for m in stored if "remember 7" in m["content"]] == []


def test_store_unavailable_fails_open(make_proxy, upstream):
    proxy = make_proxy(memory={"chroma_url": f"http://127.0.0.1:{free_port()}"})
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "what do I like?"}]}
    response = chat(proxy.url, body, headers={"X-Memory-User": "amy"})
    assert response.status_code == 200
    assert response.headers["x-memory-status"] == "degraded"
    assert response.json()["choices"][0]["message"]["content"] == "Echo: what do I like?"
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json={**body, "stream": True}) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["x-memory-status"] == "degraded"
        lines = [line for line in streamed.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert "\"Echo:\"" in "".join(lines)
    assert httpx.get(f"{proxy.url}/readyz").status_code == 503
    assert_error(httpx.get(f"{proxy.url}/v1/memories", params={"user": "amy"}), 503)


def test_recall_deadline_fails_open(make_proxy, upstream):
    proxy = make_proxy(memory={"recall_deadline_ms": 0})
    response = chat(proxy.url, {"model": "fake-model", "messages": [{"role": "user", "content": "hello?"}]})
    assert response.status_code == 200
    assert response.headers["x-memory-status"] == "degraded"
