"""``memproxy bench writer``: how fast the background writer drains a backlog, and where its CPU goes.

``--owners`` users (default 50, as ``bench load``) each journal ``--rounds``
short chat turns shaped like ``bench load``'s (``User: load ... my note is
<hex>.`` / ``Assistant: Echo: ...``) while the writer is stopped; every
owner's index is loaded first (a search each), as under load. The writer is
then started with batches of ``--batch`` turns (default 16: what it gathers
under steady traffic) and the drain is timed: turns per second (wall), CPU
per turn and cores used (``time.process_time`` of this process). Each repeat
runs the writer one batch at a time and pipelined (``memory.write_pipeline``:
the next batch embedded while one is stored), alternating, in the same
process, so the two compare on the same machine state.

The one-at-a-time runs also split the CPU: the memories' embedding
(``Embedder.embed_memories``) and the store's add (Chroma, one call per owner
in a batch, plus the change-log record), timed with ``time.process_time``
around each call (the writer runs them one after the other, so what the
process spent meanwhile is theirs).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

CpuAccount = dict[str, float]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--owners", type=int, default=50, help="memory users (default 50)")
    parser.add_argument("--rounds", type=int, default=8, help="turns journaled per owner (default 8)")
    parser.add_argument("--batch", type=int, default=16, help="turns per writer batch (default 16)")
    parser.add_argument("--repeats", type=int, default=2, help="one-at-a-time / pipelined pairs (default 2)")


def _timed(fn: Callable[..., Awaitable[Any]], account: CpuAccount, label: str) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return await fn(*args, **kwargs)
        finally:
            account[label] = account.get(label, 0.0) + time.process_time() - started

    return timed


async def _drain(embedder: Any, owners: int, rounds: int, batch: int, pipeline: bool) -> dict[str, Any]:
    from memory.cube import Owner, Provenance
    from memory.engine import MemoryEngine
    from memory.settings import MemorySettings

    settings = MemorySettings(write_pipeline="on" if pipeline else "off")
    with tempfile.TemporaryDirectory(prefix="memproxy-writer-") as tmp:
        engine = await MemoryEngine.open(settings, Path(tmp), embedder=embedder)
        try:
            users = [Owner(user=f"load-w-{c}") for c in range(owners)]

            async def journal(turn: int) -> None:
                for c, owner in enumerate(users):
                    text = f"load w client {c} turn {turn}: my note is {uuid.uuid4().hex[:8]}."
                    await engine.remember(owner, text, f"Echo: {text}", Provenance(), wait=False)

            await journal(0)
            await engine.flush()
            for owner in users:  # every owner's index loaded, as under load
                await engine.search(owner.user, "what was my note?")
            await engine.writer.aclose()  # stopped while the backlog is journaled
            for turn in range(1, rounds + 1):
                await journal(turn)
            account: CpuAccount = {}
            if not pipeline:  # one call after the other: the process's CPU meanwhile is theirs
                engine.embedder.embed_memories = _timed(engine.embedder.embed_memories, account, "embed")
                engine.store.add = _timed(engine.store.add, account, "store")
            turns = owners * rounds
            engine.writer._closed = False
            engine.writer._batch_size = batch
            cpu0, wall0 = time.process_time(), time.perf_counter()
            engine.writer.start()
            await engine.flush()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            stored = sum([len((await engine.list(o.user, limit=rounds + 1)).items) for o in users])
            return {
                "pipeline": pipeline,
                "turns": turns,
                "turns_per_s": turns / wall,
                "cpu_ms_per_turn": 1000 * cpu / turns,
                "cores": cpu / wall,
                "embed_ms_per_turn": 1000 * account["embed"] / turns if "embed" in account else None,
                "store_ms_per_turn": 1000 * account["store"] / turns if "store" in account else None,
                "all_stored": stored == owners * (rounds + 1),
            }
        finally:
            if "embed_memories" in vars(engine.embedder):
                del engine.embedder.embed_memories
            await engine.aclose()


async def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from memory.embedder import Embedder

    embedder = Embedder()
    try:
        await embedder.warmup()
        results = []
        for _ in range(args.repeats):
            for pipeline in (False, True):
                result = await _drain(embedder, args.owners, args.rounds, args.batch, pipeline)
                results.append(result)
                print(_line(result), flush=True)
        return results
    finally:
        embedder.close()


def _line(r: dict[str, Any]) -> str:
    split = (
        f"; embedding {r['embed_ms_per_turn']:.2f} ms/turn, store add {r['store_ms_per_turn']:.2f} ms/turn"
        if r["embed_ms_per_turn"] is not None
        else ""
    )
    mode = "pipelined   " if r["pipeline"] else "one at a time"
    return (
        f"{mode}: {r['turns']} turns at {r['turns_per_s']:.1f} turns/s, CPU {r['cpu_ms_per_turn']:.2f} ms/turn "
        f"({r['cores']:.2f} cores){split}; all stored: {r['all_stored']}"
    )


def run(args: argparse.Namespace) -> int:
    results = asyncio.run(_run(args))
    off = [r["turns_per_s"] for r in results if not r["pipeline"]]
    on = [r["turns_per_s"] for r in results if r["pipeline"]]
    print(f"pipelined / one at a time, drain rate: {sum(on) / len(on) / (sum(off) / len(off)):.2f}x "
          f"(means of {len(on)} runs each)")
    return 0 if all(r["all_stored"] for r in results) else 1
