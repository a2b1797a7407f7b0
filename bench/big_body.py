"""``memproxy bench big-body``: what one huge chat turn costs the server.

Stands up the fake OpenAI upstream and the proxy (one process, real loopback
ports), sends one chat turn of ``--mb`` megabytes with memory on, and polls
``GET /health`` every 10 ms meanwhile: the report gives the request's time,
the slowest ``/health`` answer (how long the event loop stalled) and the
process RSS before and after. Also times secret redaction on a realistic turn.

Run from a source checkout (the fake lives in ``testing``):
``PYTHONPATH=. memproxy bench big-body --mb 5``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mb", type=float, default=5.0, help="size of the chat turn in megabytes")


def _rss_mb() -> int:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) // 1024


def run(args: argparse.Namespace) -> int:
    import httpx

    from proxy.app import create_app
    from proxy.config import load_settings
    from proxy.environment import prepare_environment
    from testing.fake_openai import FakeOpenAI
    from testing.serving import ServerThread

    prepare_environment()
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as upstream:
        settings = load_settings(
            data_dir=tempfile.mkdtemp(prefix="memproxy-bench-"),
            upstream={"base_url": f"{upstream.url}/v1", "provider": "openai"},
            memory={"recall_deadline_ms": 60_000},
            limits={"max_body_bytes": int(args.mb * 1.2 * 1024 * 1024) + 4096},
        )
        with ServerThread(create_app(settings)) as proxy:
            url = proxy.url
            headers = {"X-Memory-User": "bench", "Content-Type": "application/json"}
            warm = {"model": "fake-model", "messages": [{"role": "user", "content": "warm up"}]}
            httpx.post(f"{url}/v1/chat/completions", json=warm, headers=headers, timeout=120)
            text = "The quick brown fox jumps over the lazy dog. " * int(args.mb * 1024 * 1024 / 45)
            body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": text}]}).encode()
            before = _rss_mb()
            done = threading.Event()
            worst = [0.0]

            def poll() -> None:
                with httpx.Client() as client:
                    while not done.is_set():
                        started = time.perf_counter()
                        client.get(f"{url}/health", timeout=120)
                        worst[0] = max(worst[0], time.perf_counter() - started)
                        time.sleep(0.01)

            poller = threading.Thread(target=poll)
            poller.start()
            started = time.perf_counter()
            response = httpx.post(f"{url}/v1/chat/completions", content=body, headers=headers, timeout=300)
            took = time.perf_counter() - started
            time.sleep(2.0)  # the background write of the turn
            done.set()
            poller.join()
            print(
                f"body {len(body) / 1e6:.1f} MB: status {response.status_code}, request {took:.2f} s, "
                f"slowest /health {worst[0] * 1000:.0f} ms, RSS {before} -> {_rss_mb()} MB "
                f"(peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB)"
            )
    _redaction()
    return 0


def _redaction() -> None:
    from memory.redact import Redactor

    turn = (
        "User: here is my key sk-proj-Xy7Gq2LmN4pR8sT1vW3zA5bC6dE9fH0jK2lM4nP6qR8s and card 4242 4242 4242 4242, "
        "book the Lisbon trip for June.\nAssistant: Done: your Lisbon trip is booked for June."
    )
    for name, redactor, text in (
        ("credentials, one turn", Redactor(), turn),
        ("credentials + all PII, 32 KB", Redactor(pii=["email", "phone", "iban", "address"]), "lorem ipsum 12345 " * 1800),
    ):
        rounds = 200
        started = time.perf_counter()
        for _ in range(rounds):
            redactor.redact(text)
        print(f"redaction ({name}): {(time.perf_counter() - started) / rounds * 1000:.2f} ms")
