"""Every front end runs the same memory pipeline: core block first in the
stable system slot, recalled block per placement, the same ``X-Memory-*``
headers, and the KV activation handed to the upstream.

Driven with the official clients (openai: chat completions and Responses,
native and bridged; ollama: chat and generate) against fakes over real HTTP,
and a real local transformers model for the KV activation.
"""

from __future__ import annotations

import httpx
import ollama
import pytest
from openai import OpenAI

from tests.hf_tiny import build_tiny_model

HEADERS = ("x-memory-status", "x-memory-recalled", "x-memory-tokens", "x-memory-core", "x-memory-kv")
CORE = ["Quinn is allergic to peanuts.", "Quinn is vegetarian."]
RECALLED = "Quinn's bike is a red Peugeot from 1984."
QUESTION = "What colour is my Peugeot bike?"
MARK = "from 1984"  # only in the recalled memory, never in the question


def seed(url: str, user: str) -> None:
    memories = [*({"content": c, "tier": "core"} for c in CORE), {"content": RECALLED}]
    created = httpx.post(f"{url}/v1/memories", json={"user": user, "memories": memories}, timeout=120)
    assert created.status_code == 201, created.text


def assert_core_then_recalled(system: str, *, recalled_here: bool) -> None:
    """``system`` holds the core block (in order), then the recalled block when ``recalled_here``."""
    first, second = system.index(CORE[0]), system.index(CORE[1])
    assert first < second
    assert system.count("<memproxy:memories>") == (2 if recalled_here else 1)
    if recalled_here:
        assert second < system.index(MARK)
    else:
        assert MARK not in system


def memory_headers(headers: httpx.Headers) -> dict[str, str]:
    return {name: headers[name] for name in HEADERS}


@pytest.fixture(params=["system", "last_user"])
def front_proxy(request, make_proxy, fake_ollama_server):
    placement = request.param
    proxy = make_proxy(memory={"placement": placement}, ollama={"base_url": fake_ollama_server[1].url})
    seed(proxy.url, "quinn")
    return placement, proxy


def test_chat_completions(front_proxy, upstream):
    placement, proxy = front_proxy
    client = OpenAI(base_url=f"{proxy.url}/v1", api_key="k", max_retries=0, default_headers={"X-Memory-User": "quinn"})
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
    )
    assert memory_headers(raw.headers) == expected_headers(raw.headers)
    messages = upstream.chat_requests()[-1].body["messages"]
    assert messages[0]["content"].startswith("Be brief.\n\n<memproxy:memories>")
    assert_core_then_recalled(messages[0]["content"], recalled_here=placement == "system")
    if placement == "last_user":
        assert MARK in messages[-1]["content"] and messages[-1]["content"].endswith(QUESTION)


@pytest.mark.parametrize("mode", ["native", "bridge"])
def test_responses(front_proxy, upstream, make_proxy, fake_ollama_server, mode):
    placement, _ = front_proxy
    proxy = make_proxy(memory={"placement": placement}, upstream={"responses": mode})
    seed(proxy.url, "quinn")
    client = OpenAI(base_url=f"{proxy.url}/v1", api_key="k", max_retries=0, default_headers={"X-Memory-User": "quinn"})
    raw = client.responses.with_raw_response.create(model="m", instructions="Be brief.", input=QUESTION)
    assert raw.parse().instructions == "Be brief."
    assert memory_headers(raw.headers) == expected_headers(raw.headers)
    if mode == "native":
        sent = upstream.requests_to("/v1/responses")[-1].body
        system, last_user = sent["instructions"], sent["input"]
    else:
        messages = upstream.chat_requests()[-1].body["messages"]
        system, last_user = messages[0]["content"], messages[-1]["content"]
    assert system.startswith("Be brief.\n\n<memproxy:memories>")
    assert_core_then_recalled(system, recalled_here=placement == "system")
    if placement == "last_user":
        assert MARK in last_user and last_user.endswith(QUESTION)


def test_ollama_chat_and_generate(front_proxy, ollama_upstream):
    placement, proxy = front_proxy
    with httpx.Client(base_url=proxy.url, headers={"X-Memory-User": "quinn"}, timeout=120) as http:
        chat = http.post(
            "/api/chat",
            json={"model": "m", "stream": False, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]},
        )
        generate = http.post("/api/generate", json={"model": "m", "stream": False, "system": "Be brief.", "prompt": QUESTION})
    for response in (chat, generate):
        assert response.status_code == 200, response.text
        assert memory_headers(response.headers) == expected_headers(response.headers)
    messages = ollama_upstream.requests_to("/api/chat")[-1].body["messages"]
    assert messages[0]["content"].startswith("Be brief.\n\n<memproxy:memories>")
    assert_core_then_recalled(messages[0]["content"], recalled_here=placement == "system")
    sent = ollama_upstream.requests_to("/api/generate")[-1].body
    assert sent["system"].startswith("Be brief.\n\n<memproxy:memories>")
    assert_core_then_recalled(sent["system"], recalled_here=placement == "system")
    assert sent["prompt"].endswith(QUESTION) and (MARK in sent["prompt"]) == (placement == "last_user")


def test_ollama_generate_without_a_system_keeps_the_modelfile_system(front_proxy, ollama_upstream):
    _, proxy = front_proxy
    client = ollama.Client(host=proxy.url, headers={"X-Memory-User": "quinn"})
    client.generate(model="m", prompt=QUESTION, stream=False)
    sent = ollama_upstream.requests_to("/api/generate")[-1].body
    assert "system" not in sent, "adding a system would replace the model's own"
    assert sent["prompt"].startswith("<memproxy:memories>") and sent["prompt"].endswith(QUESTION)
    assert_core_then_recalled(sent["prompt"], recalled_here=True)


def expected_headers(headers: httpx.Headers) -> dict[str, str]:
    """What every front end reports for QUESTION: two core items, one recalled, no local KV."""
    assert int(headers["x-memory-tokens"]) > 0
    return {
        "x-memory-status": "ok",
        "x-memory-recalled": "1",
        "x-memory-tokens": headers["x-memory-tokens"],
        "x-memory-core": "2",
        "x-memory-kv": "off",  # the fakes are remote servers: no local prefix cache
    }


def test_kv_activation_reaches_a_local_upstream_from_chat_and_responses(make_proxy, tmp_path):
    """The hf upstream reuses the [system + core] prefix whichever OpenAI front end the request came in on."""
    model_dir = build_tiny_model(tmp_path / "tiny")
    proxy = make_proxy(upstream={"provider": "hf", "base_url": None, "hf": {"model_path": str(model_dir), "device": "cpu"}})
    seed(proxy.url, "quinn")
    client = OpenAI(
        base_url=f"{proxy.url}/v1", api_key="k", max_retries=0, default_headers={"X-Memory-User": "quinn", "X-Memory": "read"}
    )
    first = client.responses.with_raw_response.create(model="tiny", instructions="Be brief.", input=QUESTION, max_output_tokens=4)
    assert (first.headers["x-memory-core"], first.headers["x-memory-kv"]) == ("2", "miss")
    again = client.responses.with_raw_response.create(model="tiny", instructions="Be brief.", input="And my allergy?", max_output_tokens=4)
    assert again.headers["x-memory-kv"] == "hit"
    chat = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}], max_tokens=4
    )
    assert chat.headers["x-memory-kv"] == "hit", "the same prefix, whichever front end built it"
