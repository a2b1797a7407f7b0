"""``memproxy bench facts``: the suite's checks, the scoring, and a tiny run through the real chat path."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import facts as bench
from memory.render import BLOCK_CLOSE, BLOCK_OPEN
from testing.chatter import long_reply
from tests.bench.test_longmemeval import PETS

TINY_SUITE = """
facts:
- id: cat
  category: pets
  say: "My cat is called Mr. Pickles, he hates the vet. How do I calm him before appointments?"
  ask: "What is my cat Mr. Pickles like at the vet?"
  expect: ["Mr. Pickles"]
- id: city
  category: home
  say: "I live in Porto, near the river, and the damp is ruining my books. How do I keep them dry?"
  update: "We moved from Porto to Lisbon last month. Which houseplants like bright light?"
  ask: "Which city do I live in?"
  expect: ["Lisbon"]
  stale: "near the river"
"""


def test_the_suite_is_big_varied_and_consistent() -> None:
    suite = bench.load_suite()
    assert len(suite) >= 60 and sum(f.changes for f in suite) >= 8
    assert {f.category for f in suite} == set(bench.CATEGORIES)
    groups = bench.owners_of(suite)
    assert all(8 <= len(g) <= 10 for g in groups) and sum(map(len, groups)) == len(suite)


def test_a_bad_suite_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_SUITE.replace('expect: ["Lisbon"]', 'expect: ["Madrid"]'))
    with pytest.raises(ValueError, match="Madrid"):
        bench.load_suite(bad)
    bad.write_text(TINY_SUITE.replace('stale: "near the river"', 'stale: "Porto"'))
    with pytest.raises(ValueError, match="stale"):
        bench.load_suite(bad)


def test_scoring_reads_the_memory_blocks_only() -> None:
    block = f"{BLOCK_OPEN}\n- [2026-01-01] User: We moved from Porto to Lisbon.\n{BLOCK_CLOSE}"
    messages = [{"role": "system", "content": f"Be brief.\n{block}"},
                {"role": "user", "content": [{"type": "text", "text": "I used to live near the river. Which city?"}]}]
    blocks = bench.memory_blocks(messages)
    assert blocks == [block]
    city = bench.load_suite_text(TINY_SUITE)[1]
    assert bench.judge(city, "\n".join(blocks)) == {"current": True, "stale": False, "recalled": True}
    assert bench.judge(city, block + " near the river") == {"current": True, "stale": True, "recalled": False}


def test_the_fake_answers_long_deterministic_replies(upstream_url: str) -> None:
    body = {"model": "long-300", "messages": [{"role": "user", "content": "How do I calm my cat before the vet?"}]}
    first = httpx.post(f"{upstream_url}/chat/completions", json=body, timeout=30).json()
    text = first["choices"][0]["message"]["content"]
    assert text == long_reply("How do I calm my cat before the vet?")
    assert 280 <= len(text.split()) <= 340 and "vet" in text.lower()


def test_a_tiny_run_through_the_chat_path(tmp_path: Path, embedder: Any) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(TINY_SUITE)
    data = tmp_path / "lme.json.gz"
    with gzip.open(data, "wt", encoding="utf-8") as handle:
        json.dump([PETS], handle)
    results = bench.measure(suite, data, background=3, per_owner=10, embedder=embedder, model="long-60")
    assert results["facts"] == 2 and results["owners"] == 1 and results["changed"]["facts"] == 1
    cat = next(r for r in results["rows"] if r["id"] == "cat")
    assert cat["recalled"] and cat["tokens"] > 0  # asked with its own words: found
    assert results["recalled"] == sum(r["recalled"] for r in results["rows"])
    assert results["latency_ms"]["added"]["n"] == 2
    assert "Everyday facts through chat - 2 facts" in bench.render(results)
