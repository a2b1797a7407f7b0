"""``memproxy bench scale``: recall against owner size.

One owner grows to each size of ``--rows`` (default 1k, 10k, 100k), written
through ``MemoryEngine.add`` in batches of 1,000 (the path behind
``POST /v1/memories``) with short real sentences: LoCoMo turns and
LongMemEval chats (user and assistant) split into sentences, deduplicated,
in a fixed shuffled order. At each size a *new process* opens a new engine
over the same data directory (a restart) and measures:

- ``cold``: the first search after the restart without an index snapshot
  (loads the owner from the store, builds its index, ranks);
- ``restart``: the first search after a second restart, which loads the
  owner's index snapshot (memory/snapshot.py) written by the first and
  applies the delta since (no warming at startup, so the search pays it all);
  both also as the CPU time the process spent (all threads): on a loaded
  machine wall times are mostly waiting for a core;
- ``warm`` p50/p95 over ``--searches`` questions (LoCoMo and LongMemEval);
- the largest event-loop stall seen while those searches ran (a 5 ms ticker
  on the same loop: recall must not block it);
- the process's RSS after the searches and its peak (``VmHWM``).

Ingest rate (memories/s, embedding included) is that of the rows added to
reach the size. With ``--dir`` the store is kept, and a rerun on the same
folder only probes again (sizes it has already passed). Every phase runs in a subprocess of its own, so the store is
never open in two processes at once.

With ``--store server`` the memories live in a ``chroma run`` server (over
``DIR/chroma``) that stays up while memproxy processes restart around it, as
replicas would use it (``memory.chroma_url``, coherence on).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.stats import median, percentile

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LOCOMO = DATA / "locomo" / "locomo_dev.json"
LONGMEMEVAL = DATA / "longmemeval" / "lme_s_dev.json.gz"
USER = "scale"
BATCH = 1000
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
CHROMA_URL_ENV = "MEMPROXY_BENCH_CHROMA_URL"  # handed to each phase's process


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", "--sizes", default="1000,10000,100000", help="owner sizes, comma-separated")
    parser.add_argument("--searches", type=int, default=40, help="warm searches per size")
    parser.add_argument("--data", default=str(DATA), help="folder with locomo/ and longmemeval/")
    parser.add_argument("--dir", help="keep the store here (default: a temporary folder)")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")
    parser.add_argument(
        "--store", choices=("embedded", "server"), default="embedded",
        help="embedded Chroma (default) or a `chroma run` server over DIR/chroma",
    )


def run(args: argparse.Namespace) -> int:
    sizes = sorted(int(x) for x in args.rows.split(",") if x.strip())
    data = Path(args.data)
    with tempfile.TemporaryDirectory(prefix="memproxy-scale-") as tmp:
        where = Path(args.dir) if args.dir else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        with _store(args.store, where):
            rows = _measure(sizes, where, data, args.searches)
    print(render(rows))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2))
    return 0


@contextlib.contextmanager
def _store(kind: str, where: Path) -> Iterator[None]:
    """The embedded store needs nothing; a server runs for the whole measurement."""
    if kind == "embedded":
        yield
        return
    from testing.processes import ChromaServer

    server = ChromaServer(where / "chroma")
    os.environ[CHROMA_URL_ENV] = server.url
    try:
        yield
    finally:
        os.environ.pop(CHROMA_URL_ENV, None)
        server.stop()


def _measure(sizes: list[int], where: Path, data: Path, searches: int) -> list[dict[str, Any]]:
    ledger = where / "scale.json"  # what a kept --dir already holds: reruns only probe
    done: dict[str, Any] = json.loads(ledger.read_text()) if ledger.exists() else {"held": 0, "ingests": {}}
    rows = []
    for size in sizes:
        if size > done["held"]:
            done["ingests"][str(size)] = _step("ingest", where, data, done["held"], size)
            done["held"] = size
            ledger.write_text(json.dumps(done))
        elif size < done["held"]:
            print(f"{where} holds {done['held']} memories: {size} is not probed again", flush=True)
            continue
        shutil.rmtree(where / "index", ignore_errors=True)  # cold: no snapshot to load
        probe = _step("probe", where, data, searches)
        again = _step("probe", where, data, searches)  # loads the snapshot the first probe saved
        restart = {
            "restart_ms": again["cold_ms"],
            "restart_cpu_ms": again["cold_cpu_ms"],
            "restart_snapshot": again["snapshot"],
            "restart_rss_mb": again["rss_mb"],
            "restart_read_ms": again["snapshot_read_ms"],
            "restart_delta_ms": again["snapshot_delta_ms"],
        }
        rows.append({"rows": size, **done["ingests"][str(size)], **probe, **restart})
        print(render_row(rows[-1]), flush=True)
    return rows


def _step(*argv: object) -> dict[str, Any]:
    """One phase in a fresh Python process; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", *map(str, argv)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- data -------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if 20 <= len(s.strip()) <= 240]


def corpus(data: Path) -> list[str]:
    """Distinct short sentences of LoCoMo and LongMemEval, in a fixed shuffled order."""
    texts: list[str] = []
    for sample in json.loads((data / LOCOMO.relative_to(DATA)).read_text()):
        conversation = sample["conversation"]
        for key, session in conversation.items():
            if key.startswith("session_") and isinstance(session, list):
                texts.extend(f"{t['speaker']}: {s}" for t in session for s in sentences(t.get("text", "")))
    with gzip.open(data / LONGMEMEVAL.relative_to(DATA), "rt") as handle:
        for instance in json.load(handle):
            for session in instance["haystack_sessions"]:
                texts.extend(s for turn in session for s in sentences(turn["content"]))
    unique = list(dict.fromkeys(texts))
    random.Random(0).shuffle(unique)
    return unique


