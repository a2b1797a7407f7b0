"""``memproxy bench coherence``: what following other processes costs, and how stale they are.

A real ``chroma run`` server and two engines in this process, each with its
own data directory (two replicas sharing only the store), default
``memory.coherence`` settings unless given. It measures:

- the per-request check (``Coherence.fresh``, awaited by every search and
  core read): p50/p95/max over ``--checks`` calls while polls run;
- search p50/p95 on B for an owner of ``--memories`` memories, with
  coherence and, as the baseline in the same run, on a third engine with
  ``memory.coherence.enabled: false`` (recall queries the server);
- staleness: ``--rounds`` times A writes a new memory and B searches for it
  every 10 ms until it is recalled: the time from A's write returning to B
  recalling it (bound: ``max_staleness_ms``);
- one poll's duration, and whether every change reached B as a patch (no
  owner rebuilt from the store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import median, percentile

USER = "coherence-bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memories", type=int, default=1000, help="memories of the owner before measuring")
    parser.add_argument("--checks", type=int, default=5000, help="per-request checks timed")
    parser.add_argument("--searches", type=int, default=50, help="searches timed on each engine")
    parser.add_argument("--rounds", type=int, default=20, help="write-on-A, recall-on-B rounds")
    parser.add_argument("--interval-ms", type=int, default=250, help="memory.coherence.interval_ms")
    parser.add_argument("--max-staleness-ms", type=int, default=1000, help="memory.coherence.max_staleness_ms")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(_main(args))
    print(render(result))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2))
    return 0


def _stats(values: list[float], digits: int = 2) -> dict[str, float]:
    return {
        "p50": round(median(values), digits),
        "p95": round(percentile(values, 95), digits),
        "max": round(max(values), digits),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from memory.cube import Owner
    from memory.embedder import Embedder
    from memory.engine import MemoryEngine, NewMemory
    from memory.settings import CoherenceSettings, MemorySettings, SchedulerSettings
    from testing.processes import ChromaServer

    with tempfile.TemporaryDirectory(prefix="memproxy-coherence-") as tmp:
        root = Path(tmp)
        server = ChromaServer(root / "chroma")
        embedder = Embedder()
        engines: list[MemoryEngine] = []
        try:

            async def engine(name: str, enabled: bool = True) -> MemoryEngine:
                coherence = CoherenceSettings(
                    enabled=enabled, interval_ms=args.interval_ms, max_staleness_ms=args.max_staleness_ms
                )
                settings = MemorySettings(
                    chroma_url=server.url, coherence=coherence, scheduler=SchedulerSettings(enabled=False)
                )
                opened = await MemoryEngine.open(settings, root / name, embedder=embedder)
                engines.append(opened)
                return opened

            a, b, plain = await engine("a"), await engine("b"), await engine("plain", enabled=False)
            owner = Owner(USER)
            for start in range(0, args.memories, 500):
                count = min(500, args.memories - start)
                await a.add(owner, [NewMemory(f"User: note {n}: I keep item {n} in box {n % 97}") for n in range(start, start + count)])
            questions = [f"where do I keep item {n * 7 % args.memories}?" for n in range(args.searches)]
            await b.search(USER, questions[0])  # B holds the owner
            await plain.search(USER, questions[0])
            assert b.coherence is not None
            loads_before = b.coherence.patched
            loads: list[str] = []  # owners B reads whole from the store (or a snapshot) from here on
            load = b._lexical._load

            async def counted(user: str) -> Any:
                loads.append(user)
                return await load(user)

            b._lexical._load = counted

            checks: list[float] = []
            for n in range(args.checks):
                began = time.perf_counter()
                await b.coherence.fresh()
                checks.append((time.perf_counter() - began) * 1e6)
                if n % 100 == 0:
                    await asyncio.sleep(0.001)  # let the poller run meanwhile

            timed: dict[str, list[float]] = {"coherent": [], "store": []}
            for question in questions:
                for label, which in (("coherent", b), ("store", plain)):
                    began = time.perf_counter()
                    await which.search(USER, question)
                    timed[label].append((time.perf_counter() - began) * 1000)

            stale: list[float] = []
            for n in range(args.rounds):
                token = f"zq{n}x{int(time.time() * 1000) % 100000}"
                [cube] = await a.add(owner, [NewMemory(f"User: the locker code word is {token}")])
                written = time.perf_counter()
                while True:
                    hits = (await b.search(USER, f"locker code word {token}")).items
                    if any(h.cube.id == cube.id for h in hits):
                        break
                    await asyncio.sleep(0.01)
                stale.append((time.perf_counter() - written) * 1000)

            polls: list[float] = []
            for _ in range(20):
                began = time.perf_counter()
                await b.coherence.poll()
                polls.append((time.perf_counter() - began) * 1000)
            return {
                "memories": args.memories,
                "interval_ms": args.interval_ms,
                "max_staleness_ms": args.max_staleness_ms,
                "check_us": _stats(checks),
                "check_waits": b.coherence.waits,
                "search_ms_coherent": _stats(timed["coherent"], 1),
                "search_ms_store": _stats(timed["store"], 1),
                "staleness_ms": _stats(stale, 0),
                "poll_ms": _stats(polls, 1),
                "patches": b.coherence.patched - loads_before,
                "rebuilt": len(loads),
            }
        finally:
            for opened in engines:
                await opened.aclose()
            embedder.close()
            server.stop()


def render(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"owner of {r['memories']:,} memories, poll every {r['interval_ms']} ms, bound {r['max_staleness_ms']} ms",
            "| measure | p50 | p95 | max |",
            "|---|---|---|---|",
            f"| per-request check (us) | {r['check_us']['p50']} | {r['check_us']['p95']} | {r['check_us']['max']} |",
            f"| search, coherent in-process index (ms) | {r['search_ms_coherent']['p50']} | "
            f"{r['search_ms_coherent']['p95']} | {r['search_ms_coherent']['max']} |",
            f"| search, coherence off: store queried (ms) | {r['search_ms_store']['p50']} | "
            f"{r['search_ms_store']['p95']} | {r['search_ms_store']['max']} |",
            f"| staleness: A's write -> B recalls it (ms) | {r['staleness_ms']['p50']} | "
            f"{r['staleness_ms']['p95']} | {r['staleness_ms']['max']} |",
            f"| one poll of the change log (ms) | {r['poll_ms']['p50']} | {r['poll_ms']['p95']} | {r['poll_ms']['max']} |",
            f"checks that waited for a poll: {r['check_waits']}; owner patches on B: {r['patches']}; "
            f"owners B rebuilt: {r['rebuilt']}",
        ]
    )
