"""``memproxy bench <name>``: each benchmark registers its own sub-command.

A benchmark module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

BENCHMARKS = {
    "latency": ("bench.latency", "added latency of the proxy vs calling the upstream directly"),
    "ttft": ("bench.ttft", "time to first token with vs without activation memory (llama.cpp KV caches)"),
    "big-body": ("bench.big_body", "event-loop stall, time and memory of one huge chat turn; redaction cost"),
    "embed": ("bench.embed", "embedding runtimes side by side: write and query speed, agreement with torch fp32"),
    "locomo": ("bench.locomo", "evidence recall of memory search on LoCoMo, with BM25 and dense baselines"),
    "portable": ("bench.portable", "export/import throughput and peak RSS of a large owner (.memcube archives)"),
    "load": ("bench.load", "concurrent chat load, journal depth and RSS, then kill -9: acknowledged turns lost (must be 0)"),
    "coherence": ("bench.coherence", "two engines over one Chroma server: per-request coherence check, staleness, poll cost"),
    "scale": ("bench.scale", "cold and warm search, RSS and ingest rate against owner size (one owner, a restart per size)"),
    "longmemeval": ("bench.longmemeval", "evidence-turn recall of memory search on LongMemEval-S (assistant chats), with baselines"),
    "writer": ("bench.writer", "background writer: drain rate of a backlog, one batch at a time vs pipelined; CPU split"),
    "facts": ("bench.facts", "everyday facts told in passing, recalled through the chat path (fake upstream, real proxy)"),
}


def add_bench_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="bench", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        sub = commands.add_parser(name, help=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="memproxy bench", description="memproxy's benchmarks")
    add_bench_commands(parser)
    args = parser.parse_args(list(argv))
    return int(args.handler(args) or 0)
