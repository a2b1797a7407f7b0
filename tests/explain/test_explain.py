"""Explain: the explained ranking is what chat injects for the same query and time, with each
candidate's score parts and why it was cut; ``X-Memory-Explain: 1`` on chat carries the same."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from proxy.auth.keys import KeyStore

USER = "explain-owner"
MEMORIES = [
    {"content": "I am allergic to peanuts and tree nuts.", "kind": "fact"},
    {"content": "I am allergic to peanuts and tree nuts!", "kind": "fact"},  # a near-duplicate
    {"content": "Snickers bars contain peanuts, so I never eat them.", "kind": "fact"},
    {"content": "My sister Ana lives in Porto and works as a nurse.", "kind": "fact"},
    {"content": "I always drink my coffee black.", "kind": "preference", "tier": "core"},
    {"content": "We adopted a grey cat called Miso last spring.", "kind": "fact"},
]
QUERY = "Can I eat a Snickers bar, given my peanut allergy?"
PARTS = ("dense", "lexical", "time", "neighbour", "session", "speaker", "standing")


def seed(url: str, headers: dict[str, str] | None = None, user: str | None = USER) -> list[str]:
    body = {"memories": MEMORIES, **({"user": user} if user else {})}
    added = httpx.post(f"{url}/v1/memories", json=body, headers=headers, timeout=30)
    assert added.status_code == 201, added.text
    return [m["id"] for m in added.json()["data"]]


def test_the_explained_ranking_is_what_chat_injects(proxy, upstream) -> None:
    url = proxy.url
    ids = seed(url)
    chat = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": QUERY}]},
        headers={"X-Memory-User": USER, "X-Memory-Explain": "1", "X-Memory": "read"},
        timeout=30,
    )
    assert chat.status_code == 200
    assert set(chat.json()) <= {"id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier"}
    explain_id = chat.headers["X-Memory-Explain-Id"]
    header_pairs = [pair.split("=") for pair in chat.headers["X-Memory-Explain"].split(",")]
    kept = httpx.get(f"{url}/v1/memories/explain/{explain_id}", headers={"X-Memory-User": USER}, timeout=30).json()
    # what chat sent upstream is the explanation's block, byte for byte
    sent = json.dumps(upstream.chat_requests()[-1].body["messages"], ensure_ascii=False)
    assert kept["recalled_block"] and json.dumps(kept["recalled_block"], ensure_ascii=False)[1:-1] in sent
    assert [i for i, _ in header_pairs] == kept["injected"]
    assert int(chat.headers["X-Memory-Recalled"]) == len(kept["injected"])
    assert {i: round(float(s), 6) for i, s in header_pairs} == kept["scores"]

    # the same query at the same time through the API: the same ranking, scores and block
    again = httpx.post(f"{url}/v1/memories/explain", json={"user": USER, "query": QUERY, "now": kept["now"]}, timeout=30)
    assert again.status_code == 200, again.text
    fresh = again.json()
    for field in ("injected", "scores", "recalled_block", "core", "gate", "tokens"):
        assert fresh[field] == kept[field], field
    assert [c["id"] for c in fresh["candidates"]] == [c["id"] for c in kept["candidates"]]

    # and a chat that asked for no explanation injects exactly the explained block
    plain = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": QUERY}]},
        headers={"X-Memory-User": USER, "X-Memory": "read"},
        timeout=30,
    )
    assert plain.status_code == 200 and "X-Memory-Explain-Id" not in plain.headers
    sent = json.dumps(upstream.chat_requests()[-1].body["messages"], ensure_ascii=False)
    assert json.dumps(fresh["recalled_block"], ensure_ascii=False)[1:-1] in sent

    by_id = {c["id"]: c for c in fresh["candidates"]}
    allergy, twin, snickers, sister, coffee, cat = ids
    assert snickers in fresh["injected"]
    assert fresh["gate"]["passed"] is True
    # near-duplicates: one injected, the other cut naming it
    pair = {allergy, twin}
    injected_twin = pair & set(fresh["injected"])
    assert len(injected_twin) == 1
    (cut_twin,) = pair - injected_twin
    assert by_id[cut_twin]["cut"] == "near_duplicate" and by_id[cut_twin]["twin"] in pair
    # the core memory is injected through the core block, not recalled
    assert fresh["core"]["ids"] == [coffee] and "black" in fresh["core"]["block"]
    assert coffee not in fresh["injected"]
    # an unrelated memory is under the floor
    assert by_id[cat]["cut"] == "floor" and not by_id[cat]["injected"]
    for candidate in fresh["candidates"]:
        assert set(candidate["parts"]) == set(PARTS)
        if candidate["injected"]:
            assert candidate["cut"] is None
            if not candidate["parts"]["standing"]:  # context parts add up to the ranking score
                total = sum(candidate["parts"][p] for p in PARTS)
                assert abs(total - candidate["score"]) < 1e-4, candidate
            assert candidate["score"] == fresh["scores"][candidate["id"]]


def test_budget_gate_and_search_agree(proxy) -> None:
    url = proxy.url
    seed(url)
    small = httpx.post(f"{url}/v1/memories/explain", json={"user": USER, "query": QUERY, "token_budget": 20}, timeout=30).json()
    assert small["tokens"] <= 20
    assert any(c["cut"] == "budget" for c in small["candidates"])
    search = httpx.post(f"{url}/v1/memories/search", json={"user": USER, "query": QUERY, "token_budget": 20}, timeout=30).json()
    assert [h["id"] for h in search["data"]] == small["injected"]
    hello = httpx.post(f"{url}/v1/memories/explain", json={"user": USER, "query": "hello there"}, timeout=30).json()
    assert hello["gate"]["passed"] is False and hello["injected"] == []
    assert hello["candidates"] and all(c["cut"] == "gate" for c in hello["candidates"])


def test_explanations_follow_the_owner_rules(make_proxy, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.sqlite3"
    store = KeyStore(keys_file)
    server = make_proxy(auth={"mode": "keys", "keys_file": str(keys_file)})
    _, alice = store.create(name="alice", kind="user", user="alice")
    _, bob = store.create(name="bob", kind="user", user="bob")
    _, reader = store.create(name="alice ro", kind="user", user="alice", scopes=("memories:read",))
    store.close()
    url = server.url
    seed(url, {"Authorization": f"Bearer {alice}"}, user=None)
    chat = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": QUERY}]},
        headers={"Authorization": f"Bearer {alice}", "X-Memory-Explain": "1", "X-Memory": "read"},
        timeout=30,
    )
    explain_id = chat.headers["X-Memory-Explain-Id"]
    mine = httpx.get(f"{url}/v1/memories/explain/{explain_id}", headers={"Authorization": f"Bearer {alice}"})
    assert mine.status_code == 200 and mine.json()["user"] == "alice"
    theirs = httpx.get(f"{url}/v1/memories/explain/{explain_id}", headers={"Authorization": f"Bearer {bob}"})
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "explanation_not_found"
    # a read-only key may explain (it changes nothing); naming another owner is refused
    ok = httpx.post(f"{url}/v1/memories/explain", json={"query": QUERY}, headers={"Authorization": f"Bearer {reader}"})
    assert ok.status_code == 200 and ok.json()["injected"]
    other = httpx.post(f"{url}/v1/memories/explain", json={"user": "bob", "query": QUERY},
                       headers={"Authorization": f"Bearer {alice}"})
    assert other.status_code == 403 and other.json()["error"]["code"] == "owner_mismatch"
    assert httpx.post(f"{url}/v1/memories/explain", json={"query": QUERY}).status_code == 401
