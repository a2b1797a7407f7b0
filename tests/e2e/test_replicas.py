"""Scale-out with real processes on loopback: a ``chroma run`` server, replica A
(``memproxy serve``, one process) and replica B (``memproxy serve --workers 2``),
both on the server (docs/deployment.md). Whichever of the three processes takes
the scheduler lease first holds it.

The module's tests share the cluster and run in file order: the kill -9 test
replaces A by a restart on the same data dir; the drain test stops A and B last.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import chromadb
import httpx
import pytest
from openai import OpenAI

from memory.chroma_store import CONTROL_COLLECTION
from memory.lease import LEASE_ID, LeaseRecord
from testing.processes import ChromaServer, ServeProcess, memproxy_exe, stored_contents

INTERVAL_S = 2.0  # the scheduler's interval on every process here (lease ttl: 3 intervals)
TTL_S = 3 * INTERVAL_S
WAIT_S = 120.0  # generous: this machine is shared and slow; nothing here measures speed
STALENESS_S = 1.0  # memory.coherence.max_staleness_ms (default): the stated bound


@dataclass
class Cluster:
    chroma: ChromaServer
    upstream_url: str
    a_dir: Path
    a: ServeProcess
    b: ServeProcess

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "MEMPROXY_MEMORY__CHROMA_URL": self.chroma.url,
            "MEMPROXY_MEMORY__SCHEDULER__INTERVAL_S": str(INTERVAL_S),
            **extra,
        }

    def start_a(self) -> ServeProcess:
        # a slow writer: A's acknowledged turns wait in its journal (the kill -9 test needs some there)
        env = self.env(MEMPROXY_MEMORY__WRITE_LINGER_MS="3000")
        return ServeProcess("--upstream-base-url", self.upstream_url, data_dir=self.a_dir, env=env)

    def pids(self) -> set[int]:
        """The processes that run the scheduler: A, and B's workers (children of its supervisor)."""
        children = Path(f"/proc/{self.b.pid}/task/{self.b.pid}/children").read_text().split()
        return {self.a.pid, *(int(c) for c in children)}

    def lease(self) -> LeaseRecord | None:
        client = chromadb.HttpClient(host="127.0.0.1", port=self.chroma.port)
        try:
            found = client.get_collection(CONTROL_COLLECTION).get(ids=[LEASE_ID], include=["documents"])
        except Exception:  # no lease written yet (the collection does not exist)
            return None
        docs = found.get("documents") or []
        return LeaseRecord.parse(docs[0]) if docs and docs[0] else None


def holder_pid(record: LeaseRecord | None) -> int | None:
    return int(record.holder.split(":")[1]) if record else None


def wait_until(check: Any, what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.2)


def journal_depth(url: str) -> int:
    return int(httpx.get(f"{url}/readyz", timeout=10).json()["writes"]["journal_depth"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Any) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    chroma = ChromaServer(root / "chroma")
    upstream_url = f"{fake_upstream[1].url}/v1"
    cluster = Cluster(chroma, upstream_url, root / "a", None, None)  # type: ignore[arg-type]
    try:
        # one after the other: started together on a loaded machine they can miss the start timeout
        cluster.a = cluster.start_a()
        cluster.b = ServeProcess(
            "--upstream-base-url", upstream_url, "--workers", "2", data_dir=root / "b", env=cluster.env()
        )
        wait_until(lambda: holder_pid(cluster.lease()) in cluster.pids(), "a process holds the scheduler lease")
        yield cluster
    finally:
        for server in (cluster.a, cluster.b):
            if server is not None:
                server.kill()
        chroma.stop()


def chat(url: str, user: str, text: str, *, stream: bool = False, model: str = "fake-model") -> str:
    client = OpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0, timeout=60)
    messages = [{"role": "user", "content": text}]
    headers = {"X-Memory-User": user}
    if not stream:
        return client.chat.completions.create(model=model, messages=messages, extra_headers=headers).choices[0].message.content or ""
    pieces = client.chat.completions.create(model=model, messages=messages, stream=True, extra_headers=headers)
    return "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)


# ------------------------------------------------------------------------------------------


