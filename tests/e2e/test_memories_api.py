"""The memory management API over real HTTP."""

from __future__ import annotations

import httpx

from tests.openai_schema import validate


def post(url: str, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=120)


def test_add_get_search_patch_delete(proxy):
    metadata = {"source": "import", "nested": {"list": [1, 2.5, "três"], "flag": True, "none": None}, "emoji": "🥜"}
    created = post(
        proxy.url,
        "/v1/memories",
        {
            "user": "ann",
            "memories": [
                {"content": "Ann is allergic to peanuts.", "metadata": metadata, "event_time": "2023-05-08T13:56:00Z", "kind": "fact"},
                {"content": "Ann works as a nurse in Leeds."},
            ],
        },
    )
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert len(data) == 2
    first = data[0]
    assert first["id"].startswith("mem_") and first["metadata"] == metadata
    assert first["event_time"] == "2023-05-08T13:56:00Z" and first["kind"] == "fact"
    assert first["tier"] == "recall" and first["state"] == "active" and first["version"] == 1

    fetched = httpx.get(f"{proxy.url}/v1/memories/{first['id']}").json()
    assert fetched["content"] == "Ann is allergic to peanuts." and fetched["metadata"] == metadata

    found = post(proxy.url, "/v1/memories/search", {"user": "ann", "query": "Does Ann have any food allergies?"}).json()
    assert found["data"][0]["id"] == first["id"]
    hit = found["data"][0]
    assert set(hit) >= {"id", "content", "metadata", "event_time", "score", "tokens"}
    assert found["tokens"] == sum(h["tokens"] for h in found["data"])
    assert hit["metadata"] == metadata

    patched = httpx.patch(
        f"{proxy.url}/v1/memories/{first['id']}", json={"content": "Ann is allergic to peanuts and sesame.", "metadata": {"v": 2}}
    ).json()
    assert patched["version"] == 2 and patched["metadata"] == {"v": 2} and patched["updated_at"]
    found = post(proxy.url, "/v1/memories/search", {"user": "ann", "query": "sesame allergy"}).json()
    assert found["data"][0]["content"] == "Ann is allergic to peanuts and sesame."

    deleted = httpx.delete(f"{proxy.url}/v1/memories/{first['id']}")
    assert deleted.json() == {"id": first["id"], "object": "memory.deleted", "deleted": True}
    missing = httpx.get(f"{proxy.url}/v1/memories/{first['id']}")
    assert missing.status_code == 404
    validate("ErrorResponse", missing.json())


def test_search_respects_budget_and_limit(proxy):
    memories = [{"content": f"Trip note {i}: we hiked the ridge trail near lake number {i} and saw eagles."} for i in range(40)]
    post(proxy.url, "/v1/memories", {"user": "bo", "memories": memories})
    small = post(proxy.url, "/v1/memories/search", {"user": "bo", "query": "hiking trips with eagles", "token_budget": 60}).json()
    assert 0 < small["tokens"] <= 60
    limited = post(proxy.url, "/v1/memories/search", {"user": "bo", "query": "hiking trips with eagles", "limit": 3}).json()
    assert len(limited["data"]) == 3
    scores = [h["score"] for h in limited["data"]]
    assert scores == sorted(scores, reverse=True)


def test_batch_of_1000_and_paging(proxy):
    memories = [{"content": f"Reading log entry {i}: finished chapter {i} of the novel."} for i in range(1000)]
    created = post(proxy.url, "/v1/memories", {"user": "cy", "memories": memories})
    assert created.status_code == 201 and len(created.json()["data"]) == 1000
    seen: list[str] = []
    after = None
    while True:
        params = {"user": "cy", "limit": 300, **({"after": after} if after else {})}
        page = httpx.get(f"{proxy.url}/v1/memories", params=params).json()
        seen += [m["id"] for m in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert len(seen) == 1000 and len(set(seen)) == 1000
    assert seen == sorted(seen)
    assert seen == [m["id"] for m in created.json()["data"]]


def test_forget_user_removes_everything_of_that_user_only(proxy):
    post(proxy.url, "/v1/memories", {"user": "dee", "memories": [{"content": "Dee owns a red bicycle."}]})
    post(proxy.url, "/v1/memories", {"user": "eve", "memories": [{"content": "Eve owns a red bicycle."}]})
    gone = httpx.delete(f"{proxy.url}/v1/users/dee/memories").json()
    assert gone["deleted"] == 1
    assert httpx.get(f"{proxy.url}/v1/memories", params={"user": "dee"}).json()["data"] == []
    found = post(proxy.url, "/v1/memories/search", {"user": "dee", "query": "bicycle"}).json()
    assert found["data"] == [] and found["tokens"] == 0
    assert len(httpx.get(f"{proxy.url}/v1/memories", params={"user": "eve"}).json()["data"]) == 1


def test_users_are_isolated_in_search(proxy):
    post(proxy.url, "/v1/memories", {"user": "fin", "memories": [{"content": "Fin's locker code is 4711."}]})
    found = post(proxy.url, "/v1/memories/search", {"user": "gil", "query": "Fin's locker code is 4711."}).json()
    assert found["data"] == []


def test_bad_input_is_a_clear_400(proxy):
    cases = [
        ({"user": "h", "memories": []}, "memories"),
        ({"user": "h", "memories": [{"content": "   "}]}, "memories[0].content"),
        ({"user": "h", "memories": [{"content": "x", "event_time": "last tuesday"}]}, "memories[0].event_time"),
        ({"memories": [{"content": "x"}]}, "user"),
    ]
    for body, param in cases:
        response = post(proxy.url, "/v1/memories", body)
        assert response.status_code == 400, body
        validate("ErrorResponse", response.json())
        assert response.json()["error"]["param"] == param
    bad_search = post(proxy.url, "/v1/memories/search", {"user": "h", "query": "x", "token_budget": 0})
    assert bad_search.status_code == 400
    bad_patch = httpx.patch(f"{proxy.url}/v1/memories/mem_0000000000000000_x", json={"state": "melted"})
    assert bad_patch.status_code == 400


def test_unknown_ids_are_404(proxy):
    for method in ("GET", "PATCH", "DELETE"):
        kwargs = {"json": {"content": "x"}} if method == "PATCH" else {}
        response = httpx.request(method, f"{proxy.url}/v1/memories/mem_0123456789abcdef_000", **kwargs)
        assert response.status_code == 404, method
        validate("ErrorResponse", response.json())
    assert httpx.get(f"{proxy.url}/v1/memories/not-an-id").status_code == 404
