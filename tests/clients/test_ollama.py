"""The official ``ollama`` client -> memproxy's native Ollama API -> a fake Ollama, over real HTTP."""

from __future__ import annotations

import asyncio
import json

import httpx
import ollama
import pytest

from testing.fake_ollama import DONE_STATS, VERSION
from testing.processes import memproxy_serve
from tests.conftest import memories_before_barrier, wait_for_memories

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def client_for(server, user: str | None = None) -> ollama.Client:
    return ollama.Client(host=server.url, headers={"X-Memory-User": user} if user else None)


def prompt_of(fake, path: str = "/api/chat") -> str:
    return json.dumps(fake.requests_to(path)[-1].body)


def test_chat_non_streaming_keeps_the_done_object(ollama_proxy, ollama_upstream):
    reply = client_for(ollama_proxy, "olga").chat(
        model="llama3.2", messages=[{"role": "user", "content": "Hello Ollama"}], stream=False
    )
    assert reply.message.content == "Echo: Hello Ollama"
    assert reply.done is True and reply.done_reason == "stop"
    for key, value in DONE_STATS.items():
        assert getattr(reply, key) == value
    assert ollama_upstream.requests_to("/api/chat")[-1].body["stream"] is False


def test_chat_streaming_relays_every_line_and_the_done_object(ollama_proxy, ollama_upstream):
    parts = list(
        client_for(ollama_proxy, "olga").chat(
            model="llama3.2", messages=[{"role": "user", "content": "stream four words please"}], stream=True
        )
    )
    assert "".join(p.message.content or "" for p in parts) == "Echo: stream four words please"
    assert len(parts) >= 5
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    for key, value in DONE_STATS.items():
        assert getattr(parts[-1], key) == value


def test_streaming_is_ndjson_with_memory_headers(ollama_proxy, ollama_upstream):
    with httpx.stream(
        "POST",
        f"{ollama_proxy.url}/api/chat",
        json={"model": "llama3.2", "messages": [{"role": "user", "content": "raw lines"}]},
        headers={"X-Memory-User": "olga"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert response.headers["x-memory-status"] == "ok"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1] == {
        "model": "llama3.2",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        **DONE_STATS,
    }


def test_async_client_streaming_and_not(ollama_proxy, ollama_upstream):
    async def run() -> tuple[str, str]:
        client = ollama.AsyncClient(host=ollama_proxy.url, headers={"X-Memory-User": "olga"})
        one = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "async one"}], stream=False)
        text = ""
        async for part in await client.chat(
            model="llama3.2", messages=[{"role": "user", "content": "async two"}], stream=True
        ):
            text += part.message.content or ""
        generated = await client.generate(model="llama3.2", prompt="async three", stream=False)
        assert generated.response.startswith("Echo: ") and generated.response.endswith("async three")
        return one.message.content, text

    one, two = asyncio.run(run())
    assert one == "Echo: async one" and two == "Echo: async two"


def test_generate_streaming_and_not(ollama_proxy, ollama_upstream):
    client = client_for(ollama_proxy, "gen")
    whole = client.generate(model="llama3.2", prompt="why is the sky blue", stream=False)
    assert whole.response == "Echo: why is the sky blue" and whole.context == [1, 2, 3]
    assert whole.eval_count == DONE_STATS["eval_count"]
    parts = list(client.generate(model="llama3.2", prompt="stream it", stream=True))
    assert "".join(p.response for p in parts).endswith("stream it")
    assert parts[-1].done and parts[-1].total_duration == DONE_STATS["total_duration"]


