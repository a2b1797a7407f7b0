"""``memproxy bench load``: sustained concurrent chat against the real server, then ``kill -9``.

``--clients`` concurrent clients (default 50), each its own memory user,
send chat completions (half of them streamed) back to back for
``--seconds`` (default 60) through a real ``memproxy serve`` process in
front of the fake OpenAI upstream (``testing.fake_openai``, source tree only).
Reported: requests/s, p50/p99 latency (to the last byte), the share of
replies saying ``X-Memory-Status: ok`` and ``degraded`` (with the server's
own count of why: recall timeouts and errors, late writes, from
``/metrics``), the journal depth and the turns the writer stored over time
(``/readyz``: the backlog is bounded when the writer stores turns as fast as
they arrive), the CPU each party used (the server, the load generator's
clients, the fake upstream, everything else on the machine: they share its
cores, see :mod:`bench.cpu`), the server's RSS before and after, and then the durability
check: the server is killed with SIGKILL right after the last acknowledged
reply, restarted on the same data dir, and every acknowledged turn is looked
up in the store once the journal is replayed: turns lost (must be 0) and
duplicated (must be 0).

``--replicas N`` runs the same over a ``chroma run`` server with N replicas
(``memproxy serve`` processes with ``memory.chroma_url``, docs/deployment.md),
the clients split evenly across them (client ``c`` talks to replica
``c % N``: what a round-robin balancer does per connection), and every client
also searches its own memories every fourth turn through the *next* replica
(``POST /v1/memories/search``: recall p50/p95 as a client sees it, of
memories another process stored). The kill -9 hits replica 0 while the
others keep their clients; it is restarted on its data dir and the store is
checked as above.
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

from bench.cpu import sample as cpu_sample
from bench.cpu import shares as cpu_shares
from bench.stats import median, percentile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to drive load (default 60)")
    parser.add_argument("--data-dir", help="the server's data dir (default: a fresh temporary one)")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")
    parser.add_argument("--no-kill", dest="kill", action="store_false",
                        help="skip the kill -9, replay and lost/duplicated check (quick iterations on the load figures)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a server setting as its environment variable, e.g. MEMPROXY_MEMORY__WRITE_QUEUE_SIZE=512 "
                             "(repeatable; default: the default config)")
    parser.add_argument("--replicas", type=int, default=0,
                        help="N replicas over a `chroma run` server, clients split across them "
                             "(default 0: one process on the embedded store)")


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def _one(client: httpx.AsyncClient, url: str, user: str, text: str, stream: bool) -> tuple[bool, str]:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}], "stream": stream}
    headers = {"X-Memory-User": user}
    if stream:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response:
            async for _ in response.aiter_bytes():
                pass
            return response.status_code == 200, response.headers.get("x-memory-status", "")
    response = await client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
    return response.status_code == 200, response.headers.get("x-memory-status", "")


async def _search(client: httpx.AsyncClient, url: str, user: str, text: str) -> bool:
    response = await client.post(f"{url}/v1/memories/search", json={"user": user, "query": text, "limit": 5})
    return response.status_code == 200


async def _drive(urls: list[str], clients: int, seconds: float, run: str, search: bool = False) -> dict[str, Any]:
    latencies: list[float] = []
    searches: list[float] = []
    search_errors = 0
    statuses: collections.Counter[str] = collections.Counter()
    acknowledged: list[tuple[str, str]] = []
    errors = 0
    depth: list[tuple[float, int]] = []
    written: list[tuple[float, int]] = []  # turns the writer(s) stored so far
    acked_at: list[float] = []  # when each acknowledged turn was answered (s into the run)
    writer_failing = 0  # /readyz samples with the store writer failing (a cause of degraded)
    started = time.monotonic()
    stop_at = started + seconds
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)

    async def client_loop(c: int, http: httpx.AsyncClient) -> None:
        nonlocal errors, search_errors
        user = f"load-{run}-{c}"
        url = urls[c % len(urls)]
        n = 0
        while time.monotonic() < stop_at:
            text = f"load {run} client {c} turn {n}: my note is {uuid.uuid4().hex[:8]}."
            if search and n % 4 == 3:
                t0 = time.perf_counter()
                try:
                    # through the next replica: recall of what another process stored (coherence)
                    found = await _search(http, urls[(c + 1) % len(urls)], user, f"what was my note in turn {n - 2}?")
                except httpx.HTTPError:
                    found = False
                searches.append(time.perf_counter() - t0)
                search_errors += not found
            t0 = time.perf_counter()
            try:
                ok, status = await _one(http, url, user, text, stream=bool(n % 2))
            except httpx.HTTPError:
                ok, status = False, ""
            latencies.append(time.perf_counter() - t0)
            if ok:
                acknowledged.append((user, text))
                acked_at.append(time.monotonic() - started)
                statuses[status] += 1
            else:
                errors += 1
            n += 1

    async def sample(http: httpx.AsyncClient) -> None:
        nonlocal writer_failing
        while time.monotonic() < stop_at:
            try:
                total = stored = 0
                for url in urls:
                    body = (await http.get(f"{url}/readyz")).json()
                    total += int(body["writes"]["journal_depth"])
                    stored += int(body["writes"].get("written", 0))
                    writer_failing += body["writes"]["status"] != "ok"
                at = round(time.monotonic() - started, 1)
                depth.append((at, total))
                written.append((at, stored))
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            await asyncio.sleep(1.0)

    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(sample(http), *(client_loop(c, http) for c in range(clients)))
    elapsed = time.monotonic() - started
    return {
        "elapsed_s": elapsed,
        "latencies": latencies,
        "statuses": statuses,
        "acknowledged": acknowledged,
        "acked_at": acked_at,
        "errors": errors,
        "depth": depth,
        "written": written,
        "writer_failing_samples": writer_failing,
        "searches": searches,
        "search_errors": search_errors,
    }


class _Skipped(Exception):
    """``--no-kill``: the durability check is not run."""


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
        from testing.processes import ChromaServer, ServeProcess, stored_contents
        from testing.serving import ServerThread
    except ImportError:
        print("bench load needs the source tree's testing/ package: run it from a checkout (PYTHONPATH=.)")
        return 2

    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="memproxy-load-"))
    run_id = uuid.uuid4().hex[:8]
    fake = FakeOpenAI()
    replicas = max(args.replicas, 1)
    chroma = ChromaServer(data_dir / "chroma-server") if args.replicas else None
    env = {"MEMPROXY_MEMORY__CHROMA_URL": chroma.url} if chroma else {}
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if not sep or not key.startswith("MEMPROXY_"):
            print(f"--set wants MEMPROXY_<SECTION>__<KEY>=VALUE, got {setting!r}")
            return 2
        env[key] = value
    dirs = [data_dir / f"replica-{i}" for i in range(replicas)] if chroma else [data_dir]
    servers: list[Any] = []
    try:
        with ServerThread(fake.app()) as upstream:
            upstream_url = f"{upstream.url}/v1"
            servers = [ServeProcess("--upstream-base-url", upstream_url, data_dir=d, env=env) for d in dirs]
            server = servers[0]
            try:
                rss_before = sum(rss_mb(s.pid) for s in servers)
                where = f"{replicas} replica(s) over {chroma.url}" if chroma else f"pid {server.pid} on {server.url}"
                print(f"memproxy serve: {where}; {args.clients} clients for {args.seconds:.0f} s ...")
                urls = [s.url for s in servers]
                pids = [s.pid for s in servers]
                cpu_before = cpu_sample(pids, upstream.native_id)
                result = asyncio.run(_drive(urls, args.clients, args.seconds, run_id, search=bool(chroma)))
                cpu = cpu_shares(cpu_before, cpu_sample(pids, upstream.native_id), result["elapsed_s"])
                rss_after = sum(rss_mb(s.pid) for s in servers)
                depth_at_kill = httpx.get(f"{server.url}/readyz", timeout=30).json()["writes"]["journal_depth"]
                causes = _server_counts(urls)
            finally:
                server.kill()  # SIGKILL right after the last acknowledged reply
            if not args.kill:
                raise _Skipped
            restarted = ServeProcess("--upstream-base-url", upstream_url, data_dir=dirs[0], env=env)
            servers[0] = restarted
            try:
                replay_s = _wait_replayed(restarted.url)
                for other in servers[1:]:
                    _wait_replayed(other.url)
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
                for s in servers:
                    s.stop()
    except _Skipped:
        replay_s, lost, duplicated = None, None, None
    finally:
        for s in servers:
            s.kill()
        if chroma is not None:
            chroma.stop()

    latencies = result["latencies"]
    acked = len(result["acknowledged"])
    statuses = result["statuses"]
    searches = result["searches"]
    report = {
        "replicas": args.replicas,
        "store": "chroma run" if args.replicas else "embedded",
        "clients": args.clients,
        "seconds": round(result["elapsed_s"], 1),
        "requests": len(latencies),
        "acknowledged": acked,
        "errors": result["errors"],
        "requests_per_s": round(len(latencies) / result["elapsed_s"], 1),
        "p50_ms": round(median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99) * 1000, 1) if latencies else None,
        "search_p50_ms": round(median(searches) * 1000, 1) if searches else None,
        "search_p95_ms": round(percentile(searches, 95) * 1000, 1) if searches else None,
        "searches": len(searches),
        "search_errors": result["search_errors"],
        "ok_share": round(statuses.get("ok", 0) / acked, 4) if acked else 0.0,
        "degraded_share": round(statuses.get("degraded", 0) / acked, 4) if acked else 0.0,
        "statuses": dict(statuses),
        "server_counts": causes,
        "cpu_cores": cpu,
        "writer_failing_samples": result["writer_failing_samples"],
        "journal_depth": {
            "max": max((d for _, d in result["depth"]), default=0),
            "at_kill": depth_at_kill,
            "samples": result["depth"],
        },
        "writer": _writer_rates(result["written"], result["acked_at"]),
        "rss_mb": {"before": round(rss_before, 1), "after": round(rss_after, 1)},
        "replay_s": round(replay_s, 1) if replay_s is not None else None,
        "lost_after_kill_9": lost,
        "duplicated_after_kill_9": duplicated,
    }
    _print(report)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))
    return 0 if not lost and not duplicated else 1


def _server_counts(urls: list[str]) -> dict[str, int]:
    """The servers' own counts (``/metrics``): why replies were degraded, how turns were journaled."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"memproxy_memory_degraded": "recall_", "memproxy_turn_writes": "write_"}
    counts: collections.Counter[str] = collections.Counter()
    for url in urls:
        try:
            text = httpx.get(f"{url}/metrics", timeout=30).text
        except httpx.HTTPError:
            continue
        for family in text_string_to_metric_families(text):
            prefix = wanted.get(family.name)
            if prefix is None:
                continue
            for s in family.samples:
                if s.name.endswith("_total"):
                    label = s.labels.get("cause") or s.labels.get("status") or ""
                    counts[prefix + label] += int(s.value)
    return dict(counts)


