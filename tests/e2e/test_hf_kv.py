"""The ``hf`` upstream through the proxy: X-Memory-KV miss, then hit, with the openai client."""

from __future__ import annotations

import httpx
import transformers  # noqa: F401  (a hard dependency: a missing install must fail, not skip)
from openai import OpenAI

from tests.hf_tiny import build_tiny_model  # noqa: E402
from tests.openai_schema import validate  # noqa: E402


def test_hf_upstream_reuses_the_core_prefix_kv(make_proxy, tmp_path):
    model_dir = build_tiny_model(tmp_path / "tiny")
    proxy = make_proxy(upstream={"provider": "hf", "base_url": None, "hf": {"model_path": str(model_dir), "device": "cpu"}})
    created = httpx.post(
        f"{proxy.url}/v1/memories",
        json={"user": "kim", "memories": [{"content": "Kim owns three cats.", "tier": "core"}, {"content": "Kim likes blue.", "tier": "core"}]},
        timeout=120,
    )
    assert created.status_code == 201, created.text
    client = OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test", max_retries=0, default_headers={"X-Memory-User": "kim", "X-Memory": "read"})
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How many cats?"}]

    first = client.chat.completions.with_raw_response.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    assert first.headers["x-memory-core"] == "2" and first.headers["x-memory-kv"] == "miss"
    completion = first.parse()
    validate("CreateChatCompletionResponse", completion.model_dump(exclude_unset=True))

    second = client.chat.completions.with_raw_response.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    assert second.headers["x-memory-kv"] == "hit"
    assert second.parse().choices[0].message.content == completion.choices[0].message.content

    with client.chat.completions.with_streaming_response.create(
        model="tiny", messages=messages, max_tokens=8, temperature=0, stream=True
    ) as streamed:
        assert streamed.headers["x-memory-kv"] == "hit"
        text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed.parse() if chunk.choices)
    assert text == completion.choices[0].message.content

    off = client.chat.completions.with_raw_response.create(
        model="tiny", messages=messages, max_tokens=4, extra_headers={"X-Memory": "off"}
    )
    assert off.headers["x-memory-kv"] == "off"
