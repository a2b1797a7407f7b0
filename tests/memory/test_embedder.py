"""The embedding runtimes: same model, same vectors, ONNX built once per machine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from memory.embed_runtime import RUNTIMES, resolve
from memory.embedder import Embedder
from memory.onnx_export import ensure_file
from memory.settings import MemorySettings

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "I adopted a rescue greyhound named Biscuit last spring.",
    "User: what's a good stretch after running?\nAssistant: Try a standing quad stretch: hold your ankle "
    "behind you for thirty seconds, keep your knees together, then switch legs. " * 12,
    "ok",
]


def test_the_query_and_bulk_lanes_give_the_same_vectors(embedder: Embedder) -> None:
    async def both() -> tuple[np.ndarray, np.ndarray]:
        return await embedder.embed_query(TEXTS), await embedder.embed(TEXTS)

    query, bulk = asyncio.run(both())
    assert query.shape == bulk.shape == (3, 384) and query.dtype == bulk.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(query, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(bulk, axis=1), 1.0, atol=1e-5)
    # the lanes may run different runtimes (onnx fp32 / torch bf16): same space, agreeing to 1e-3
    assert float((query * bulk).sum(axis=1).min()) > 0.999, embedder.runtimes


def test_onnx_fp32_matches_torch_fp32_and_int8_stays_close(embedder: Embedder) -> None:
    reference = Embedder(query_runtime="torch", bulk_runtime="onnx-int8", cache_dir=embedder.cache_dir)
    onnx = Embedder(query_runtime="onnx", bulk_runtime="onnx", cache_dir=embedder.cache_dir)
    try:
        async def run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return await reference.embed_query(TEXTS), await onnx.embed(TEXTS), await reference.embed(TEXTS)

        torch_fp32, onnx_fp32, onnx_int8 = asyncio.run(run())
    finally:
        reference.close()
        onnx.close()
    assert float((torch_fp32 * onnx_fp32).sum(axis=1).min()) > 0.99999
    assert float((torch_fp32 * onnx_int8).sum(axis=1).min()) > 0.95  # 0.967 for 'ok', ~0.995 for sentences


def test_auto_resolves_per_lane_and_unknown_runtimes_are_refused() -> None:
    assert resolve("query", "auto") == "onnx"
    assert resolve("bulk", "auto") == "openvino"
    assert resolve("bulk", "onnx-int8") == "onnx-int8"
    with pytest.raises(ValueError, match="unknown embedding runtime"):
        resolve("query", "tensorrt")
    with pytest.raises(ValidationError):
        MemorySettings(embedding_bulk_runtime="tensorrt")  # type: ignore[arg-type]
    assert set(RUNTIMES) == {"auto", "onnx", "onnx-int8", "openvino", "torch", "torch-bf16"}


BUILDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from memory.onnx_export import ensure_file

    target, log = Path(sys.argv[1]), Path(sys.argv[2])

    def build(tmp: Path) -> None:
        with log.open("a") as f:
            f.write("built\\n")
        tmp.write_bytes(b"half")
        time.sleep(0.5)  # a reader must never see the half-written file
        tmp.write_bytes(b"complete")

    print(ensure_file(target, build).read_bytes().decode())
    """
)


