"""``memproxy bench longmemeval``: evidence recall of the memory engine on LongMemEval-S.

The protocol is the one of ``shared/data/longmemeval/README.md``:

- each instance is its own memory owner;
- each user turn and the assistant turn that follows it become **one memory**,
  ``"User: ...\\nAssistant: ..."`` (as the proxy writes a chat turn), with the
  session's date as ``event_time`` and ``{"session_id", "turns": [i, i+1]}``
  in metadata (a turn with no partner, e.g. a session opened by the
  assistant, is a memory of its own, ``"turns": [i]``), written through
  ``MemoryEngine.add`` (the path behind ``POST /v1/memories``) in batches of
  up to 500;
- the question is searched through ``MemoryEngine.search`` (the path behind
  ``POST /v1/memories/search``) at every token budget (cl100k) with a high item
  limit and ``question_date`` as the reference time ``now`` (what "last week"
  or "how many days ago" resolve against).

Reported: **evidence-turn recall** (share of the instance's ``has_answer``
turns held by the returned memories, through ``metadata.turns``) and
**session recall** (share of ``answer_session_ids`` touched), averaged over
instances, overall and per question type; tokens used; search latency p50/p95
*cold* (the first search of an owner after the engine starts: the store is
written by one engine, closed, and searched by a fresh engine over the same
folder, with no owner preloaded at start, so each owner's first search loads
it, from its index snapshot when the first engine left one) and *warm* (the others);
ingest throughput in exchanges per second (embedding included).

Baselines, on the same exchanges packed by the same cl100k count of the same
``[date] content`` line at every budget: BM25 and dense all-MiniLM-L6-v2, and
our ratio to the better of the two.

``--limit N`` takes N instances spread over the six question types (one of
each type in turn, in file order), so a small run is still representative.
The background scheduler is off (nothing moves between tiers mid-run): same
data, same code, same numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.retrieval import (
    SEARCH_LIMIT,
    RecordingEmbedder,
    Tally,
    baseline_orders,
    coverage,
    pack_ranked,
    ratios_to_best_baseline,
    recall_table,
    render_ratios,
    render_table,
)
from bench.stats import latency_summary

ROOT = Path(__file__).resolve().parents[1]  # the project (source checkout) root
DEFAULT_DATA = "../shared/data/longmemeval/lme_s_dev.json.gz"
DEFAULT_BUDGETS = (512, 1024, 2048, 4096)
BATCH = 500  # memories per add, as a client of POST /v1/memories would send them
TYPES = (
    "single-session-user",
    "single-session-assistant",
    "single-session-preference",
    "knowledge-update",
    "temporal-reasoning",
    "multi-session",
)
LABELS = {
    "single-session-user": "ss-user",
    "single-session-assistant": "ss-asst",
    "single-session-preference": "ss-pref",
    "knowledge-update": "k-update",
    "temporal-reasoning": "temporal",
    "multi-session": "multi-sess",
}
METRICS = ("evidence", "session")


@dataclass(frozen=True, slots=True)
class Exchange:
    session_id: str
    turns: tuple[int, ...]
    content: str
    when: datetime


@dataclass(frozen=True, slots=True)
class Instance:
    qid: str
    qtype: str
    question: str
    now: datetime
    exchanges: tuple[Exchange, ...]
    evidence: frozenset[tuple[str, int]]  # (session_id, turn index) of every has_answer turn
    answer_sessions: frozenset[str]

    @property
    def owner(self) -> str:
        return f"lme-{self.qid}"


# -- data ----------------------------------------------------------------------


def resolve_data(path: str) -> Path:
    """``path`` as given if it exists (absolute or from the working directory),
    else relative to the project root (where the default points)."""
    given = Path(path).expanduser()
    if given.is_absolute() or given.exists():
        return given
    return (ROOT / given).resolve()


def parse_date(value: str) -> datetime:
    """``"2023/06/23 (Fri) 07:31"`` -> an aware UTC datetime."""
    return datetime.strptime(value.strip(), "%Y/%m/%d (%a) %H:%M").replace(tzinfo=UTC)


def exchanges_of(session_id: str, when: datetime, turns: Sequence[dict[str, Any]]) -> list[Exchange]:
    """A user turn and the assistant turn after it: one exchange; any other turn alone."""
    from memory.writer import turn_content

    out: list[Exchange] = []
    i = 0
    while i < len(turns):
        role = turns[i].get("role")
        paired = role == "user" and i + 1 < len(turns) and turns[i + 1].get("role") == "assistant"
        if paired:
            content = turn_content(str(turns[i]["content"]), str(turns[i + 1]["content"]))
            indices: tuple[int, ...] = (i, i + 1)
        else:
            text = str(turns[i]["content"])
            content = turn_content(text, "") if role == "user" else turn_content("", text)
            indices = (i,)
        if content:
            out.append(Exchange(session_id, indices, content, when))
        i += len(indices)
    return out


def instance_of(raw: dict[str, Any]) -> Instance:
    exchanges: list[Exchange] = []
    evidence: set[tuple[str, int]] = set()
    for sid, date, session in zip(raw["haystack_session_ids"], raw["haystack_dates"], raw["haystack_sessions"],
                                  strict=True):
        exchanges += exchanges_of(sid, parse_date(date), session)
        evidence |= {(sid, i) for i, turn in enumerate(session) if turn.get("has_answer")}
    return Instance(
        qid=str(raw["question_id"]),
        qtype=str(raw["question_type"]),
        question=str(raw["question"]),
        now=parse_date(raw["question_date"]),
        exchanges=tuple(exchanges),
        evidence=frozenset(evidence),
        answer_sessions=frozenset(raw["answer_session_ids"]),
    )


def load(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    return list(data)


def stratified(raws: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` instances taking one of each question type in turn (file order)."""
    if limit <= 0 or limit >= len(raws):
        return list(raws)
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for raw in raws:
        by_type[str(raw["question_type"])].append(raw)
    order = [t for t in TYPES if t in by_type] + sorted(t for t in by_type if t not in TYPES)
    picked: list[dict[str, Any]] = []
    depth = 0
    while len(picked) < limit:
        for qtype in order:
            if depth < len(by_type[qtype]) and len(picked) < limit:
                picked.append(by_type[qtype][depth])
        depth += 1
    return picked


