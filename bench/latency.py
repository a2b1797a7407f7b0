"""``memproxy bench latency``: what the proxy adds to a chat call.

Stands up the fake OpenAI upstream and the proxy on real loopback ports and
times, with the official ``openai`` client, calls made (a) straight to the
upstream, (b) through the proxy with ``X-Memory: off`` and (c) through the
proxy with recall only (``X-Memory: read``) and (d) with memory fully on
(recall, then a background write per call), against an owner holding
``--memories`` memories. Modes
are interleaved call by call so machine noise hits them alike: (a), (b) and
(c) together, then (d) with direct calls beside it, since (d) leaves a
background write behind every call. The report gives medians, p95 and the
added latency against the direct calls of the same phase.

The proxy is a real ``memproxy serve`` process (this checkout's code, default
settings, ``log_level: info``: an access-log line per request), as a user runs
it, so it shares no interpreter (and no GIL) with the client and the fake
upstream, which run in this process.

The fake upstream lives in the source tree's ``testing`` package, which the
wheel does not ship: run this benchmark from a source checkout
(``make bench-latency``, or ``PYTHONPATH=. memproxy bench latency`` at the
repository root).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fakes import fake_upstream
from bench.stats import median, percentile

TOPICS = (
    "I adopted a rescue dog named {x} last spring.",
    "My sister {x} is getting married in Lisbon in June.",
    "I'm training for a half marathon; my best time is {x} minutes.",
    "At work I maintain the billing service written in {x}.",
    "I can't eat {x}; I get a bad reaction.",
    "My favourite band this year is {x}.",
    "We are renovating the kitchen with {x} countertops.",
    "I'm learning {x} on Duolingo every morning.",
)
FILLERS = ("Rex", "Maria", "97", "Go", "shellfish", "Khruangbin", "quartz", "Portuguese", "Luna", "Tom", "104", "Rust")
PROMPTS = (
    "What should I cook for dinner tonight?",
    "Any tips for my race next month?",
    "Help me write a toast for a wedding.",
    "hello!",
    "What is 17 times 23?",
    "Recommend some music for a road trip.",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=200, help="calls per mode (default 200)")
    parser.add_argument("--memories", type=int, default=700, help="memories held by the owner")
    parser.add_argument(
        "--stream", action="store_true", help="time streamed calls to the last chunk, and to the first (time to first byte)"
    )
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    results = measure(args.calls, args.memories, args.stream)
    print(render(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


def measure(calls: int, memories: int, stream: bool) -> dict[str, Any]:
    from openai import OpenAI

    FakeOpenAI, ServerThread = fake_upstream("latency")
    from testing.processes import ServeProcess

    fake = FakeOpenAI()
    with tempfile.TemporaryDirectory(prefix="memproxy-bench-") as tmp, ServerThread(fake.app()) as upstream:
        proxy = ServeProcess(
            "--upstream-base-url", f"{upstream.url}/v1", data_dir=Path(tmp), env={"MEMPROXY_LOG_LEVEL": "info"}
        )
        try:
            direct = OpenAI(base_url=f"{upstream.url}/v1", api_key="sk-bench", max_retries=0)
            via = OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-bench", max_retries=0)
            _seed(via, memories)
            # Phase 1: no writes in flight. Phase 2: memory fully on, so every
            # call also leaves a background write behind (the steady state).
            phases = [
                {
                    "direct": (direct, {}),
                    "proxy_memory_off": (via, {"X-Memory": "off", "X-Memory-User": "bench"}),
                    "proxy_memory_read": (via, {"X-Memory": "read", "X-Memory-User": "bench"}),
                },
                {
                    "direct_during_writes": (direct, {}),
                    "proxy_memory_on": (via, {"X-Memory": "on", "X-Memory-User": "bench"}),
                },
            ]
            timings: dict[str, list[float]] = {}
            firsts: dict[str, list[float]] = {}
            recalled: list[int] = []
            for modes in phases:
                for client, headers in modes.values():  # warm connections and caches
                    _call(client, headers, PROMPTS[0], stream)
                for i in range(calls):
                    prompt = PROMPTS[i % len(PROMPTS)]
                    for name, (client, headers) in modes.items():
                        elapsed, count, first = _call(client, headers, prompt, stream)
                        timings.setdefault(name, []).append(elapsed)
                        if stream:
                            firsts.setdefault(name, []).append(first)
                        if name == "proxy_memory_read":
                            recalled.append(count)
        finally:
            proxy.stop()
    results = _summary(timings, recalled, calls, memories, stream)
    if stream:  # time to the first chunk, against direct's in the same phase
        results["first_chunk"] = _summary(firsts, recalled, calls, memories, stream)["modes"]
    return results


def _seed(client: Any, count: int) -> None:
    items = []
    for i in range(count):
        template = TOPICS[i % len(TOPICS)]
        items.append({"content": template.format(x=FILLERS[(i * 7) % len(FILLERS)]) + f" (note {i})"})
    for start in range(0, len(items), 1000):
        client.post("/memories", body={"user": "bench", "memories": items[start : start + 1000]}, cast_to=object)


def _call(client: Any, headers: dict[str, str], prompt: str, stream: bool) -> tuple[float, int, float]:
    """(ms to the whole reply, memories recalled, ms to the first streamed chunk or to the reply)."""
    messages = [{"role": "user", "content": prompt}]
    started = time.perf_counter()
    first = 0.0
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model="fake-model", messages=messages, stream=True, extra_headers=headers
        )
        for _ in raw.parse():
            first = first or (time.perf_counter() - started) * 1000
    else:
        raw = client.chat.completions.with_raw_response.create(
            model="fake-model", messages=messages, extra_headers=headers
        )
        raw.parse()
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed, int(raw.headers.get("x-memory-recalled", "0")), first or elapsed


def _summary(timings: dict[str, list[float]], recalled: list[int], calls: int, memories: int, stream: bool) -> dict[str, Any]:
    modes = {}
    for name, values in timings.items():
        direct = timings["direct_during_writes" if name == "proxy_memory_on" else "direct"]
        base = median(direct)
        modes[name] = {
            "median_ms": round(median(values), 3),
            "p95_ms": round(percentile(values, 95), 3),
            "added_median_ms": round(median(values) - base, 3),
            "added_p95_ms": round(percentile(values, 95) - percentile(direct, 95), 3),
            "ratio_to_direct": round(median(values) / base, 3),
        }
    return {
        "calls_per_mode": calls,
        "memories": memories,
        "stream": stream,
        "mean_recalled": round(sum(recalled) / max(1, len(recalled)), 2),
        "modes": modes,
    }


def render(results: dict[str, Any]) -> str:
    lines = [
        f"latency over {results['calls_per_mode']} interleaved calls per mode "
        f"({'streamed' if results['stream'] else 'non-streamed'}; owner holds {results['memories']} memories; "
        f"mean recalled {results['mean_recalled']})",
        f"{'mode':<20}{'median ms':>11}{'p95 ms':>10}{'added ms':>10}{'added p95':>10}{'x direct':>10}",
    ]
    for name, row in results["modes"].items():
        lines.append(
            f"{name:<20}{row['median_ms']:>11.2f}{row['p95_ms']:>10.2f}"
            f"{row['added_median_ms']:>10.2f}{row['added_p95_ms']:>10.2f}{row['ratio_to_direct']:>10.2f}"
        )
    if "first_chunk" in results:
        lines.append("time to the first streamed chunk")
        for name, row in results["first_chunk"].items():
            lines.append(
                f"{name:<20}{row['median_ms']:>11.2f}{row['p95_ms']:>10.2f}"
                f"{row['added_median_ms']:>10.2f}{row['added_p95_ms']:>10.2f}{row['ratio_to_direct']:>10.2f}"
            )
    return "\n".join(lines)