def test_a_fact_told_in_one_chat_is_recalled_in_a_later_chat_of_the_same_user_only(ollama_proxy, ollama_upstream):
    client_for(ollama_proxy, "alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": "Just so you know, I'm allergic to peanuts."}], stream=False
    )
    assert any("peanuts" in m["content"] for m in wait_for_memories(ollama_proxy.url, "alice", 1))
    ollama_upstream.clear()

    list(
        client_for(ollama_proxy, "alice").chat(
            model="llama3.2", messages=[{"role": "user", "content": "Suggest a dinner recipe that is safe with my allergy."}], stream=True
        )
    )
    sent = ollama_upstream.requests_to("/api/chat")[-1].body["messages"]
    assert sent[0]["role"] == "system" and "allergic to peanuts" in sent[0]["content"]
    assert "<memproxy:memories>" in sent[0]["content"]

    client_for(ollama_proxy, "bob").chat(
        model="llama3.2", messages=[{"role": "user", "content": "Suggest a dinner recipe that is safe with my allergy."}], stream=False
    )
    assert "peanuts" not in prompt_of(ollama_upstream)


def test_streamed_replies_are_written_and_recalled_by_generate(ollama_proxy, ollama_upstream):
    list(
        client_for(ollama_proxy, "gina").chat(
            model="llama3.2", messages=[{"role": "user", "content": "My favourite colour is teal, remember that."}], stream=True
        )
    )
    stored = wait_for_memories(ollama_proxy.url, "gina", 1)
    assert any("teal" in m["content"] and "Echo:" in m["content"] for m in stored)
    client_for(ollama_proxy, "gina").generate(model="llama3.2", prompt="What is my favourite colour?", stream=False)
    body = ollama_upstream.requests_to("/api/generate")[-1].body
    assert "teal" in body["prompt"] and body["prompt"].endswith("What is my favourite colour?")
    assert "system" not in body  # the Modelfile's own system prompt is not replaced


def test_memory_off_is_a_pure_passthrough(ollama_proxy, ollama_upstream):
    client = ollama.Client(host=ollama_proxy.url, headers={"X-Memory-User": "quiet", "X-Memory": "off"})
    client.chat(model="llama3.2", messages=[{"role": "user", "content": "I live in Lisbon."}], stream=False)
    sent = ollama_upstream.requests_to("/api/chat")[-1].body
    assert sent["messages"] == [{"role": "user", "content": "I live in Lisbon."}]
    assert memories_before_barrier(ollama_proxy.url, "quiet") == []


def test_tools_round_trip_streaming_and_not(ollama_proxy, ollama_upstream):
    client = client_for(ollama_proxy, "toolie")
    reply = client.chat(
        model="llama3.2", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS, stream=False
    )
    call = reply.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris", "unit": "c"}
    assert ollama_upstream.requests_to("/api/chat")[-1].body["tools"] == TOOLS
    calls = [c for p in client.chat(model="llama3.2", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS, stream=True) for c in p.message.tool_calls or []]
    assert calls[0].function.name == "get_weather"
    # the tool result goes back in the next turn, untouched
    follow = client.chat(
        model="llama3.2",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "18 C and sunny", "tool_name": "get_weather"},
        ],
        stream=False,
    )
    assert follow.message.content
    sent = ollama_upstream.requests_to("/api/chat")[-1].body["messages"]
    assert sent[-1] == {"role": "tool", "content": "18 C and sunny", "tool_name": "get_weather"}
    assert sent[-2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}


def test_options_format_keep_alive_think_and_images_pass_through(ollama_proxy, ollama_upstream):
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    reply = client_for(ollama_proxy, "opts").chat(
        model="llama3.2",
        messages=[{"role": "user", "content": "describe this", "images": ["aGVsbG8="]}],
        options={"temperature": 0.1, "num_ctx": 4096, "seed": 7},
        format=schema,
        keep_alive="5m",
        think=True,
        stream=False,
    )
    assert json.loads(reply.message.content) == {"echo": "describe this"}
    assert reply.message.thinking == "Let me think."
    body = ollama_upstream.requests_to("/api/chat")[-1].body
    assert body["options"] == {"temperature": 0.1, "num_ctx": 4096, "seed": 7}
    assert body["format"] == schema and body["keep_alive"] == "5m" and body["think"] is True
    assert body["messages"][-1]["images"] == ["aGVsbG8="]
    client_for(ollama_proxy, "opts").generate(
        model="llama3.2", prompt="img", images=["aGVsbG8="], format="json", options={"top_k": 3}, keep_alive=0, stream=False
    )
    body = ollama_upstream.requests_to("/api/generate")[-1].body
    assert body["images"] == ["aGVsbG8="] and body["format"] == "json"
    assert body["options"] == {"top_k": 3} and body["keep_alive"] == 0


