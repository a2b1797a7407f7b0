"""End to end through the real embedded model: openai client -> memproxy -> llama.cpp (Gemma 3 270M)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.conftest import wait_for_memories
from tests.openai_schema import validate


@pytest.fixture(scope="module")
def local_proxy(tmp_path_factory: pytest.TempPathFactory, embedder, gemma_gguf: Path):
    from proxy.app import create_app
    from proxy.config import load_settings
    from testing.serving import ServerThread

    settings = load_settings(
        data_dir=str(tmp_path_factory.mktemp("local-data")),
        upstream={"provider": "llamacpp", "llamacpp": {"model_path": str(gemma_gguf), "n_ctx": 2048}},
        memory={"recall_deadline_ms": 10_000},
    )
    with ServerThread(create_app(settings, embedder=embedder)) as server:
        yield server


def test_local_model_answers_non_streaming_with_memory(local_proxy):
    client = OpenAI(base_url=f"{local_proxy.url}/v1", api_key="unused", max_retries=0)
    first = client.chat.completions.create(
        model="any-name-works",
        messages=[{"role": "user", "content": "I'm allergic to peanuts."}],
        max_tokens=12,
        temperature=0,
        user="pat",
    )
    assert first.model == "any-name-works"
    assert first.choices[0].message.content
    validate("CreateChatCompletionResponse", first.model_dump(exclude_unset=True))
    assert wait_for_memories(local_proxy.url, "pat", 1)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Suggest a dinner recipe."}],
        max_tokens=12,
        temperature=0,
        user="pat",
    )
    raw.parse()
    assert raw.headers["x-memory-status"] == "ok"
    assert int(raw.headers["x-memory-recalled"]) >= 1


def test_local_model_streams(local_proxy):
    client = OpenAI(base_url=f"{local_proxy.url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="gemma",
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_local_model_is_listed(local_proxy):
    body = httpx.get(f"{local_proxy.url}/v1/models").json()
    validate("ListModelsResponse", body)
    assert [m["id"] for m in body["data"]] == ["gemma-3-270m"]
