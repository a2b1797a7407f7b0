"""The ``hf`` upstream on a tiny random-weight Llama built offline (tests/hf_tiny.py).

Greedy tokens with a reused prefix cache equal those of a cold prefill (and of
``model.generate``); the stored cache is never mutated by a request; a core
change forces a rebuild; output is schema-valid.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch  # noqa: E402
import transformers  # noqa: F401  (a hard dependency: a missing install must fail, not skip)

from adapters.base import (
    Activation,  # noqa: E402
    CallContext,  # noqa: E402
)
from adapters.errors import UpstreamError  # noqa: E402
from adapters.hf_upstream import HFUpstream, PrefixCache, PrefixEntry, create  # noqa: E402
from adapters.settings import UpstreamSettings  # noqa: E402
from proxy.pipeline.blocks import render_core_block  # noqa: E402
from tests.hf_tiny import build_tiny_model  # noqa: E402
from tests.openai_schema import validate  # noqa: E402

SYSTEM = "You are a helpful assistant. Answer briefly."
QUESTIONS = ("How many cats?", "What colour does Bob like?", "Where do I work?")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def make(model_dir: Path, tmp: Path, **hf: Any) -> HFUpstream:
    settings = UpstreamSettings(provider="hf", hf={"model_path": str(model_dir), "device": "cpu", **hf})
    up = create(settings, tmp)
    asyncio.run(up.warmup())
    return up


@pytest.fixture(scope="module")
def cached(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HFUpstream]:
    up = make(model_dir, tmp_path_factory.mktemp("hf-data"))
    yield up
    asyncio.run(up.aclose())


@pytest.fixture(scope="module")
def plain(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HFUpstream]:
    up = make(model_dir, tmp_path_factory.mktemp("hf-plain"), kv_cache=False)
    yield up
    asyncio.run(up.aclose())


def core(owner: str, facts: int, variant: str = "") -> str:
    return render_core_block(
        [f"{owner} fact {i}: owns {i % 7} cats and likes the colour {('blue', 'red', 'green')[i % 3]}{variant}." for i in range(facts)]
    )


def request(block: str, question: str, max_tokens: int = 16, **extra: Any) -> dict[str, Any]:
    return {
        "model": "tiny",
        "messages": [{"role": "system", "content": f"{SYSTEM}\n\n{block}"}, {"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }


async def ask(up: HFUpstream, body: dict[str, Any], activation: Activation | None = None, stream: bool = False) -> list[int]:
    ctx = CallContext("hf-test", activation=activation)
    if stream:
        chunks = [c async for c in await up.open_stream(body, ctx)]
        for chunk in chunks:
            validate("CreateChatCompletionStreamResponse", chunk)
    else:
        validate("CreateChatCompletionResponse", await up.chat(body, ctx))
    return list(up.last_completion_ids)


def checksum(entry: PrefixEntry) -> tuple[int, str]:
    h = hashlib.sha256()
    for layer in entry.cache.layers:
        h.update(layer.keys.contiguous().numpy().tobytes())
        h.update(layer.values.contiguous().numpy().tobytes())
    return entry.cache.get_seq_length(), h.hexdigest()


@pytest.mark.parametrize("stream", [False, True])
def test_greedy_tokens_identical_with_and_without_cache(cached: HFUpstream, plain: HFUpstream, stream: bool) -> None:
    async def scenario() -> None:
        owners = {name: core(name, 12 + 5 * i, str(stream)) for i, name in enumerate(("Ann", "Bob", "Cy"))}
        for round_, question in enumerate(QUESTIONS):
            for name, block in owners.items():  # owners alternate: A, B, C, A, B, C ...
                body = request(block, question)
                expected = await ask(plain, body, stream=stream)
                assert len(expected) == 16, "no early EOS: the comparison covers every token"
                activation = Activation(name.lower(), f"v-{stream}", block)
                assert await ask(cached, body, activation, stream) == expected
                assert activation.kv == ("miss" if round_ == 0 else "hit")
                assert activation.prefix_tokens > 100
                if round_ and activation.restore_ms is not None:
                    assert activation.restore_ms >= 0

    asyncio.run(scenario())


def test_cached_tokens_equal_model_generate(cached: HFUpstream, model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    block = core("Dee", 20)
    body = request(block, "How many cats?", max_tokens=20)
    asyncio.run(ask(cached, body, Activation("dee", "v1", block)))
    activation = Activation("dee", "v1", block)
    tokens = asyncio.run(ask(cached, body, activation))
    assert activation.kv == "hit"
    tokenizer = cached._tokenizer
    text = tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=20, do_sample=False, eos_token_id=sorted(cached._eos), pad_token_id=0)
    assert tokens == out[0, ids.shape[1] :].tolist()


def test_core_change_forces_a_miss_and_output_stays_identical(cached: HFUpstream, plain: HFUpstream) -> None:
    async def scenario() -> None:
        old, new = core("Eve", 15), core("Eve", 15, " and two dogs")
        await ask(cached, request(old, "Hi"), Activation("eve", "v1", old))
        hit = Activation("eve", "v1", old)
        await ask(cached, request(old, "How many cats?"), hit)
        assert hit.kv == "hit"
        changed = Activation("eve", "v2", new)
        tokens = await ask(cached, request(new, "How many cats?"), changed)
        assert changed.kv == "miss"
        assert tokens == await ask(plain, request(new, "How many cats?"))
        assert not [e for e in cached.kv._ram.values() if e.owner == "eve" and e.core_version == "v1"]
        late = Activation("eve", "v1", old)  # a request still carrying the old version
        await ask(cached, request(old, "How many cats?"), late)
        assert late.kv == "miss", "a dropped version is never served"
        assert tokens == await ask(plain, request(new, "How many cats?"))

    asyncio.run(scenario())


def test_a_request_never_mutates_the_stored_cache(cached: HFUpstream) -> None:
    async def scenario() -> None:
        block = core("Fay", 25)
        await ask(cached, request(block, "Hi"), Activation("fay", "v1", block))
        [entry] = [e for e in cached.kv._ram.values() if e.owner == "fay"]
        before = checksum(entry)
        assert before[0] == len(entry.tokens) > 100
        for stream in (False, True):
            activation = Activation("fay", "v1", block)
            await ask(cached, request(block, "How many cats and what colour?", max_tokens=24), activation, stream)
            assert activation.kv == "hit"
            assert checksum(entry) == before
        assert entry.nbytes == 2 * 2 * 2 * before[0] * 16 * 4  # layers x (k, v) x kv-heads x tokens x head-dim x fp32

    asyncio.run(scenario())


def test_prefix_absent_or_no_activation_is_off(cached: HFUpstream) -> None:
    missing = Activation("gus", "v1", "<memproxy:memories>\nnot in the prompt\n</memproxy:memories>")
    asyncio.run(ask(cached, request("", "Hi"), missing))
    assert missing.kv == "off"


def test_stream_usage_and_stop_strings(cached: HFUpstream, plain: HFUpstream) -> None:
    async def scenario() -> None:
        body = request(core("Hal", 5), "How many cats?", max_tokens=12)
        full = (await plain.chat(body, CallContext("x")))["choices"][0]["message"]["content"]
        assert full
        stop = full[len(full) // 2 : len(full) // 2 + 2]
        cut = await plain.chat({**body, "stop": [stop]}, CallContext("x"))
        assert cut["choices"][0]["message"]["content"] == full[: full.find(stop)]
        assert cut["choices"][0]["finish_reason"] == "stop"
        stream = await plain.open_stream({**body, "stream_options": {"include_usage": True}}, CallContext("x"))
        chunks = [c async for c in stream]
        for chunk in chunks:
            validate("CreateChatCompletionStreamResponse", chunk)
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == full
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools")],
)
def test_unsupported_parameters_are_400(plain: HFUpstream, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(UpstreamError) as info:
        asyncio.run(plain.chat(request("", "Hi", **extra), CallContext("x")))
    assert info.value.status == 400 and info.value.param == param


def test_prefix_cache_byte_cap_and_versions() -> None:
    def entry(key: str, owner: str, version: str, nbytes: int) -> PrefixEntry:
        return PrefixEntry(key, owner, version, (1, 2), object(), nbytes)

    cache = PrefixCache(ram_bytes=2500)
    cache.observe("ann", "v1")
    cache.put(entry("a", "ann", "v1", 1000))
    cache.put(entry("b", "bob", "v1", 1000))
    assert cache.get("a", "ann", "v1") is not None
    cache.put(entry("c", "bob", "v1", 1000))  # evicts b, the least recently used
    assert set(cache._ram) == {"a", "c"} and cache.used_bytes == 2000 and cache.stats["evictions"] == 1
    cache.put(entry("huge", "cy", "v1", 5000))
    assert "huge" not in cache._ram
    assert cache.get("a", "ann", "v2") is None, "another version never matches"
    cache.observe("ann", "v2")
    assert "a" not in cache._ram
    cache.put(entry("old", "ann", "v1", 10))
    assert "old" not in cache._ram
