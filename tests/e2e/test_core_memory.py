"""The core tier over HTTP: listed with its version, injected first and byte-stable."""

from __future__ import annotations

import httpx


def chat(url: str, user: str, text: str, system: str = "Be brief.") -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers={"X-Memory-User": user, "X-Memory": "read"}, timeout=120)


def test_core_memories_are_listed_injected_first_and_stable(proxy, upstream):
    created = httpx.post(
        f"{proxy.url}/v1/memories",
        json={
            "user": "cora",
            "memories": [
                {"content": "Cora is allergic to peanuts.", "tier": "core"},
                {"content": "Cora is vegetarian.", "tier": "core"},
                {"content": "Cora's bike is a red Peugeot from 1984."},
            ],
        },
        timeout=120,
    ).json()["data"]
    listed = httpx.get(f"{proxy.url}/v1/memories", params={"user": "cora", "tier": "core"}).json()
    assert [m["id"] for m in listed["data"]] == [created[0]["id"], created[1]["id"]]
    core = listed["core"]
    assert core["injected_ids"] == [created[0]["id"], created[1]["id"]] and core["token_budget"] == 1024

    first = chat(proxy.url, "cora", "What colour is my Peugeot bike?")
    second = chat(proxy.url, "cora", "Is my Peugeot bike from 1984?")
    assert first.status_code == 200 and second.status_code == 200
    assert first.headers["x-memory-core"] == "2" and first.headers["x-memory-kv"] == "off"
    assert first.headers["x-memory-recalled"] == "1", "the core items are not recalled again"
    systems = [r.body["messages"][0]["content"] for r in upstream.chat_requests()[-2:]]
    for system in systems:
        assert system.startswith("Be brief.\n\n<memproxy:memories>")
        assert system.index("allergic to peanuts") < system.index("vegetarian") < system.index("Peugeot")
        assert system.count("allergic to peanuts") == 1
    stable = systems[0][: systems[0].index("</memproxy:memories>")]
    assert systems[1].startswith(stable), "the [system + core] prefix is byte-identical across requests"

    httpx.patch(f"{proxy.url}/v1/memories/{created[1]['id']}", json={"content": "Cora is vegan."}, timeout=60)
    after = httpx.get(f"{proxy.url}/v1/memories", params={"user": "cora", "tier": "core"}).json()["core"]
    assert after["version"] != core["version"]
    chat(proxy.url, "cora", "hello")
    assert "Cora is vegan." in upstream.chat_requests()[-1].body["messages"][0]["content"]
