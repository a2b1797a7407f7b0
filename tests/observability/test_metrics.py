"""``/metrics``: parsed with Prometheus' own text parser; counters move across a scripted scenario."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from proxy.auth.keys import KeyStore
from tests.conftest import wait_for_memories

OWNER = "metrics-owner-zq"


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert OWNER not in response.text  # no owner ever appears in a label
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def chat(url: str, text: str, *, stream: bool = False, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}], "stream": stream}
    return httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"X-Memory-User": OWNER, **(headers or {})}, timeout=30
    )


def test_counters_move_across_a_scenario(make_proxy) -> None:
    url = make_proxy(observability={"store_size_interval_s": 0}).url
    before = scrape(url)
    added = httpx.post(
        f"{url}/v1/memories",
        json={"user": OWNER, "memories": [{"content": "My cat is called Miso and she loves tuna."}]},
        timeout=30,
    )
    assert added.status_code == 201
    assert chat(url, "What is my cat called?").status_code == 200
    streamed = chat(url, "What does my cat love?", stream=True)
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    assert httpx.get(f"{url}/v1/memories/mem_0123456789abcdef_nothing", params={"user": OWNER}).status_code == 404
    wait_for_memories(url, OWNER, 3)  # the two turns are written
    after = scrape(url)

    route = "/v1/chat/completions"
    assert value(after, "memproxy_requests_total", route=route, method="POST", status="200") - value(
        before, "memproxy_requests_total", route=route, method="POST", status="200"
    ) == 2
    # the template, never the raw id
    assert value(after, "memproxy_requests_total", route="/v1/memories/{memory_id}", method="GET", status="404") >= 1
    assert value(after, "memproxy_requests_total", route="/v1/memories", method="POST", status="201") >= 1
    assert value(after, "memproxy_recall_seconds_count") - value(before, "memproxy_recall_seconds_count") == 2
    assert value(after, "memproxy_recalled_memories_total") - value(before, "memproxy_recalled_memories_total") >= 2
    assert value(after, "memproxy_injected_tokens_total") > value(before, "memproxy_injected_tokens_total")
    assert value(after, "memproxy_upstream_seconds_count", front="chat", stream="false") - value(
        before, "memproxy_upstream_seconds_count", front="chat", stream="false"
    ) == 1
    assert value(after, "memproxy_upstream_seconds_count", front="chat", stream="true") - value(
        before, "memproxy_upstream_seconds_count", front="chat", stream="true"
    ) == 1
    assert value(after, "memproxy_kv_requests_total", result="off") - value(
        before, "memproxy_kv_requests_total", result="off"
    ) == 2  # a remote upstream reuses no local KV state
    assert value(after, "memproxy_writes_total") - value(before, "memproxy_writes_total") == 2
    assert value(after, "memproxy_turn_writes_total", status="ok") - value(before, "memproxy_turn_writes_total", status="ok") == 2
    assert value(after, "memproxy_turn_writes_total", status="degraded") == 0
    assert value(after, "memproxy_journal_depth") == 0
    assert value(after, "memproxy_store_memories") >= 3
    assert value(after, "memproxy_store_owners") >= 1
    assert (("memproxy_scheduler_actions_total", (("action", "promote"),))) in after
    assert value(after, "memproxy_memory_degraded_total", cause="timeout") == 0


def test_degraded_recalls_are_counted_by_cause(make_proxy) -> None:
    server = make_proxy(memory={"recall_deadline_ms": 0})
    response = chat(server.url, "Anything about me?")
    assert response.status_code == 200
    assert response.headers["X-Memory-Status"] == "degraded"
    assert value(scrape(server.url), "memproxy_memory_degraded_total", cause="timeout") == 1


def test_metrics_need_an_admin_key_under_keys(make_proxy, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.sqlite3"
    store = KeyStore(keys_file)
    try:
        server = make_proxy(auth={"mode": "keys", "keys_file": str(keys_file)})
        _, admin = store.create(name="ops", kind="admin")
        _, user = store.create(name="alice", kind="user", user="alice")
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        refused = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {user}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
        samples = scrape(server.url, {"Authorization": f"Bearer {admin}"})
        assert value(samples, "memproxy_requests_total", route="/metrics", method="GET", status="401") == 1
        assert value(samples, "memproxy_requests_total", route="/metrics", method="GET", status="403") == 1
    finally:
        store.close()


def test_metrics_can_be_turned_off(make_proxy) -> None:
    server = make_proxy(observability={"metrics": False})
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