def memory_text(pool: list[str], n: int) -> str:
    """The n-th memory: the pool's sentences, then again with a counter past its end."""
    text = pool[n % len(pool)]
    return text if n < len(pool) else f"{text} ({n // len(pool)})"


def questions(data: Path, count: int) -> list[str]:
    samples = json.loads((data / LOCOMO.relative_to(DATA)).read_text())
    asked = [qa["question"] for sample in samples for qa in sample["qa"] if qa.get("question")]
    with gzip.open(data / LONGMEMEVAL.relative_to(DATA), "rt") as handle:
        asked += [instance["question"] for instance in json.load(handle)]
    random.Random(1).shuffle(asked)
    return asked[:count]


# -- phases (each in its own process) ------------------------------------------------


async def _open(where: Path) -> Any:
    from memory.engine import MemoryEngine
    from memory.settings import MemorySettings, SchedulerSettings, SnapshotSettings

    # no warming at startup: the first search pays for loading the owner
    settings = MemorySettings(
        scheduler=SchedulerSettings(enabled=False),
        snapshot=SnapshotSettings(warm_owners=0),
        chroma_url=os.environ.get(CHROMA_URL_ENV) or None,
    )
    engine = await MemoryEngine.open(settings, where)
    await engine.ping()  # ready (a server's /readyz): the store is connected before any search
    return engine


async def ingest(where: Path, data: Path, start: int, stop: int) -> dict[str, Any]:
    from memory.cube import Owner
    from memory.engine import NewMemory

    pool = corpus(data)
    engine = await _open(where)
    began = time.perf_counter()
    for at in range(start, stop, BATCH):
        items = [NewMemory(memory_text(pool, n)) for n in range(at, min(stop, at + BATCH))]
        await engine.add(Owner(USER), items)
    elapsed = time.perf_counter() - began
    await engine.aclose()
    return {"ingested": stop - start, "ingest_s": round(elapsed, 1), "ingest_per_s": round((stop - start) / elapsed, 1)}


async def _ticker(stalls: list[float], stop: asyncio.Event, period: float = 0.005) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(period)
        stalls.append(time.perf_counter() - before - period)


async def probe(where: Path, data: Path, searches: int) -> dict[str, Any]:
    engine = await _open(where)
    asked = questions(data, searches + 1)
    stalls: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(stalls, stop))
    began = time.perf_counter()
    restored_before = engine.snapshots.restored if engine.snapshots is not None else 0
    cpu = time.process_time()
    first = await engine.search(USER, asked[0])
    cold_ms = (time.perf_counter() - began) * 1000
    cold_cpu_ms = (time.process_time() - cpu) * 1000  # CPU of every thread: what the machine's load does not inflate
    snapshot = engine.snapshots is not None and engine.snapshots.restored > restored_before
    cold_stall = max(stalls, default=0.0)
    stalls.clear()
    warm: list[float] = []
    found: list[int] = []
    for question in asked[1:]:
        began = time.perf_counter()
        result = await engine.search(USER, question)
        warm.append((time.perf_counter() - began) * 1000)
        found.append(len(result.items))
    stop.set()
    await ticker
    await engine.aclose()
    status = _status()
    return {
        "cold_ms": round(cold_ms, 1),
        "cold_cpu_ms": round(cold_cpu_ms, 1),
        "snapshot": snapshot,
        "snapshot_read_ms": round(engine.snapshots.last_restore.get("read_ms", 0.0), 1) if snapshot else None,
        "snapshot_delta_ms": round(engine.snapshots.last_restore.get("delta_ms", 0.0), 1) if snapshot else None,
        "cold_items": len(first.items),
        "warm_p50_ms": round(median(warm), 1),
        "warm_p95_ms": round(percentile(warm, 95), 1),
        "warm_items_median": median(found),
        "max_loop_stall_cold_ms": round(cold_stall * 1000, 1),
        "max_loop_stall_warm_ms": round(max(stalls, default=0.0) * 1000, 1),
        "rss_mb": status.get("VmRSS", 0) // 1024,
        "peak_rss_mb": status.get("VmHWM", 0) // 1024,
    }


def _status() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


# -- report -------------------------------------------------------------------------


def render_row(row: dict[str, Any]) -> str:
    return (
        f"| {row['rows']:,} | {row['ingest_per_s']} | {row['cold_ms']:,.0f} | "
        f"{row['restart_ms']:,.0f}{'' if row['restart_snapshot'] else ' (no snapshot)'} | "
        f"{row['cold_cpu_ms']:,.0f} / {row['restart_cpu_ms']:,.0f} | {row['warm_p50_ms']} | "
        f"{row['warm_p95_ms']} | {row['max_loop_stall_cold_ms']} / {row['max_loop_stall_warm_ms']} | "
        f"{row['rss_mb']:,} ({row['peak_rss_mb']:,}) |"
    )


def render(rows: list[dict[str, Any]]) -> str:
    head = (
        "| memories | ingest /s | cold first search ms (rebuild) | first search after restart ms (snapshot) "
        "| CPU ms of those (rebuild / snapshot) | warm p50 ms | warm p95 ms | max loop stall ms (cold / warm) "
        "| RSS MB (peak) |\n|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *(render_row(r) for r in rows)])


def main(argv: list[str]) -> None:
    phase, where, data, *rest = argv
    if phase == "ingest":
        result = asyncio.run(ingest(Path(where), Path(data), int(rest[0]), int(rest[1])))
    elif phase == "probe":
        result = asyncio.run(probe(Path(where), Path(data), int(rest[0])))
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
