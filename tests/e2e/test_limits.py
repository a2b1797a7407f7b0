"""Hostile input: every cap answers a clear 4xx in the route's own error shape, never a 500.

The server runs with small limits so the bodies stay small; each case of
issue #12's "No limits" is one test here.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from proxy import limits as limits_module
from proxy.limits import LimitsSettings, UnsafeJson, parse_json, parse_json_async
from proxy.pipeline.pipeline import MAX_QUERY_CHARS, clip_query
from tests.conftest import list_memories, memories_before_barrier

SMALL = {"max_body_bytes": 64 * 1024, "max_messages": 50, "max_json_depth": 32, "max_header_bytes": 8 * 1024}
CHAT = "/v1/chat/completions"


@pytest.fixture()
def capped(make_proxy):
    return make_proxy(limits=SMALL, memory={"limits": {"max_content_chars": 2000, "max_batch": 5}})


def post_raw(url: str, path: str, raw: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}{path}", content=raw, headers={"Content-Type": "application/json", **headers}, timeout=60)


def openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


def chat_body(text: str = "hi", **extra) -> dict:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- body size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, "/v1/responses", "/v1/memories", "/v1/memories/search"])
def test_a_body_over_the_cap_is_a_413_before_it_is_read(capped, upstream, path):
    raw = json.dumps(chat_body("x" * 100_000)).encode()
    error = openai_error(post_raw(capped.url, path, raw), 413)
    assert error["code"] == "request_too_large" and "max_body_bytes" in error["message"]
    assert upstream.chat_requests() == []


def test_a_chunked_body_without_content_length_is_cut_off_at_the_cap(capped, upstream):
    def pieces():
        for _ in range(100):
            yield b" " * 4096  # whitespace: valid JSON padding, 400 KiB in all

    response = httpx.post(f"{capped.url}{CHAT}", content=pieces(), headers={"Content-Type": "application/json"}, timeout=60)
    assert openai_error(response, 413)["code"] == "request_too_large"


def test_an_ollama_body_over_the_cap_is_a_413_in_ollama_shape(capped):
    raw = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 100_000}]}).encode()
    response = post_raw(capped.url, "/api/chat", raw)
    assert response.status_code == 413 and set(response.json()) == {"error"}


def test_headers_over_the_cap_are_a_431(capped):
    response = httpx.post(f"{capped.url}{CHAT}", json=chat_body(), headers={"X-Padding": "p" * 9000}, timeout=30)
    assert openai_error(response, 431)["code"] == "headers_too_large"


def test_too_many_messages_is_a_400(capped, upstream):
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}] * 51}
    error = openai_error(httpx.post(f"{capped.url}{CHAT}", json=body, timeout=30), 400)
    assert error["param"] == "messages" and error["code"] == "too_many_messages"
    body = {"model": "fake-model", "input": [{"role": "user", "content": "hi"}] * 51}
    assert openai_error(httpx.post(f"{capped.url}/v1/responses", json=body, timeout=30), 400)["param"] == "input"
    assert upstream.chat_requests() == []


# -- unsafe JSON -------------------------------------------------------------------------------

HOSTILE_BODIES = {
    "deep nesting": ('{"model": "m", "messages": ' + nested(30_000) + "}").encode(),
    "nesting over the cap": ('{"model": "m", "messages": [{"role": "user", "content": "x", "x": ' + nested(40) + "}]}").encode(),
    "NaN": b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    "Infinity": b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": -Infinity}',
    "lone surrogate": b'{"model": "m", "messages": [{"role": "user", "content": "hi \\ud800 there"}]}',
    "lone surrogate key": b'{"model": "m", "messages": [{"role": "user", "content": "hi", "\\udc00": 1}]}',
    "invalid UTF-8": b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "not JSON": b"{model: m",
}


def test_unsafe_json_is_a_400_on_every_route(capped, upstream):
    for path in (CHAT, "/v1/responses", "/v1/memories", "/v1/memories/search", "/v1/embeddings"):
        for name, raw in HOSTILE_BODIES.items():
            error = openai_error(post_raw(capped.url, path, raw), 400)
            assert error["code"] == "invalid_json", (path, name)
    assert upstream.requests == []


def test_unsafe_json_on_the_ollama_api_is_a_400_in_ollama_shape(capped):
    for path in ("/api/chat", "/api/generate", "/api/embed"):
        for name, raw in HOSTILE_BODIES.items():
            response = post_raw(capped.url, path, raw)
            assert response.status_code == 400 and set(response.json()) == {"error"}, (path, name)


def test_hostile_memory_metadata_is_refused_and_the_users_memories_still_work(capped):
    user = "deep-meta"
    deep: dict = {}
    node = deep
    for _ in range(30):  # within the JSON cap, over memory.limits.max_metadata_depth (8)
        node["x"] = {}
        node = node["x"]
    cases = [
        {"content": "deep", "metadata": deep},
        {"content": "big", "metadata": {"blob": "b" * 20_000}},
        {"content": "c" * 2001},
    ]
    for memory in cases:
        response = httpx.post(f"{capped.url}/v1/memories", json={"user": user, "memories": [memory]}, timeout=60)
        openai_error(response, 400)
    too_many = [{"content": f"fact {i}"} for i in range(6)]
    response = httpx.post(f"{capped.url}/v1/memories", json={"user": user, "memories": too_many}, timeout=60)
    assert openai_error(response, 400)["param"] == "memories"
    created = httpx.post(f"{capped.url}/v1/memories", json={"user": user, "memories": [{"content": "Ana likes tea.", "metadata": {"a": {"b": [1, 2]}}}]}, timeout=60)
    assert created.status_code == 201, created.text
    assert [m["content"] for m in list_memories(capped.url, user)] == ["Ana likes tea."]
    found = httpx.post(f"{capped.url}/v1/memories/search", json={"user": user, "query": "tea"}, timeout=60)
    assert found.status_code == 200 and found.json()["data"][0]["content"] == "Ana likes tea."
    memory_id = created.json()["data"][0]["id"]
    patched = httpx.patch(f"{capped.url}/v1/memories/{memory_id}", json={"metadata": deep}, timeout=60)
    openai_error(patched, 400)


def test_a_chat_turn_longer_than_the_content_cap_is_stored_clipped(capped, upstream):
    user = "long-turn"
    text = "My long story. " + "word " * 2000
    response = httpx.post(f"{capped.url}{CHAT}", json=chat_body(text), headers={"X-Memory-User": user}, timeout=60)
    assert response.status_code == 200
    (stored,) = memories_before_barrier(capped.url, user)
    assert stored["content"].startswith("User: My long story.") and stored["content"].endswith("[...]")
    assert len(stored["content"]) <= 2000


# -- the parser itself ---------------------------------------------------------------------------


def test_parse_json_refuses_what_json_loads_accepts():
    for raw in (b"NaN", b'{"a": Infinity}', b'"\\ud83d"', nested(65).encode()):
        with pytest.raises(UnsafeJson):
            parse_json(raw, 64)
    assert parse_json(b'{"ok": ["\\ud83d\\ude00", 1.5]}', 64) == {"ok": ["\U0001f600", 1.5]}
    assert parse_json(nested(64).encode(), 64) is not None


def test_large_bodies_are_parsed_on_a_worker_thread(monkeypatch):
    threads: list[int] = []
    real = asyncio.to_thread

    async def spy(func, *args):
        threads.append(len(args[0]))
        return await real(func, *args)

    monkeypatch.setattr(limits_module.asyncio, "to_thread", spy)
    settings = LimitsSettings(offload_bytes=1024)
    small, large = b'{"a": 1}', json.dumps({"a": "x" * 4096}).encode()
    assert asyncio.run(parse_json_async(small, settings)) == {"a": 1}
    assert asyncio.run(parse_json_async(large, settings)) == {"a": "x" * 4096}
    assert threads == [len(large)]


def test_a_huge_recall_query_keeps_its_head_and_tail():
    query = "head " + "x" * 1_000_000 + " tail"
    clipped = clip_query(query)
    assert len(clipped) <= MAX_QUERY_CHARS + 1 and clipped.startswith("head ") and clipped.endswith(" tail")
    assert clip_query("short question?") == "short question?"