# -- scoring -------------------------------------------------------------------


def held_turns(metadata: dict[str, Any]) -> set[tuple[str, int]]:
    """The (session_id, turn) pairs a returned memory holds, from its metadata."""
    sid = metadata.get("session_id")
    turns = metadata.get("turns")
    if not isinstance(sid, str) or not isinstance(turns, list):
        return set()
    return {(sid, int(t)) for t in turns if isinstance(t, int)}


def score(instance: Instance, turns: set[tuple[str, int]]) -> dict[str, float]:
    return {
        "evidence": coverage(turns, instance.evidence),
        "session": coverage({sid for sid, _ in turns}, instance.answer_sessions),
    }


# -- the run -------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=DEFAULT_DATA,
                        help=f"LongMemEval JSON (.gz) file (default {DEFAULT_DATA}, from the project root)")
    parser.add_argument("--limit", type=int, default=0,
                        help="only N instances, spread over the six question types (0 = all)")
    parser.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)), help="token budgets")
    parser.add_argument("--no-baselines", action="store_true", help="skip the BM25 and dense baselines")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")
    parser.add_argument("--embedding-runtime", default="auto",
                        help="embedding runtime of both lanes, or QUERY,BULK (auto, onnx, onnx-int8, openvino, torch, torch-bf16)")
    # the bench has the machine to itself: the write lane may use both cores
    # (the full split: 24 min on one thread, 15 min on two, same recall)
    parser.add_argument("--bulk-threads", type=int, default=2,
                        help="intra-op threads of the write lane (memory.embedding_bulk_threads; default 2 here)")
    parser.add_argument("--embedding-recipe", default="blend", choices=("blend", "late"),
                        help="how a memory's vector is made (memory.embedding_recipe)")


