"""bench writer: both writer modes drain the same backlog completely, and the CPU split is reported."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.writer import _drain, _line


def test_both_writer_modes_drain_every_turn_and_one_at_a_time_splits_the_cpu(embedder: Any) -> None:
    one = asyncio.run(_drain(embedder, owners=3, rounds=2, batch=4, pipeline=False))
    piped = asyncio.run(_drain(embedder, owners=3, rounds=2, batch=4, pipeline=True))
    assert one["all_stored"] and piped["all_stored"] and one["turns"] == piped["turns"] == 6
    assert one["embed_ms_per_turn"] > 0 and one["store_ms_per_turn"] > 0
    assert piped["embed_ms_per_turn"] is None  # overlapping calls: no split
    assert "store add" in _line(one) and _line(piped).startswith("pipelined")
    assert "embed_memories" not in vars(embedder)  # the shared embedder is left as it was
