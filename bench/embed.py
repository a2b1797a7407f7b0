"""``memproxy bench embed``: the embedding runtimes side by side.

For each runtime (both lanes on it, ``--runtimes``), on the same texts:

- **bulk**: LongMemEval-S exchanges (``User: ...\\nAssistant: ...``, a ~400-word
  reply each) and LoCoMo turns, each turned into its stored vector through
  :meth:`memory.embedder.Embedder.embed_memories` (whole text + sentences, as
  every write does; ``--recipe``: ``blend``, the default, or ``late``), in
  batches of 64 as the writer sends them; exchanges (turns) per second of
  wall time and per CPU second of the process (robust on a shared machine);
- **agreement**: cosine of each stored vector with the ``torch`` (fp32)
  reference, min and mean;
- **query**: one short query at a time, p50/p95 ms, idle and while a bulk
  batch of exchanges is being embedded on the other lane;
- **load**: seconds to load and warm both lanes, and whether torch was
  imported at all (runtimes run one after another in one process, so torch
  stays loaded once a torch runtime ran: run ``onnx`` alone for its RSS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import latency_summary

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LME = "../shared/data/longmemeval/lme_s_dev.json.gz"
DEFAULT_LOCOMO = "../shared/data/locomo/locomo_dev.json"
BATCH = 64  # the writer's batch (memory/writer.py)
QUERY = "What did I say about the pottery class I signed up for?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtimes", default="torch,onnx,onnx-int8,torch-bf16,openvino",
                        help="comma-separated runtimes; torch (the reference) is always measured first")
    parser.add_argument("--exchanges", type=int, default=128, help="LongMemEval exchanges embedded per runtime")
    parser.add_argument("--turns", type=int, default=512, help="LoCoMo turns embedded per runtime")
    parser.add_argument("--queries", type=int, default=50, help="single queries timed per runtime (each phase)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per lane")
    parser.add_argument("--recipe", default="blend", choices=("blend", "late"),
                        help="what a memory's vector is (memory.embedding_recipe)")
    parser.add_argument("--lme", default=DEFAULT_LME, help="LongMemEval JSON (.gz)")
    parser.add_argument("--locomo", default=DEFAULT_LOCOMO, help="LoCoMo JSON")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")


def _path(value: str) -> Path:
    given = Path(value).expanduser()
    return given if given.is_absolute() or given.exists() else (ROOT / given).resolve()


def lme_exchanges(path: Path, n: int) -> list[str]:
    from bench.longmemeval import instance_of, load

    out: list[str] = []
    for raw in load(path):
        out += [x.content for x in instance_of(raw).exchanges]
        if len(out) >= n:
            break
    return out[:n]


def locomo_turns(path: Path, n: int) -> list[str]:
    from bench.locomo import load_turns

    out: list[str] = []
    for sample in json.loads(path.read_text(encoding="utf-8")):
        out += [t.text for t in load_turns(sample)]
        if len(out) >= n:
            break
    return out[:n]


async def _bulk(embedder: Any, texts: list[str]) -> tuple[np.ndarray, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    parts = [await embedder.embed_memories(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    return np.concatenate(parts), time.perf_counter() - wall, time.process_time() - cpu


async def _queries(embedder: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        await embedder.embed_query([QUERY])
        times.append((time.perf_counter() - began) * 1000)
    return times


async def _queries_under_bulk(embedder: Any, texts: list[str], n: int) -> list[float]:
    bulk = asyncio.ensure_future(embedder.embed_memories(texts[:BATCH]))
    await asyncio.sleep(0.05)  # let the batch start on the bulk lane
    times: list[float] = []
    while not bulk.done() and len(times) < n:
        times += await _queries(embedder, 1)
    await bulk
    return times


def _agreement(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    cos = (vectors * reference).sum(axis=1)
    return {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 6)}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from memory.embedder import Embedder

    runtimes = ["torch"] + [r for r in str(args.runtimes).split(",") if r.strip() and r.strip() != "torch"]
    exchanges = lme_exchanges(_path(args.lme), args.exchanges)
    turns = locomo_turns(_path(args.locomo), args.turns)
    results: dict[str, Any] = {"exchanges": len(exchanges), "turns": len(turns), "threads": args.threads,
                               "recipe": args.recipe, "runtimes": {}}
    reference: dict[str, np.ndarray] = {}
    for runtime in runtimes:
        began = time.perf_counter()
        embedder = Embedder(query_runtime=runtime, bulk_runtime=runtime, threads=args.threads, recipe=args.recipe)
        try:
            await embedder.warmup()
            loaded_s = time.perf_counter() - began
            row: dict[str, Any] = {"lanes": embedder.runtimes, "load_s": round(loaded_s, 2),
                                   "torch_imported": "torch" in sys.modules}
            for name, texts in (("lme", exchanges), ("locomo", turns)):
                vectors, wall, cpu = await _bulk(embedder, texts)
                reference.setdefault(name, vectors)
                row[name] = {"per_s": round(len(texts) / wall, 1), "per_cpu_s": round(len(texts) / cpu, 1),
                             "agreement": _agreement(vectors, reference[name])}
            row["query_ms"] = latency_summary(await _queries(embedder, args.queries))
            row["query_under_bulk_ms"] = latency_summary(await _queries_under_bulk(embedder, exchanges, args.queries))
            row["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            results["runtimes"][runtime] = row
        finally:
            embedder.close()
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        f"embedding runtimes - {results['exchanges']} LongMemEval exchanges, {results['turns']} LoCoMo turns, "
        f"{results['threads']} thread(s) per lane; /s = per wall second, /cpu-s = per CPU second of the process",
        "",
        f"{'runtime':<12} {'LME /s':>8} {'/cpu-s':>8} {'cos min':>8} {'LoCoMo /s':>10} {'/cpu-s':>8} {'cos min':>8} "
        f"{'query p50':>10} {'p95':>7} {'busy p50':>9} {'p95':>7} {'load s':>7}",
    ]
    for name, row in results["runtimes"].items():
        lme, loc, q, qb = row["lme"], row["locomo"], row["query_ms"], row["query_under_bulk_ms"]
        lines.append(
            f"{name:<12} {lme['per_s']:>8.1f} {lme['per_cpu_s']:>8.1f} {lme['agreement']['min']:>8.4f} "
            f"{loc['per_s']:>10.1f} {loc['per_cpu_s']:>8.1f} {loc['agreement']['min']:>8.4f} "
            f"{q['p50']:>10.1f} {q['p95']:>7.1f} {qb['p50']:>9.1f} {qb['p95']:>7.1f} {row['load_s']:>7.1f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    results = asyncio.run(measure(args))
    print(render(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0