def run(args: argparse.Namespace) -> int:
    budgets = sorted({int(b) for b in str(args.budgets).split(",") if b.strip()})
    data = resolve_data(args.data)
    if not data.exists():
        raise SystemExit(f"no LongMemEval data at {data} (--data)")
    from memory.embedder import Embedder

    query_runtime, _, bulk_runtime = str(args.embedding_runtime).partition(",")
    embedder = Embedder(
        query_runtime=query_runtime, bulk_runtime=bulk_runtime or query_runtime, bulk_threads=args.bulk_threads,
        recipe=args.embedding_recipe,
    )
    try:
        results = asyncio.run(measure(data, budgets, args.limit, not args.no_baselines, embedder=embedder))
    finally:
        embedder.close()
    results["embedding_runtimes"] = embedder.runtimes
    results["embedding_recipe"] = embedder.recipe
    print(render(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


@contextmanager
def progress_bar() -> Iterator[Any]:
    """A rich progress display on stderr (stdout keeps only the report)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield bar


async def measure(data_path: Path, budgets: list[int], limit: int, baselines: bool = True,
                  *, embedder: Any = None) -> dict[str, Any]:
    from memory.embedder import Embedder
    from memory.tokens import TokenCounter

    started = time.perf_counter()
    instances = [instance_of(raw) for raw in stratified(load(data_path), limit)]
    owns_embedder = embedder is None
    embedder = embedder or Embedder()
    counter = TokenCounter()
    tally = Tally()
    cold: list[float] = []
    warm: list[float] = []
    n_exchanges = sum(len(i.exchanges) for i in instances)
    try:
        with progress_bar() as bar, tempfile.TemporaryDirectory(prefix="memproxy-lme-") as tmp:
            recording = RecordingEmbedder(embedder, [x.content for i in instances for x in i.exchanges])
            ingest_s = await _ingest(Path(tmp), instances, recording, bar)
            search_started = time.perf_counter()
            await _search(Path(tmp), instances, budgets, embedder, tally, cold, warm, bar)
            search_s = time.perf_counter() - search_started
            if baselines:
                task = bar.add_task("baselines", total=len(instances))
                for instance in instances:
                    await _baselines(instance, budgets, tally, embedder, counter, recording.seen)
                    bar.advance(task)
    finally:
        if owns_embedder:
            embedder.close()

    types = [t for t in TYPES if any(i.qtype == t for i in instances)]
    types += sorted({i.qtype for i in instances} - set(types))
    systems = ["memproxy"] + (["bm25", "dense"] if baselines else [])
    table = recall_table(tally, systems, budgets, METRICS, types)
    return {
        "data": str(data_path),
        "instances": len(instances),
        "instances_per_type": {t: sum(1 for i in instances if i.qtype == t) for t in types},
        "exchanges": n_exchanges,
        "evidence_turns": sum(len(i.evidence) for i in instances),
        "budgets": budgets,
        "table": table,
        "ratio_to_best_baseline": ratios_to_best_baseline(table, budgets, "evidence"),
        "search_latency_ms": {"cold": latency_summary(cold), "warm": latency_summary(warm)},
        "ingest_exchanges_per_s": round(n_exchanges / ingest_s, 1) if ingest_s else None,
        "ingest_s": round(ingest_s, 1),
        "search_s": round(search_s, 1),
        "run_s": round(time.perf_counter() - started, 1),
    }


async def _open(where: Path, embedder: Any) -> Any:
    from memory.engine import MemoryEngine
    from memory.settings import MemorySettings, SchedulerSettings, SnapshotSettings

    # no owner preloaded at start (warm_owners=0): each owner's first search is its own cold start
    settings = MemorySettings(scheduler=SchedulerSettings(enabled=False), snapshot=SnapshotSettings(warm_owners=0))
    return await MemoryEngine.open(settings, where, embedder=embedder)


async def _ingest(where: Path, instances: Sequence[Instance], embedder: Any, bar: Any) -> float:
    """Write every instance's exchanges; seconds spent (embedding and store included)."""
    from memory.cube import Kind, Owner, Provenance
    from memory.engine import NewMemory

    task = bar.add_task("ingest", total=sum(len(i.exchanges) for i in instances))
    engine = await _open(where, embedder)
    try:
        began = time.perf_counter()
        for instance in instances:
            owner = Owner(user=instance.owner)
            for at in range(0, len(instance.exchanges), BATCH):
                batch = instance.exchanges[at : at + BATCH]
                items = [
                    NewMemory(content=x.content, kind=Kind.EPISODIC.value, event_time=x.when,
                              metadata={"session_id": x.session_id, "turns": list(x.turns)})
                    for x in batch
                ]
                await engine.add(owner, items, provenance=Provenance(roles=("api",)))
                bar.advance(task, len(items))
        return time.perf_counter() - began
    finally:
        await engine.aclose()


async def _search(
    where: Path,
    instances: Sequence[Instance],
    budgets: Sequence[int],
    embedder: Any,
    tally: Tally,
    cold: list[float],
    warm: list[float],
    bar: Any,
) -> None:
    """A fresh engine over the written store: each owner's first search is cold."""
    task = bar.add_task("search", total=len(instances) * len(budgets))
    engine = await _open(where, embedder)
    try:
        await embedder.embed_query(["warm up"])  # the model's first call is not an owner's cold cost
        for instance in instances:
            for n, budget in enumerate(budgets):
                began = time.perf_counter()
                result = await engine.search(instance.owner, instance.question, token_budget=budget,
                                             limit=SEARCH_LIMIT, now=instance.now)
                (warm if n else cold).append((time.perf_counter() - began) * 1000)
                turns: set[tuple[str, int]] = set()
                for item in result.items:
                    turns |= held_turns(item.cube.metadata)
                tally.add("memproxy", budget, instance.qtype, score(instance, turns), result.tokens)
                bar.advance(task)
    finally:
        await engine.aclose()


async def _baselines(
    instance: Instance, budgets: Sequence[int], tally: Tally, embedder: Any, counter: Any, known: dict[str, Any]
) -> None:
    texts = [x.content for x in instance.exchanges]
    costs = [counter.count(f"[{x.when.date().isoformat()}] {x.content}") for x in instance.exchanges]
    (ranked,) = await baseline_orders(texts, [instance.question], embedder, known)
    for system, order in ranked.items():
        for budget in budgets:
            chosen, used = pack_ranked(order, costs, budget)
            turns = {(instance.exchanges[i].session_id, t) for i in chosen for t in instance.exchanges[i].turns}
            tally.add(system, budget, instance.qtype, score(instance, turns), used)


# -- report --------------------------------------------------------------------


def render(results: dict[str, Any]) -> str:
    budgets = results["budgets"]
    types = list(results["instances_per_type"])
    lat = results["search_latency_ms"]
    lines = [
        f"LongMemEval-S evidence-turn recall - {results['instances']} instances, {results['exchanges']} exchanges, "
        f"{results['evidence_turns']} evidence turns " + json.dumps(results["instances_per_type"]),
        "",
        *render_table(results["table"], budgets, "evidence", types, extra=(("session", "session"),), labels=LABELS),
        *render_ratios(results["ratio_to_best_baseline"]),
        f"search latency: cold (first search of an owner after a start) p50 {lat['cold']['p50']:.1f} ms, "
        f"p95 {lat['cold']['p95']:.1f} ms ({lat['cold']['n']}); warm p50 {lat['warm']['p50']:.1f} ms, "
        f"p95 {lat['warm']['p95']:.1f} ms ({lat['warm']['n']})",
        f"ingest: {results['ingest_exchanges_per_s']} exchanges/s ({results['ingest_s']:.0f} s)"
        f"{' (embedding: ' + str(results['embedding_runtimes']) + ')' if 'embedding_runtimes' in results else ''}"
        f"{', recipe ' + str(results['embedding_recipe']) if 'embedding_recipe' in results else ''}",
        f"run time: {results['run_s']:.0f} s (search {results['search_s']:.0f} s)",
    ]
    return "\n".join(lines)
