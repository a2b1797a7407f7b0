"""``memproxy bench load``: sustained concurrent chat against the real server, then ``kill -9``.

``--clients`` concurrent clients (default 50), each its own memory user,
send chat completions (half of them streamed) back to back for
``--seconds`` (default 60) through a real ``memproxy serve`` process in
front of the fake OpenAI upstream (``testing.fake_openai``, source tree only).
Reported: requests/s, p50/p99 latency (to the last byte), the share of
replies saying ``X-Memory-Status: degraded``, the journal depth over time
(``/readyz``), the server's RSS before and after, and then the durability
check: the server is killed with SIGKILL right after the last acknowledged
reply, restarted on the same data dir, and every acknowledged turn is looked
up in the store once the journal is replayed: turns lost (must be 0) and
duplicated (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.stats import median, percentile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to drive load (default 60)")
    parser.add_argument("--data-dir", help="the server's data dir (default: a fresh temporary one)")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def _one(client: httpx.AsyncClient, user: str, text: str, stream: bool) -> tuple[bool, str]:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}], "stream": stream}
    headers = {"X-Memory-User": user}
    if stream:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            async for _ in response.aiter_bytes():
                pass
            return response.status_code == 200, response.headers.get("x-memory-status", "")
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    return response.status_code == 200, response.headers.get("x-memory-status", "")


async def _drive(url: str, clients: int, seconds: float, run: str) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    acknowledged: list[tuple[str, str]] = []
    errors = 0
    depth: list[tuple[float, int]] = []
    writer_failing = 0  # /readyz samples with the store writer failing (a cause of degraded)
    started = time.monotonic()
    stop_at = started + seconds
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)

    async def client_loop(c: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        user = f"load-{run}-{c}"
        n = 0
        while time.monotonic() < stop_at:
            text = f"load {run} client {c} turn {n}: my note is {uuid.uuid4().hex[:8]}."
            t0 = time.perf_counter()
            try:
                ok, status = await _one(http, user, text, stream=bool(n % 2))
            except httpx.HTTPError:
                ok, status = False, ""
            latencies.append(time.perf_counter() - t0)
            if ok:
                acknowledged.append((user, text))
                statuses[status] += 1
            else:
                errors += 1
            n += 1

    async def sample(http: httpx.AsyncClient) -> None:
        nonlocal writer_failing
        while time.monotonic() < stop_at:
            try:
                body = (await http.get("/readyz")).json()
                depth.append((round(time.monotonic() - started, 1), int(body["writes"]["journal_depth"])))
                writer_failing += body["writes"]["status"] != "ok"
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            await asyncio.sleep(1.0)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(sample(http), *(client_loop(c, http) for c in range(clients)))
    elapsed = time.monotonic() - started
    return {
        "elapsed_s": elapsed,
        "latencies": latencies,
        "statuses": statuses,
        "acknowledged": acknowledged,
        "errors": errors,
        "depth": depth,
        "writer_failing_samples": writer_failing,
    }


def _wait_replayed(url: str, timeout_s: float = 600.0) -> float:
    started = time.monotonic()
    while True:
        try:
            body = httpx.get(f"{url}/readyz", timeout=10).json()
            if body.get("writes", {}).get("journal_depth") == 0:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the journal was not replayed within {timeout_s:.0f} s")
        time.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    try:
        from testing.fake_openai import FakeOpenAI
        from testing.processes import ServeProcess, stored_contents
        from testing.serving import ServerThread
    except ImportError:
        print("bench load needs the source tree's testing/ package: run it from a checkout (PYTHONPATH=.)")
        return 2

    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="memproxy-load-"))
    run_id = uuid.uuid4().hex[:8]
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as upstream:
        upstream_url = f"{upstream.url}/v1"
        server = ServeProcess("--upstream-base-url", upstream_url, data_dir=data_dir)
        try:
            rss_before = rss_mb(server.pid)
            print(f"memproxy serve pid {server.pid} on {server.url}; {args.clients} clients for {args.seconds:.0f} s ...")
            result = asyncio.run(_drive(server.url, args.clients, args.seconds, run_id))
            rss_after = rss_mb(server.pid)
            depth_at_kill = httpx.get(f"{server.url}/readyz", timeout=30).json()["writes"]["journal_depth"]
        finally:
            server.kill()  # SIGKILL right after the last acknowledged reply
        restarted = ServeProcess("--upstream-base-url", upstream_url, data_dir=data_dir)
        try:
            replay_s = _wait_replayed(restarted.url)
            by_user: dict[str, list[str]] = collections.defaultdict(list)
            for user, text in result["acknowledged"]:
                by_user[user].append(text)
            lost = duplicated = 0
            for user, texts in by_user.items():
                stored = stored_contents(restarted.url, user)
                for text in texts:
                    hits = sum(1 for c in stored if text in c)
                    lost += hits == 0
                    duplicated += max(0, hits - 1)
        finally:
            restarted.stop()

    latencies = result["latencies"]
    acked = len(result["acknowledged"])
    statuses = result["statuses"]
    report = {
        "clients": args.clients,
        "seconds": round(result["elapsed_s"], 1),
        "requests": len(latencies),
        "acknowledged": acked,
        "errors": result["errors"],
        "requests_per_s": round(len(latencies) / result["elapsed_s"], 1),
        "p50_ms": round(median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None,
        "degraded_share": round(statuses.get("degraded", 0) / acked, 4) if acked else 0.0,
        "statuses": dict(statuses),
        "writer_failing_samples": result["writer_failing_samples"],
        "journal_depth": {
            "max": max((d for _, d in result["depth"]), default=0),
            "at_kill": depth_at_kill,
            "samples": result["depth"],
        },
        "rss_mb": {"before": round(rss_before, 1), "after": round(rss_after, 1)},
        "replay_s": round(replay_s, 1),
        "lost_after_kill_9": lost,
        "duplicated_after_kill_9": duplicated,
    }
    _print(report)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))
    return 0 if lost == 0 and duplicated == 0 else 1


def _print(r: dict[str, Any]) -> None:
    depth = r["journal_depth"]
    samples = ", ".join(f"{t:.0f}s:{d}" for t, d in depth["samples"][:: max(1, len(depth["samples"]) // 12)])
    print(f"requests       {r['requests']} in {r['seconds']} s ({r['requests_per_s']} req/s), errors {r['errors']}")
    print(f"latency        p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
    print(f"degraded       {r['degraded_share'] * 100:.2f}% of acknowledged replies {r['statuses']}; "
          f"/readyz samples with the writer failing: {r['writer_failing_samples']}")
    print(f"journal depth  max {depth['max']}, at kill {depth['at_kill']}; over time: {samples}")
    print(f"server RSS     {r['rss_mb']['before']} MiB before, {r['rss_mb']['after']} MiB after")
    print(f"kill -9        replayed in {r['replay_s']} s; acknowledged turns lost {r['lost_after_kill_9']}, "
          f"duplicated {r['duplicated_after_kill_9']}")
