"""Anthropic prompt caching through litellm: the core block's system message
carries ``cache_control`` on the wire, checked against a fake Anthropic
``/v1/messages`` server on loopback (litellm's own ``anthropic/`` provider)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.base import Activation, CallContext
from adapters.litellm_upstream import create, mark_cache_control
from adapters.settings import UpstreamSettings
from proxy.pipeline import MemoryBlocks, MemoryOutcome
from proxy.pipeline.blocks import render_block, render_core_block
from proxy.pipeline.messages import inject_blocks
from testing.fake_anthropic import FakeAnthropic
from testing.serving import ServerThread

CORE = render_core_block(["Ann owns three cats.", "Ann likes blue."])
RECALLED = render_block(["(2024-05-01) Ann visited Porto."])


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic(reply="Three.")
    with ServerThread(fake.app()) as server:
        yield fake, server.url


@pytest.fixture()
def anthropic(anthropic_server: tuple[FakeAnthropic, str]) -> tuple[str, FakeAnthropic]:
    fake, url = anthropic_server
    fake.clear()
    return url, fake


def body_with_memory(placement: str = "system") -> dict[str, Any]:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How many cats?"}]
    return {"model": "x", "max_tokens": 16, "messages": inject_blocks(messages, MemoryBlocks(CORE, RECALLED, MemoryOutcome("ok")), placement)}


@pytest.mark.parametrize("model", ["anthropic/claude-3-5-haiku-latest", "claude-sonnet-4-20250514"])
def test_core_block_is_a_cache_breakpoint_on_the_wire(anthropic: tuple[str, FakeAnthropic], model: str) -> None:
    url, fake = anthropic
    up = create(UpstreamSettings(provider="litellm", model=model, base_url=url, api_key="sk-ant-test"), None)  # type: ignore[arg-type]
    ctx = CallContext("r1", activation=Activation("ann", "v1", CORE))
    body = body_with_memory()
    out = asyncio.run(up.chat(body, ctx))
    assert out["choices"][0]["message"]["content"] == "Three."
    [request] = fake.requests_to("/v1/messages")
    sent = request.body
    system = sent["system"]
    assert isinstance(system, list)
    marked = [b for b in system if b.get("cache_control")]
    assert len(marked) == 1 and marked[0]["cache_control"] == {"type": "ephemeral"}
    assert marked[0]["text"] == f"Be brief.\n\n{CORE}", "the breakpoint ends exactly at the core block"
    assert "".join(b["text"] for b in system) == body["messages"][0]["content"], "no text lost or reordered"
    assert RECALLED in system[-1]["text"] and "cache_control" not in system[-1]
    assert body["messages"][0]["content"].startswith("Be brief."), "the caller's body is not mutated"
    for message in sent["messages"]:
        content = message["content"]
        assert isinstance(content, str) or not any(isinstance(p, dict) and p.get("cache_control") for p in content)


def test_no_core_block_means_no_cache_control(anthropic: tuple[str, FakeAnthropic]) -> None:
    url, fake = anthropic
    up = create(UpstreamSettings(provider="litellm", model="anthropic/claude-3-5-haiku-latest", base_url=url, api_key="k"), None)  # type: ignore[arg-type]
    asyncio.run(up.chat({"model": "x", "max_tokens": 8, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}, CallContext("r2")))
    [request] = fake.requests
    assert "cache_control" not in str(request.body)


def test_other_providers_are_untouched() -> None:
    up = create(UpstreamSettings(provider="litellm", base_url="http://127.0.0.1:9/v1"), None)  # type: ignore[arg-type]
    import litellm

    body = {**body_with_memory(), "model": "openai/gpt-4o-mini"}
    kwargs = up.completion_kwargs(litellm, body, CallContext("r3", activation=Activation("ann", "v1", CORE)), stream=False)
    assert kwargs["messages"] == body["messages"]


def test_list_contents_and_last_user_placement() -> None:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": CORE}]},
        {"role": "user", "content": f"{RECALLED}\n\nHi"},
    ]
    out = mark_cache_control(messages, CORE)
    assert out[0]["content"][0] == {"type": "text", "text": "Be brief."}
    assert out[0]["content"][1] == {"type": "text", "text": CORE, "cache_control": {"type": "ephemeral"}}
    assert out[1] is messages[1] and "cache_control" not in messages[0]["content"][1]
