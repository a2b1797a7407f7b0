"""``memproxy bench ttft``: time to first token with and without activation memory.

Runs the embedded llama.cpp model (the packaged Gemma 3 270M unless
``upstream.llamacpp.model_path`` says otherwise) in-process. Two owners, each
with a core memory block of N Gemma tokens, send short questions in
alternation (A, B, A, B ...), so llama.cpp's implicit single-slot prefix reuse
cannot help. Each request is the prompt the proxy builds: the system prompt,
then the core block (``proxy.pipeline.blocks.render_core_block``), then the
question. ``cold`` sends no activation (every request prefills everything);
``kv`` passes the stable prefix, so the owner's cached KV state is restored and
only the question is prefilled. The first request per owner in ``kv`` builds
the cache (a miss) and is reported apart, as is the first (warm-up) request
per owner in ``cold``. TTFT is the time from the call to
the first streamed content chunk. A row with no core block checks that
requests without one do not get slower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.base import Activation, CallContext
from adapters.llamacpp_upstream import NAME, LlamaCppSettings, LlamaCppUpstream
from bench.stats import median, percentile
from proxy.config import load_settings
from proxy.pipeline.blocks import render_core_block

SYSTEM = "You are a helpful assistant. Answer briefly."
QUESTIONS = (
    "What should I cook tonight?",
    "Any plans for the weekend?",
    "Which colour do I like?",
    "How many pets do I have?",
    "Where do I work?",
    "Suggest a book for me.",
)
FACTS = (
    "{o} lives in {c} with {n} cats and a dog named {p}.",
    "{o} works as a {j} and starts at {n} in the morning.",
    "{o} prefers {f} for breakfast and never drinks coffee after {n} pm.",
    "{o} is allergic to {a} and keeps an epipen at home.",
    "{o}'s sister {p} is getting married in {c} in June.",
    "{o} is learning {l} and practises {n} minutes every day.",
)
WORDS = {
    "c": ("Leeds", "Porto", "Oslo", "Kyoto", "Lima", "Graz"),
    "p": ("Rex", "Maria", "Luna", "Tom", "Ines", "Kofi"),
    "j": ("nurse", "welder", "teacher", "pilot", "baker", "chemist"),
    "f": ("porridge", "eggs", "toast", "fruit", "yoghurt", "rice"),
    "a": ("peanuts", "shellfish", "pollen", "latex", "sesame", "dust"),
    "l": ("Portuguese", "Japanese", "Welsh", "Greek", "Hindi", "Polish"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="512,1536,3072", help="core block sizes in Gemma tokens")
    parser.add_argument("--requests", type=int, default=10, help="timed requests per mode and size (default 10)")
    parser.add_argument("--max-tokens", type=int, default=4, help="tokens generated per request")
    parser.add_argument("--config", help="a memproxy config file (for upstream.llamacpp)")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = asyncio.run(measure(sizes, args.requests, args.max_tokens, args.config))
    print(render(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


def core_lines(owner: str, count: int) -> list[str]:
    lines = []
    for i in range(count):
        words = {k: v[(i * 7 + len(owner)) % len(v)] for k, v in WORDS.items()}
        lines.append(FACTS[i % len(FACTS)].format(o=owner, n=i % 9 + 1, **words) + f" (note {i})")
    return lines


async def measure(sizes: list[int], requests: int, max_tokens: int, config: str | None) -> dict[str, Any]:
    settings = load_settings(config)
    with tempfile.TemporaryDirectory(prefix="memproxy-ttft-") as tmp:
        options = settings.upstream.options(NAME, LlamaCppSettings).model_copy(
            update={"kv_cache": True, "kv_cache_disk": False}
        )
        upstream_settings = settings.upstream.model_copy(update={NAME: options.model_dump()})
        model_dir = settings.data_path if options.model_path is None else Path(tmp)
        up = LlamaCppUpstream(upstream_settings, model_dir)
        try:
            await up.warmup()
            rows = [await measure_size(up, 0, requests, max_tokens)]
            for size in sizes:
                rows.append(await measure_size(up, size, requests, max_tokens))
        finally:
            await up.aclose()
    return {"model": options.model_alias, "requests": requests, "rows": rows}


async def block_of(up: LlamaCppUpstream, owner: str, size: int) -> str:
    """A core block of about ``size`` Gemma tokens."""
    count = max(1, size // 18)
    while True:
        block = render_core_block(core_lines(owner, count))
        n = await up._on_worker(lambda b=block: len(up._model().tokenize(b.encode("utf-8"), add_bos=False)))
        if n >= size or count > 10 * size:
            return block
        count += max(1, (size - n) // 18)


async def ttft(up: LlamaCppUpstream, block: str, question: str, activation: Activation | None, max_tokens: int) -> float:
    system = f"{SYSTEM}\n\n{block}" if block else SYSTEM
    body = {
        "model": "gemma",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    started = time.perf_counter()
    stream = await up.open_stream(body, CallContext("bench", activation=activation))
    first = None
    async for _ in stream:
        if first is None:
            first = time.perf_counter() - started
    return first if first is not None else time.perf_counter() - started


async def measure_size(up: LlamaCppUpstream, size: int, requests: int, max_tokens: int) -> dict[str, Any]:
    owners = ("owner-a", "owner-b")
    blocks = {o: (await block_of(up, o, size) if size else "") for o in owners}
    version = f"bench-{size}"
    assert up._kv is not None
    up._kv.clear()
    cold: list[float] = []
    kv: list[float] = []
    builds: list[float] = []
    restores: list[float] = []
    outcomes: dict[str, int] = {}
    prefix_tokens: dict[str, int] = {}
    # Two phases, each alternating A, B, A, B ... so the context always holds
    # the other owner's prompt: cold (no activation), then kv (restore).
    for phase in ("cold", "kv"):
        await up._on_worker(lambda: up._model().reset())
        for i in range(requests + 1):
            for owner in owners:
                question = QUESTIONS[i % len(QUESTIONS)]
                act = Activation(owner, version, blocks[owner]) if phase == "kv" and blocks[owner] else None
                took = await ttft(up, blocks[owner], question, act, max_tokens)
                if phase == "cold":
                    if i:
                        cold.append(took)
                    continue
                kind = act.kv if act else "off"
                outcomes[kind] = outcomes.get(kind, 0) + 1
                if act:
                    prefix_tokens[owner] = act.prefix_tokens
                if i == 0:  # the first request per owner builds the cache (or warms up)
                    if kind == "miss":
                        builds.append(took)
                    continue
                kv.append(took)
                if act and act.restore_ms is not None:
                    restores.append(act.restore_ms)
    entries = list(up._kv._ram.values())
    per_owner = {e.owner: e.nbytes for e in entries if e.core_version == version}
    return {
        "core_tokens": size,
        "prefix_tokens": prefix_tokens,
        "cold_ms": stats(cold),
        "kv_ms": stats(kv),
        "build_ms": stats(builds),
        "restore_ms": stats(restores, 1.0),
        "reduction_pct": (1 - median(kv) / median(cold)) * 100 if cold and kv and median(cold) else 0.0,
        "cache_bytes_per_owner": per_owner,
        "outcomes": outcomes,
    }


def stats(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    """n, median and p95, in milliseconds (``scale`` 1 for values already in ms)."""
    if not values:
        return {"n": 0, "median": 0.0, "p95": 0.0}
    return {"n": len(values), "median": median(values) * scale, "p95": percentile(values, 95) * scale}


def render(results: dict[str, Any]) -> str:
    head = (
        f"TTFT, {results['model']} in-process (llama.cpp), two owners alternating, "
        f"{results['requests']} requests per owner and mode\n"
    )
    cols = ("core tokens", "cold p50", "cold p95", "kv p50", "kv p95", "reduction", "build", "restore p50", "cache/owner", "kv outcomes")
    lines = [head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in results["rows"]:
        cache = row["cache_bytes_per_owner"]
        size = f"{sum(cache.values()) / max(1, len(cache)) / 1e6:.1f} MB" if cache else "-"
        prefix = "/".join(str(v) for v in sorted(set(row["prefix_tokens"].values()))) or "0"
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{row['core_tokens']} (prefix {prefix})",
                    f"{row['cold_ms']['median']:.0f} ms",
                    f"{row['cold_ms']['p95']:.0f} ms",
                    f"{row['kv_ms']['median']:.0f} ms",
                    f"{row['kv_ms']['p95']:.0f} ms",
                    f"{row['reduction_pct']:.1f}%",
                    f"{row['build_ms']['median']:.0f} ms" if row["build_ms"]["n"] else "-",
                    f"{row['restore_ms']['median']:.1f} ms" if row["restore_ms"]["n"] else "-",
                    size,
                    ", ".join(f"{k} {v}" for k, v in sorted(row["outcomes"].items())),
                ]
            )
            + " |"
        )
    return "\n".join(lines)