def test_model_listing_show_ps_version_and_embeddings_pass_through(ollama_proxy, ollama_upstream):
    client = client_for(ollama_proxy)
    assert [m.model for m in client.list().models] == ["llama3.2:latest", "fake-model:latest"]
    assert client.show("llama3.2").capabilities == ["completion", "tools"]
    assert client.ps().models[0].name == "llama3.2:latest"
    assert httpx.get(f"{ollama_proxy.url}/api/version").json() == {"version": VERSION}
    embedded = client.embed(model="nomic-embed-text", input=["a", "b"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 8
    assert len(client.embeddings(model="nomic-embed-text", prompt="a").embedding) == 8
    assert ollama_upstream.requests_to("/api/embed")[-1].body["input"] == ["a", "b"]
    assert memories_before_barrier(ollama_proxy.url, "default") == [], "embeddings are never stored"


def test_errors_are_in_ollama_shape(ollama_proxy, ollama_upstream):
    client = client_for(ollama_proxy)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="error-404", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert caught.value.status_code == 404 and "not found" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        list(client.chat(model="error-404", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert caught.value.status_code == 404
    bad = httpx.post(f"{ollama_proxy.url}/api/chat", content=b"{not json")
    assert bad.status_code == 400 and set(bad.json()) == {"error"}
    missing = httpx.post(f"{ollama_proxy.url}/api/chat", json={"messages": []})
    assert missing.status_code == 400 and set(missing.json()) == {"error"}
    unknown = httpx.get(f"{ollama_proxy.url}/api/nothing-here")
    assert unknown.status_code == 404 and set(unknown.json()) == {"error"}
    with pytest.raises(ollama.ResponseError) as caught:
        list(client.chat(model="broken-stream", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "broke" in caught.value.error


def test_unreachable_ollama_is_a_502_in_ollama_shape(make_proxy):
    proxy = make_proxy(ollama={"base_url": "http://127.0.0.1:9"})
    response = httpx.post(
        f"{proxy.url}/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    )
    assert response.status_code == 502 and "Could not reach Ollama" in response.json()["error"]


def test_the_base_url_comes_from_env_and_the_serve_flag(tmp_path, monkeypatch, upstream_url, fake_ollama_server):
    from proxy.config import load_settings

    assert load_settings().ollama.base_url == "http://127.0.0.1:11434"
    monkeypatch.setenv("MEMPROXY_OLLAMA__BASE_URL", "http://127.0.0.9:11434")
    assert load_settings().ollama.base_url == "http://127.0.0.9:11434"
    assert load_settings(ollama={"base_url": "http://flag:1"}).ollama.base_url == "http://flag:1"

    args = ("--upstream-base-url", upstream_url, "--ollama-base-url", fake_ollama_server[1].url)
    with memproxy_serve(*args, data_dir=tmp_path / "data") as url:
        reply = ollama.Client(host=url).chat(
            model="llama3.2", messages=[{"role": "user", "content": "via the flag"}], stream=False
        )
        assert reply.message.content == "Echo: via the flag"


def test_model_management_is_relayed_byte_for_byte(ollama_proxy, ollama_upstream):
    client = ollama.Client(host=ollama_proxy.url)
    statuses = [p.status for p in client.pull("llama3.2", stream=True)]
    assert statuses == ["pulling manifest", "pulling llama3.2", "success"]
    assert client.delete("llama3.2").status == "success"
    with pytest.raises(ollama.ResponseError) as missing:
        client.delete("no-such-model")
    assert missing.value.status_code == 404 and "not found" in missing.value.error
    root = httpx.get(ollama_proxy.url)
    assert root.status_code == 200 and "Ollama is running" in root.text
