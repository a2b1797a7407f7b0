"""The litellm SDK against a running memproxy: plain ``openai/`` and the registered ``memproxy`` provider."""

from __future__ import annotations

import asyncio
import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
import pytest  # noqa: E402

from adapters.litellm_provider import register  # noqa: E402
from tests.conftest import wait_for_memories  # noqa: E402


@pytest.fixture(autouse=True)
def _registered():
    register()


def stream_text(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_plain_openai_provider_with_user_streaming_and_not(proxy, upstream):
    base = f"{proxy.url}/v1"
    # litellm sends ``user`` for OpenAI catalog model names (gpt-4o-mini...); the header works for any
    reply = litellm.completion(
        model="openai/gpt-4o-mini", api_base=base, api_key="sk-test", user="lily",
        messages=[{"role": "user", "content": "plain litellm"}],
    )
    assert reply.choices[0].message.content == "Echo: plain litellm"
    text = stream_text(
        litellm.completion(
            model="openai/fake-model", api_base=base, api_key="sk-test", stream=True,
            extra_headers={"X-Memory-User": "lily"}, messages=[{"role": "user", "content": "plain stream"}],
        )
    )
    assert text == "Echo: plain stream"
    assert upstream.chat_requests()[0].body["user"] == "lily"
    assert len(wait_for_memories(proxy.url, "lily", 2)) == 2


def test_registered_provider_sync_and_async_stream_and_not(proxy, upstream):
    base = f"{proxy.url}/v1"
    common = {"api_base": base, "api_key": "sk-test", "extra_headers": {"X-Memory-User": "max"}}
    reply = litellm.completion(model="memproxy/fake-model", messages=[{"role": "user", "content": "sync one"}], temperature=0.3, **common)
    assert reply.choices[0].message.content == "Echo: sync one"
    sent = upstream.chat_requests()[-1]
    assert sent.body["model"] == "fake-model" and sent.body["temperature"] == 0.3
    text = stream_text(litellm.completion(model="memproxy/fake-model", messages=[{"role": "user", "content": "sync stream"}], stream=True, **common))
    assert text == "Echo: sync stream"

    async def run() -> tuple[str, str]:
        one = await litellm.acompletion(model="memproxy/fake-model", messages=[{"role": "user", "content": "async one"}], **common)
        chunks = [c async for c in await litellm.acompletion(model="memproxy/fake-model", messages=[{"role": "user", "content": "async stream"}], stream=True, **common)]
        return one.choices[0].message.content, stream_text(chunks)

    assert asyncio.run(run()) == ("Echo: async one", "Echo: async stream")
    assert len(wait_for_memories(proxy.url, "max", 4)) == 4


def test_registered_provider_user_names_the_memory_owner(proxy, upstream):
    # litellm only forwards ``user`` for OpenAI catalog models; the provider also sends it as X-Memory-User
    base = f"{proxy.url}/v1"
    litellm.completion(model="memproxy/fake-model", api_base=base, user="tina", messages=[{"role": "user", "content": "owner check"}])
    list(litellm.completion(model="memproxy/fake-model", api_base=base, user="tina", stream=True, messages=[{"role": "user", "content": "owner stream"}]))
    assert len(wait_for_memories(proxy.url, "tina", 2)) == 2


def test_memory_reaches_a_later_call_through_the_provider(proxy, upstream):
    base = f"{proxy.url}/v1"
    litellm.completion(model="memproxy/fake-model", api_base=base, user="alice", messages=[{"role": "user", "content": "Just so you know, I'm allergic to peanuts."}])
    wait_for_memories(proxy.url, "alice", 1)
    litellm.completion(model="memproxy/fake-model", api_base=base, user="alice", messages=[{"role": "user", "content": "Suggest a dinner recipe that is safe with my allergy."}])
    assert "allergic to peanuts" in json.dumps(upstream.chat_requests()[-1].body["messages"])


def test_router_model_list_sync_and_async(proxy, upstream):
    router = litellm.Router(
        model_list=[
            {
                "model_name": "memory-model",
                "litellm_params": {"model": "memproxy/fake-model", "api_base": f"{proxy.url}/v1", "api_key": "sk-test"},
            }
        ]
    )
    reply = router.completion(model="memory-model", user="rob", messages=[{"role": "user", "content": "router sync"}])
    assert reply.choices[0].message.content == "Echo: router sync"
    assert stream_text(router.completion(model="memory-model", user="rob", stream=True, messages=[{"role": "user", "content": "router stream"}])) == "Echo: router stream"

    async def run() -> str:
        one = await router.acompletion(model="memory-model", user="rob", messages=[{"role": "user", "content": "router async"}])
        chunks = [c async for c in await router.acompletion(model="memory-model", user="rob", stream=True, messages=[{"role": "user", "content": "router astream"}])]
        return one.choices[0].message.content + "|" + stream_text(chunks)

    assert asyncio.run(run()) == "Echo: router async|Echo: router astream"
    assert len(wait_for_memories(proxy.url, "rob", 4)) == 4
