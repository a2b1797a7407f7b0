"""``memproxy bench locomo``: evidence recall of the memory engine on LoCoMo.

Each conversation becomes its own memory owner; every turn is written through
``MemoryEngine.add`` (the path behind ``POST /v1/memories``) with its speaker,
its session date as ``event_time`` and its ``dia_id`` in metadata. Each
question flagged ``include_in_retrieval_eval`` is then asked through
``MemoryEngine.search`` (the path behind ``POST /v1/memories/search``) at every
token budget. Evidence recall is the share of a question's gold evidence turns
covered by what came back (a returned memory covers the ``dia_id`` in its
metadata plus any ``source_dia_ids`` a derived memory carries).

Two baselines run on the same data and budgets, packed with the same cl100k
count of the same rendered line (``[date] Speaker: text``): BM25 over the raw
turns and dense all-MiniLM-L6-v2 over the raw turns.

Abstention: every prompt of ``bench/data/abstention_prompts.txt`` (everyday
requests unrelated to the conversations) is searched against every owner at
the default budget; the figure is the share of searches that return nothing.

Everything is deterministic: same data, same config -> same recall.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.retrieval import (
    SEARCH_LIMIT,
    Tally,
    baseline_orders,
    coverage,
    pack_ranked,
    ratios_to_best_baseline,
    recall_table,
    render_ratios,
    render_table,
)
from bench.stats import median, percentile

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
DEFAULT_BUDGETS = (512, 1024, 2048, 4096)
PROMPTS_FILE = Path(__file__).parent / "data" / "abstention_prompts.txt"


@dataclass(frozen=True, slots=True)
class Turn:
    dia_id: str
    speaker: str
    text: str  # "Speaker: text [shares caption]"
    when: datetime
    session: int


@dataclass(frozen=True, slots=True)
class Question:
    qid: str
    sample_id: str
    category: int
    question: str
    evidence: frozenset[str]
    audit_evidence: frozenset[str]


# -- data ----------------------------------------------------------------------


def parse_session_date(value: str) -> datetime:
    """``"1:56 pm on 8 May, 2023"`` -> an aware UTC datetime."""
    return datetime.strptime(value.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def turn_text(turn: dict[str, Any]) -> str:
    text = str(turn.get("text", "")).strip()
    caption = turn.get("blip_caption")
    if caption:
        text = f"{text} [shares {str(caption).strip()}]".strip()
    return text


def load_turns(sample: dict[str, Any]) -> list[Turn]:
    conv = sample["conversation"]
    sessions = sorted(
        (int(k.split("_")[1]) for k in conv if k.startswith("session_") and k.count("_") == 1),
    )
    turns: list[Turn] = []
    for n in sessions:
        when = parse_session_date(conv[f"session_{n}_date_time"])
        for turn in conv[f"session_{n}"]:
            body = turn_text(turn)
            if not body:
                continue
            turns.append(Turn(turn["dia_id"], turn["speaker"], f"{turn['speaker']}: {body}", when, n))
    return turns


def load_questions(index: dict[str, Any], samples: set[str]) -> list[Question]:
    out = []
    for record in index["qa"]:
        if not record.get("include_in_retrieval_eval"):
            continue
        sample_id = record["qid"].split(":")[0]
        if sample_id not in samples:
            continue
        evidence = frozenset(record["evidence"])
        audit = record.get("audit") or {}
        corrected = audit.get("correct_evidence")
        audit_evidence = frozenset(_normalise_ids(corrected)) if corrected else evidence
        out.append(
            Question(record["qid"], sample_id, int(record["category"]), record["question"], evidence,
                     audit_evidence or evidence)
        )
    return out


def _normalise_ids(ids: Sequence[str]) -> list[str]:
    out = []
    for raw in ids:
        for part in str(raw).replace(";", " ").replace(",", " ").split():
            if part.startswith("D") and ":" in part:
                out.append(part)
    return out


def load_prompts(path: Path = PROMPTS_FILE) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# -- the run -------------------------------------------------------------------


def score(q: Question, returned: set[str]) -> dict[str, float]:
    return {"gold": coverage(returned, q.evidence), "audit": coverage(returned, q.audit_evidence)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="../shared/data/locomo/locomo_dev.json", help="LoCoMo JSON file")
    parser.add_argument("--index", default="../shared/data/locomo/locomo_dev_qa_index.json",
                        help="the derived per-question index")
    parser.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)), help="token budgets")
    parser.add_argument("--conversations", type=int, default=0, help="only the first N conversations (0 = all)")
    parser.add_argument("--prompts", default=str(PROMPTS_FILE), help="abstention prompts, one per line")
    parser.add_argument("--no-baselines", action="store_true", help="skip the BM25 and dense baselines")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")
    parser.add_argument("--embedding-runtime", default="auto",
                        help="embedding runtime of both lanes, or QUERY,BULK (auto, onnx, onnx-int8, openvino, torch, torch-bf16)")
    # the bench has the machine to itself: the write lane may use both cores (as bench longmemeval)
    parser.add_argument("--bulk-threads", type=int, default=2,
                        help="threads of the write lane (memory.embedding_bulk_threads; default 2 here)")
    parser.add_argument("--embedding-recipe", default="blend", choices=("blend", "late"),
                        help="how a memory's vector is made (memory.embedding_recipe)")


def run(args: argparse.Namespace) -> int:
    budgets = sorted({int(b) for b in str(args.budgets).split(",") if b.strip()})
    results = asyncio.run(measure(Path(args.data), Path(args.index), budgets, args.conversations,
                                  Path(args.prompts), not args.no_baselines, args.embedding_runtime,
                                  args.embedding_recipe, args.bulk_threads))
    print(render(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


async def measure(
    data_path: Path, index_path: Path, budgets: list[int], limit_convs: int, prompts_path: Path, baselines: bool,
    runtime: str = "auto", recipe: str = "blend", bulk_threads: int = 1,
) -> dict[str, Any]:
    from tqdm import tqdm

    from memory.cube import Owner, Provenance
    from memory.embedder import Embedder
    from memory.engine import MemoryEngine, NewMemory
    from memory.settings import MemorySettings
    from memory.tokens import TokenCounter

    started = time.perf_counter()
    samples = json.loads(data_path.read_text(encoding="utf-8"))
    if limit_convs:
        samples = samples[:limit_convs]
    index = json.loads(index_path.read_text(encoding="utf-8"))
    convs = {s["sample_id"]: load_turns(s) for s in samples}
    questions = load_questions(index, set(convs))
    prompts = load_prompts(prompts_path)
    settings = MemorySettings()
    counter = TokenCounter()
    query_runtime, _, bulk_runtime = runtime.partition(",")
    embedder = Embedder(query_runtime=query_runtime, bulk_runtime=bulk_runtime or query_runtime, recipe=recipe,
                        bulk_threads=bulk_threads)
    tally = Tally()
    latencies: list[float] = []
    n_turns = sum(len(t) for t in convs.values())
    with tempfile.TemporaryDirectory(prefix="memproxy-locomo-") as tmp:
        engine = await MemoryEngine.open(settings, Path(tmp), embedder=embedder)
        try:
            # 1. ingest, one owner per conversation, in session batches
            ingest_started = time.perf_counter()
            with tqdm(total=n_turns, desc="ingest", unit="turn") as bar:
                for sample_id, turns in convs.items():
                    owner = Owner(user=f"locomo-{sample_id}")
                    by_session: dict[int, list[Turn]] = defaultdict(list)
                    for t in turns:
                        by_session[t.session].append(t)
                    for session_turns in by_session.values():
                        items = [
                            NewMemory(
                                content=t.text,
                                kind="episodic",
                                event_time=t.when,
                                metadata={"dia_id": t.dia_id, "speaker": t.speaker, "session": t.session},
                            )
                            for t in session_turns
                        ]
                        await engine.add(owner, items, provenance=Provenance(roles=("api",)))
                        bar.update(len(items))
            ingest_s = time.perf_counter() - ingest_started

            # 2. our recall at every budget
            await engine.search(f"locomo-{questions[0].sample_id}", "warm up", token_budget=budgets[0])
            for q in tqdm(questions, desc="recall", unit="q"):
                for budget in budgets:
                    t0 = time.perf_counter()
                    result = await engine.search(f"locomo-{q.sample_id}", q.question, token_budget=budget,
                                                 limit=SEARCH_LIMIT)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    returned: set[str] = set()
                    for item in result.items:
                        returned |= covered_ids(item.cube.metadata)
                    tally.add("memproxy", budget, CATEGORIES[q.category], score(q, returned), result.tokens)

            # 3. abstention over unrelated prompts, every owner, default budget
            empty = 0
            total = 0
            for sample_id in tqdm(convs, desc="abstention", unit="owner"):
                for prompt in prompts:
                    result = await engine.search(f"locomo-{sample_id}", prompt)
                    total += 1
                    empty += not result.items

            # 4. baselines over the raw turns
            if baselines:
                by_conv: dict[str, list[Question]] = defaultdict(list)
                for q in questions:
                    by_conv[q.sample_id].append(q)
                for sample_id, turns in tqdm(convs.items(), desc="baselines", unit="conv"):
                    await _baselines(turns, by_conv[sample_id], budgets, tally, embedder, counter)
        finally:
            await engine.aclose()
            embedder.close()

    systems = ["memproxy"] + (["bm25", "dense"] if baselines else [])
    table = recall_table(tally, systems, budgets, ("gold", "audit"), list(CATEGORIES.values()))
    ratios = ratios_to_best_baseline(table, budgets, "gold")
    per_cat_n = {CATEGORIES[c]: sum(1 for q in questions if q.category == c) for c in CATEGORIES}
    return {
        "data": str(data_path),
        "conversations": len(convs),
        "turns": n_turns,
        "questions": len(questions),
        "questions_per_category": per_cat_n,
        "budgets": budgets,
        "table": table,
        "ratio_to_best_baseline": ratios,
        "recall_latency_ms": {"p50": round(median(latencies), 2), "p95": round(percentile(latencies, 95), 2),
                              "searches": len(latencies)},
        "ingest_turns_per_s": round(n_turns / ingest_s, 1),
        "embedding_runtimes": embedder.runtimes,
        "embedding_recipe": embedder.recipe,
        "bulk_threads": bulk_threads,
        "abstention": {"prompts": len(prompts), "searches": total, "empty": empty,
                       "rate": round(empty / total, 4) if total else None},
        "run_s": round(time.perf_counter() - started, 1),
    }


def covered_ids(metadata: dict[str, Any]) -> set[str]:
    ids = set()
    if isinstance(metadata.get("dia_id"), str):
        ids.add(metadata["dia_id"])
    for extra in metadata.get("source_dia_ids") or ():
        if isinstance(extra, str):
            ids.add(extra)
    return ids


async def _baselines(
    turns: list[Turn],
    questions: list[Question],
    budgets: list[int],
    tally: Tally,
    embedder: Any,
    counter: Any,
) -> None:
    lines = [f"[{t.when.date().isoformat()}] {t.text}" for t in turns]
    costs = [counter.count(line) for line in lines]
    orders = await baseline_orders([t.text for t in turns], [q.question for q in questions], embedder)
    for q, ranked in zip(questions, orders, strict=True):
        for system, order in ranked.items():
            for budget in budgets:
                chosen, used = pack_ranked(order, costs, budget)
                tally.add(system, budget, CATEGORIES[q.category], score(q, {turns[i].dia_id for i in chosen}), used)


def render(results: dict[str, Any]) -> str:
    budgets = results["budgets"]
    lines = [
        f"LoCoMo evidence recall - {results['conversations']} conversations, {results['turns']} turns, "
        f"{results['questions']} questions " + json.dumps(results["questions_per_category"]),
        "",
        *render_table(results["table"], budgets, "gold", list(CATEGORIES.values()), extra=(("audit", "audit"),)),
        *render_ratios(results["ratio_to_best_baseline"]),
    ]
    lat = results["recall_latency_ms"]
    ab = results["abstention"]
    lines += [
        f"recall latency per search: p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms ({lat['searches']} searches)",
        f"ingest: {results['ingest_turns_per_s']:.1f} turns/s (embedding: {results['embedding_runtimes']}, "
        f"recipe {results.get('embedding_recipe', 'blend')}, {results.get('bulk_threads', 1)} bulk threads)",
        f"abstention: {ab['empty']}/{ab['searches']} searches returned nothing ({ab['rate']:.1%}) "
        f"over {ab['prompts']} unrelated prompts x {results['conversations']} owners",
        f"run time: {results['run_s']:.0f} s",
    ]
    return "\n".join(lines)