def test_workers_with_the_embedded_store_is_a_clear_startup_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])  # this checkout's code, as ServeProcess runs it
    result = subprocess.run(
        [memproxy_exe(), "serve", "--workers", "2", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 2, result
    assert "--workers 2 needs a Chroma server" in result.stderr and "memory.chroma_url" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_one_scheduler_pass_per_interval_across_both_replicas(cluster: Cluster) -> None:
    first = cluster.lease()
    assert first is not None and holder_pid(first) in cluster.pids()
    time.sleep(3 * INTERVAL_S)
    later = cluster.lease()
    assert later is not None and later.holder == first.holder and later.epoch == first.epoch
    elapsed = later.last_pass - first.last_pass
    # three processes tick every interval; passes are made by the holder only: never more than one per interval
    assert 1 <= later.passes - first.passes <= elapsed / INTERVAL_S + 1, (first, later)
    seen: dict[str, dict[str, Any]] = {}
    for url in [cluster.a.url] + [cluster.b.url] * 6:  # B's /readyz lands on either of its workers
        scheduler = httpx.get(f"{url}/readyz", timeout=10).json()["scheduler"]
        assert scheduler["kind"] == "store" and scheduler["lease_holder"] == first.holder
        seen[scheduler["holder"]] = scheduler
    for holder, scheduler in seen.items():  # the holder holds and passes; the others stand by, never passed
        assert scheduler["held"] == (holder == first.holder)
        assert (scheduler["passes"] > 0) == (holder == first.holder), seen


def search(url: str, user: str, query: str) -> list[str]:
    response = httpx.post(f"{url}/v1/memories/search", json={"user": user, "query": query, "limit": 10}, timeout=60)
    assert response.status_code == 200, response.text
    return [hit["content"] for hit in response.json()["data"]]


def core_count(url: str, user: str) -> int:
    """How many core memories a chat request through ``url`` gets injected (its X-Memory-Core)."""
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "What do you know about me?"}]}
    headers = {"X-Memory-User": user, "X-Memory": "read"}  # recall only: this probe writes no turn
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return int(response.headers["x-memory-core"])


def after_the_bound() -> None:
    """Past the stated staleness bound (memory.coherence.max_staleness_ms, default 1 s) since the last change."""
    time.sleep(STALENESS_S)


def test_a_write_through_a_is_recalled_through_b_within_the_bound(cluster: Cluster) -> None:
    user = f"coh-{uuid.uuid4().hex[:8]}"
    # B's workers have the owner indexed (empty) before A writes: B must notice the change, not build afresh
    for _ in range(4):
        assert search(cluster.b.url, user, "Where does the user keep bees?") == []
    posted = httpx.post(
        f"{cluster.a.url}/v1/memories", json={"user": user, "memories": [{"content": "The user keeps bees on the roof in Lyon."}]},
        timeout=60,
    )
    assert posted.status_code == 201, posted.text  # acknowledged: stored (an API write is stored before it answers)
    after_the_bound()
    for _ in range(4):  # each search lands on one of B's two workers
        assert "The user keeps bees on the roof in Lyon." in search(cluster.b.url, user, "Where does the user keep bees?")

    # a chat turn through A: acknowledged when journaled, stored by A's writer (linger 3 s here), then the bound
    chat(cluster.a.url, user, "My sister Ines lives in Porto and teaches the violin.")
    wait_until(lambda: journal_depth(cluster.a.url) == 0, "A stored its turn")
    after_the_bound()
    for _ in range(4):
        assert any("Ines" in c for c in search(cluster.b.url, user, "Where does my sister live?"))


def test_edit_promote_and_forget_through_b_are_reflected_in_a(cluster: Cluster) -> None:
    user = f"coh-{uuid.uuid4().hex[:8]}"
    posted = httpx.post(
        f"{cluster.b.url}/v1/memories",
        json={"user": user, "memories": [{"content": "The user's car is a red Fiat."}, {"content": "The user drinks green tea."}]},
        timeout=60,
    )
    assert posted.status_code == 201, posted.text
    car, tea = (m["id"] for m in posted.json()["data"])
    after_the_bound()
    assert "The user's car is a red Fiat." in search(cluster.a.url, user, "What car does the user drive?")
    assert core_count(cluster.a.url, user) == 0

    edited = httpx.patch(f"{cluster.b.url}/v1/memories/{car}", json={"content": "The user's car is a blue Volvo."}, timeout=60)
    assert edited.status_code == 200, edited.text
    promoted = httpx.patch(f"{cluster.b.url}/v1/memories/{tea}", json={"tier": "core"}, timeout=60)
    assert promoted.status_code == 200, promoted.text
    after_the_bound()
    found = search(cluster.a.url, user, "What car does the user drive?")
    assert "The user's car is a blue Volvo." in found and "The user's car is a red Fiat." not in found
    assert core_count(cluster.a.url, user) == 1  # A injects the memory B promoted

    deleted = httpx.delete(f"{cluster.b.url}/v1/memories/{car}", timeout=60)
    assert deleted.status_code == 200, deleted.text
    after_the_bound()
    assert not any("Volvo" in c for c in search(cluster.a.url, user, "What car does the user drive?"))

    forgotten = httpx.delete(f"{cluster.b.url}/v1/users/{user}/memories", timeout=60)
    assert forgotten.status_code == 200, forgotten.text
    after_the_bound()
    assert search(cluster.a.url, user, "What does the user drink?") == []
    assert core_count(cluster.a.url, user) == 0