def test_concurrent_processes_build_the_file_once_and_never_see_half_of_it(tmp_path: Path) -> None:
    target, log = tmp_path / "cache" / "model.onnx", tmp_path / "builds.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", BUILDER, str(target), str(log)], stdout=subprocess.PIPE, env=env,
                         text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outputs == ["complete"] * 3
    assert log.read_text().splitlines() == ["built"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx", "model.onnx.lock"]  # no temp left
    assert ensure_file(target, lambda tmp: pytest.fail("rebuilt an existing file")) == target


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        ensure_file(target, broken)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx.lock"]


def test_the_onnx_runtime_never_loads_torch(embedder: Embedder) -> None:
    """Both lanes on ONNX (the file already built by the session's embedder): no torch in the process."""
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from memory.embedder import Embedder
        e = Embedder(query_runtime="onnx", bulk_runtime="onnx", cache_dir={str(embedder.cache_dir or "") or None!r})
        asyncio.run(e.warmup())
        print(e.runtimes["query"], e.runtimes["bulk"], "torch" in sys.modules)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["onnx", "onnx", "False"]


def test_a_bulk_lane_with_its_own_threads_gets_its_own_session(embedder: Embedder) -> None:
    split = Embedder(query_runtime="onnx", bulk_runtime="onnx", bulk_threads=2, cache_dir=embedder.cache_dir)
    shared = Embedder(query_runtime="onnx", bulk_runtime="onnx", cache_dir=embedder.cache_dir)
    try:
        for e in (split, shared):
            asyncio.run(e.warmup())
        assert split._models["bulk"].session is not split._models["query"].session  # type: ignore[attr-defined]
        assert shared._models["bulk"].session is shared._models["query"].session  # type: ignore[attr-defined]
        vectors = asyncio.run(split.embed(TEXTS))
        assert float((vectors * asyncio.run(shared.embed(TEXTS))).sum(axis=1).min()) > 0.99999
    finally:
        split.close()
        shared.close()


def test_auto_falls_back_to_torch_when_the_onnx_file_cannot_be_built(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    fallback = Embedder(query_runtime="auto", bulk_runtime="torch", cache_dir=blocked)
    explicit = Embedder(query_runtime="onnx", bulk_runtime="torch", cache_dir=blocked)
    try:
        vectors = asyncio.run(fallback.embed_query(TEXTS[:1]))
        assert vectors.shape == (1, 384) and fallback.runtimes["query"] == "torch"
        with pytest.raises(OSError):  # asked for onnx by name: no silent substitute
            asyncio.run(explicit.embed_query(TEXTS[:1]))
    finally:
        fallback.close()
        explicit.close()


def test_openvino_matches_torch_fp32_on_one_worker_and_on_two(embedder: Embedder) -> None:
    texts = [f"Turn {i}: " + "word " * (i % 40) for i in range(96)] + TEXTS  # several length buckets
    reference = Embedder(query_runtime="onnx", bulk_runtime="torch", cache_dir=embedder.cache_dir)
    one = Embedder(query_runtime="onnx", bulk_runtime="openvino", cache_dir=embedder.cache_dir)
    two = Embedder(query_runtime="onnx", bulk_runtime="openvino", bulk_threads=2, cache_dir=embedder.cache_dir)
    try:
        async def run() -> list[np.ndarray]:
            return [await reference.embed_memories(texts), await one.embed_memories(texts),
                    await two.embed_memories(texts), await one.embed(TEXTS), await reference.embed(TEXTS)]

        torch_fp32, alone, side_by_side, plain, plain_fp32 = asyncio.run(run())
        assert len(two._models["bulk"]._requests) == 2  # type: ignore[attr-defined]
    finally:
        for e in (reference, one, two):
            e.close()
    assert one.runtimes["bulk"] == two.runtimes["bulk"] == "openvino"
    assert alone.shape == (len(texts), 384) and alone.dtype == np.float32
    # bfloat16 on an AMX CPU agrees with fp32 as closely as torch-bf16 does; fp32 elsewhere
    assert float((torch_fp32 * alone).sum(axis=1).min()) > 0.9999
    assert float((torch_fp32 * side_by_side).sum(axis=1).min()) > 0.9999
    assert float((alone * side_by_side).sum(axis=1).min()) > 0.99999  # same kernels, other batches
    assert float((plain_fp32 * plain).sum(axis=1).min()) > 0.9999


def test_auto_bulk_lane_falls_back_to_torch_when_openvino_cannot_load(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    fallback = Embedder(query_runtime="torch", bulk_runtime="auto", cache_dir=blocked)
    explicit = Embedder(query_runtime="torch", bulk_runtime="openvino", cache_dir=blocked)
    try:
        vectors = asyncio.run(fallback.embed_memories(TEXTS[:1]))
        assert vectors.shape == (1, 384) and fallback.runtimes["bulk"] in ("torch", "torch-bf16")
        with pytest.raises(OSError):  # asked for openvino by name: no silent substitute
            asyncio.run(explicit.embed(TEXTS[:1]))
    finally:
        fallback.close()
        explicit.close()


def test_a_torch_bulk_lane_with_two_threads_runs_two_batches_side_by_side(embedder: Embedder) -> None:
    import torch

    texts = [f"Turn {i}: " + "word " * (i % 40) for i in range(96)] + TEXTS  # several length buckets
    two = Embedder(query_runtime="onnx", bulk_runtime="torch", bulk_threads=2, cache_dir=embedder.cache_dir)
    one = Embedder(query_runtime="onnx", bulk_runtime="torch", bulk_threads=1, cache_dir=embedder.cache_dir)
    try:
        side_by_side = asyncio.run(two.embed_memories(texts))
        pool = two._models["bulk"]._pool  # type: ignore[attr-defined]
        # one intra-op thread per forward pass, never a spinning pool (set per thread: OpenMP)
        assert pool.submit(torch.get_num_threads).result() == 1
        assert two._lanes["bulk"].submit(torch.get_num_threads).result() == 1
        alone = asyncio.run(one.embed_memories(texts))
    finally:
        two.close()
        one.close()
    assert float((side_by_side * alone).sum(axis=1).min()) > 0.99999