def _writer_rates(written: list[tuple[float, int]], acked_at: list[float]) -> dict[str, float]:
    """Turns/s the writer stored against turns/s that arrived: over the run, and over its second
    half (once a bounded backlog has filled, the writer keeps up when the two are equal)."""

    def rates(since: float) -> tuple[float, float]:
        samples = [(t, n) for t, n in written if t >= since]
        if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
            return 0.0, 0.0
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        arrived = sum(1 for t in acked_at if t0 <= t < t1)
        return round((n1 - n0) / (t1 - t0), 1), round(arrived / (t1 - t0), 1)

    end = written[-1][0] if written else 0.0
    stored, arrived = rates(0.0)
    stored_late, arrived_late = rates(end / 2)
    return {
        "stored_per_s": stored,
        "arrived_per_s": arrived,
        "second_half_stored_per_s": stored_late,
        "second_half_arrived_per_s": arrived_late,
    }


def _print(r: dict[str, Any]) -> None:
    depth = r["journal_depth"]
    samples = ", ".join(f"{t:.0f}s:{d}" for t, d in depth["samples"][:: max(1, len(depth["samples"]) // 12)])
    print(f"requests       {r['requests']} in {r['seconds']} s ({r['requests_per_s']} req/s), errors {r['errors']}")
    print(f"store          {r['store']}, replicas {max(r['replicas'], 1)}")
    print(f"latency        p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
    if r["searches"]:
        print(f"recall         {r['searches']} searches, p50 {r['search_p50_ms']} ms, p95 {r['search_p95_ms']} ms, "
              f"errors {r['search_errors']}")
    print(f"memory status  ok {r['ok_share'] * 100:.2f}%, degraded {r['degraded_share'] * 100:.2f}% of acknowledged "
          f"replies {r['statuses']}; server's counts {r['server_counts']}; "
          f"/readyz samples with the writer failing: {r['writer_failing_samples']}")
    print(f"journal depth  max {depth['max']}, at kill {depth['at_kill']}; over time: {samples}")
    w = r["writer"]
    print(f"writer         stored {w['stored_per_s']} turns/s while {w['arrived_per_s']} arrived; second half: "
          f"stored {w['second_half_stored_per_s']}/s, arrived {w['second_half_arrived_per_s']}/s")
    cpu = r["cpu_cores"]
    print(f"CPU (cores)    server {cpu['server']}, clients {cpu['clients']}, fake upstream {cpu['fake_upstream']}, "
          f"rest of the machine {cpu['other']}; {cpu['machine']} of {cpu['cores']:.0f} busy")
    print(f"server RSS     {r['rss_mb']['before']} MiB before, {r['rss_mb']['after']} MiB after")
    if r["replay_s"] is None:
        print("kill -9        not checked (--no-kill)")
        return
    print(f"kill -9        replayed in {r['replay_s']} s; acknowledged turns lost {r['lost_after_kill_9']}, "
          f"duplicated {r['duplicated_after_kill_9']}")