def test_kill_9_of_a_mid_load_b_keeps_serving_and_nothing_acknowledged_is_lost(cluster: Cluster) -> None:
    run = uuid.uuid4().hex[:8]
    acknowledged: dict[str, list[str]] = collections.defaultdict(list)  # user -> facts
    acked_by_a = 0
    b_after_kill: list[bool] = []
    killed = asyncio.Event()
    lease_before = cluster.lease()

    async def client_loop(url: str, c: int, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        nonlocal acked_by_a
        user = f"kill-{run}-{'a' if url == cluster.a.url else 'b'}-{c}"
        n = 0
        while not stop.is_set():
            fact = f"fact {run} client {c} turn {n}"
            body = {"model": "fake-model", "messages": [{"role": "user", "content": f"Remember {fact}."}], "stream": bool(n % 2)}
            try:
                response = await http.post(f"{url}/v1/chat/completions", json=body, headers={"X-Memory-User": user})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                acknowledged[user].append(fact)
                acked_by_a += url == cluster.a.url
            if url == cluster.b.url and killed.is_set():
                b_after_kill.append(ok)
            n += 1

    async def drive() -> int:
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        async with httpx.AsyncClient(timeout=60) as http:
            tasks = [asyncio.create_task(client_loop(cluster.a.url, c, http, stop_a)) for c in range(6)]
            tasks += [asyncio.create_task(client_loop(cluster.b.url, c, http, stop_b)) for c in range(4)]
            while acked_by_a < 30:
                await asyncio.sleep(0.05)
            depth = journal_depth(cluster.a.url)
            cluster.a.kill()  # SIGKILL, mid-load: requests in flight on A fail, unacknowledged
            killed.set()
            stop_a.set()
            while len(b_after_kill) < 20:  # B goes on serving
                await asyncio.sleep(0.05)
            stop_b.set()
            await asyncio.gather(*tasks)
            return depth

    depth_at_kill = asyncio.run(drive())
    assert depth_at_kill > 0, "every turn of A was already stored: the kill proved nothing"
    assert b_after_kill and all(b_after_kill), f"B failed {b_after_kill.count(False)} request(s) after A died"

    # the scheduler lease moves to a live process once its holder dies (A; or else kill -9 the B worker holding it)
    assert lease_before is not None
    if holder_pid(lease_before) != cluster.a.pid:
        os.kill(holder_pid(lease_before) or 0, signal.SIGKILL)  # B's supervisor starts a new worker
    taken = wait_until(
        lambda: (r := cluster.lease()) is not None and r.holder != lease_before.holder and r.passes > lease_before.passes and r,
        "a surviving process takes the scheduler lease",
    )
    assert taken.epoch == lease_before.epoch + 1

    cluster.a = cluster.start_a()  # same data dir: A's journal is replayed
    wait_until(lambda: journal_depth(cluster.a.url) == 0, "A's journal is replayed")
    for user, facts in acknowledged.items():
        counts = collections.Counter(stored_contents(cluster.b.url, user))
        for fact in facts:
            hits = [c for c in counts if f"Remember {fact}." in c]
            assert len(hits) == 1 and counts[hits[0]] == 1, (user, fact, counts)


def test_sigterm_drains_an_in_flight_stream_then_exits_0(cluster: Cluster) -> None:
    user = f"drain-{uuid.uuid4().hex[:8]}"
    text = "Remember that the drain test streams twelve words one by one, slowly, to the end."
    client = OpenAI(base_url=f"{cluster.a.url}/v1", api_key="sk-test", max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model="slow-250", messages=[{"role": "user", "content": text}], stream=True, extra_headers={"X-Memory-User": user}
    )
    pieces: list[str] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if not pieces:
                cluster.a.process.send_signal(signal.SIGTERM)  # mid-stream
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == f"Echo: {text}"  # the stream ran to its end
    assert cluster.a.process.wait(timeout=60) == 0
    # the turn was flushed into the store at shutdown: B reads it at once
    assert [c for c in stored_contents(cluster.b.url, user) if text in c]
    cluster.b.process.send_signal(signal.SIGTERM)  # --workers: the supervisor drains its workers
    assert cluster.b.process.wait(timeout=60) == 0
