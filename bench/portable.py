"""``memproxy bench portable``: export and import throughput and peak RSS for a large owner.

Seeds ``--memories`` memories (default 100,000) for one user straight into a
fresh data dir (random unit vectors: seeding measures nothing), then runs the
real commands as child processes, each measured on its own (its own timing of
the work, wall time with start-up, and peak RSS from ``wait4``):

1. ``memproxy export --user U`` of an empty owner (the baseline: Python, torch,
   the embedding model and Chroma loaded);
2. ``memproxy export --user U -o FILE`` of the large owner;
3. ``memproxy import FILE`` into another fresh data dir (vectors reused: the
   fingerprint matches, so nothing is embedded).

The peak RSS of 2 and 3 over the baseline is what the archive's streaming
costs; a design that held the owner in memory would grow with ``--memories``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

USER = "bench-portable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memories", type=int, default=100_000, help="memories of the large owner")
    parser.add_argument("--workdir", help="keep the data dirs and archive here (default: a temp dir)")


async def _seed(data_dir: Path, count: int) -> None:
    import numpy as np

    from memory.cube import MemCube, Owner, owner_key
    from memory.engine import MemoryEngine
    from memory.settings import MemorySettings

    engine = await MemoryEngine.open(MemorySettings(), data_dir)
    rng = np.random.default_rng(7)
    key = owner_key(USER)
    try:
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            cubes = [
                MemCube(id=f"mem_{key}_{start + i:012x}{0:06x}{i % 4096:06x}", owner=Owner(USER, session=f"s{(start + i) // 50}"),
                        content=f"Memory {start + i}: on day {(start + i) % 365} I talked about topic {(start + i) % 997}.",
                        kind="episodic", metadata={"n": start + i}, tokens=20)
                for i in range(n)
            ]
            vectors = rng.standard_normal((n, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            await engine.store.upsert(cubes, vectors)  # type: ignore[attr-defined]
            print(f"  seeded {start + n:,}", file=sys.stderr, flush=True)
    finally:
        await engine.aclose()


def _measure(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed")
    peak_mb = usage.ru_maxrss / 1024  # kB on Linux
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1), "summary": json.loads(output)}


def run(args: argparse.Namespace) -> int:
    from proxy.environment import prepare_environment

    prepare_environment()
    exe = str(Path(sys.executable).with_name("memproxy"))
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="memproxy-bench-portable-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        source, target, archive = work / "source", work / "target", work / "owner.memcube"
        started = time.perf_counter()
        asyncio.run(_seed(source, args.memories))
        seed_s = time.perf_counter() - started
        base = _measure([exe, "export", "--user", "nobody", "-o", str(work / "empty.memcube"), "--data-dir", str(source)], env)
        export = _measure([exe, "export", "--user", USER, "-o", str(archive), "--data-dir", str(source)], env)
        imported = _measure([exe, "import", str(archive), "--data-dir", str(target)], env)
        n = args.memories
        result = {
            "memories": n,
            "seed_s": round(seed_s, 1),
            "archive_mb": round(archive.stat().st_size / 2**20, 1),
            "baseline_peak_rss_mb": base["peak_rss_mb"],
            "export": {"wall_s": export["seconds"], "seconds": export["summary"]["seconds"],
                       "memories_per_s": export["summary"]["memories_per_s"], "peak_rss_mb": export["peak_rss_mb"]},
            "import": {"wall_s": imported["seconds"], "seconds": imported["summary"]["seconds"],
                       "memories_per_s": imported["summary"]["memories_per_s"],
                       "peak_rss_mb": imported["peak_rss_mb"], "embedded": imported["summary"]["embedded"],
                       "added": imported["summary"]["added"]},
        }
    print(json.dumps(result, indent=2))
    return 0
