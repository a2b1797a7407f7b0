"""API keys over real HTTP: 401s, scopes, bindings, tenants, ownership, the admin API, upstream credentials."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import pytest

from tests.auth.conftest import bearer
from tests.conftest import wait_for_memories
from tests.openai_schema import validate

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}]}


def chat(url: str, headers: dict[str, str], text: str = "hello there", **body) -> httpx.Response:
    payload = {"model": "fake-model", "messages": [{"role": "user", "content": text}], **body}
    return httpx.post(f"{url}/v1/chat/completions", json=payload, headers=headers, timeout=60)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    validate("ErrorResponse", body)
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def add(url: str, headers: dict[str, str], content: str, user: str | None = None) -> dict:
    body: dict = {"memories": [{"content": content}]}
    if user is not None:
        body["user"] = user
    response = httpx.post(f"{url}/v1/memories", json=body, headers=headers, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()["data"][0]


def listed(url: str, headers: dict[str, str], user: str | None = None) -> list[dict]:
    params = {"user": user} if user is not None else {}
    response = httpx.get(f"{url}/v1/memories", params=params, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["data"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/responses"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/memories?user=alice"),
        ("GET", "/v1/memories/mem_0000000000000000_x"),
        ("DELETE", "/v1/users/alice/memories"),
        ("POST", "/api/chat"),
        ("GET", "/api/tags"),
        ("GET", "/v1/admin/keys"),
        ("GET", "/v1/no-such-route"),
    ],
)
def test_every_route_needs_a_key(keyed, method: str, path: str) -> None:
    response = httpx.request(method, f"{keyed.url}{path}", json=CHAT if method == "POST" else None, timeout=30)
    error = assert_error(response, 401, "missing_api_key")
    assert "API key" in error["message"] and response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"]
    wrong = httpx.request(method, f"{keyed.url}{path}", headers=bearer("mp-nope"), timeout=30)
    assert_error(wrong, 401, "invalid_api_key")


def test_health_and_docs_stay_open(keyed) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert httpx.get(f"{keyed.url}{path}", timeout=30).status_code == 200, path


def test_a_user_key_acts_as_exactly_its_owner(keyed, upstream) -> None:
    token = keyed.key(kind="user", user="alice")
    headers = bearer(token)
    # OpenAI's ``user`` field cannot change the owner
    assert chat(keyed.url, headers, "I keep bees.", user="mallory").status_code == 200
    stored = wait_for_memories(keyed.url, "alice", 1, headers=headers)
    assert stored[0]["user"] == "alice" and "bees" in stored[0]["content"]
    assert listed(keyed.url, headers) == listed(keyed.url, headers, "alice")
    # naming another owner explicitly is refused, not silently redirected
    assert_error(chat(keyed.url, bearer(token, **{"X-Memory-User": "bob"})), 403, "owner_mismatch")
    assert_error(httpx.get(f"{keyed.url}/v1/memories", params={"user": "bob"}, headers=headers), 403, "owner_mismatch")
    assert_error(httpx.delete(f"{keyed.url}/v1/users/bob/memories", headers=headers), 403, "owner_mismatch")
    assert chat(keyed.url, bearer(token, **{"X-Memory-User": "alice"})).status_code == 200


def test_cross_owner_ids_are_404(keyed) -> None:
    alice, bob = bearer(keyed.key(kind="user", user="alice")), bearer(keyed.key(kind="user", user="bob"))
    acme = bearer(keyed.key(kind="service", tenant="acme"), **{"X-Memory-User": "carol"})
    mine = add(keyed.url, alice, "Alice's locker code is 4412.")
    carols = add(keyed.url, acme, "Carol's locker code is 9001.")
    for other, memory in ((bob, mine), (acme, mine), (alice, carols), (bob, carols)):
        for method, body in (("GET", None), ("PATCH", {"content": "pwned"}), ("DELETE", None)):
            response = httpx.request(method, f"{keyed.url}/v1/memories/{memory['id']}", json=body, headers=other)
            error = assert_error(response, 404, "memory_not_found")
            # indistinguishable from an id that does not exist
            assert error["message"] == f"No memory found with id '{memory['id']}'."
    assert httpx.get(f"{keyed.url}/v1/memories/{mine['id']}", headers=alice).json()["content"] == mine["content"]
    got = httpx.get(f"{keyed.url}/v1/memories/{carols['id']}", headers=acme).json()
    assert got["content"] == carols["content"] and got["user"] == "carol"


def test_tenants_are_separate_namespaces(keyed, upstream) -> None:
    acme, beta = keyed.key(kind="service", tenant="acme"), keyed.key(kind="service", tenant="beta")
    as_alice = {"X-Memory-User": "alice", "X-Memory": "on"}
    assert chat(keyed.url, bearer(acme, **as_alice), "Remember: acme-alice likes tea.").status_code == 200
    assert chat(keyed.url, bearer(beta, **as_alice), "Remember: beta-alice likes coffee.").status_code == 200
    acme_view = wait_for_memories(keyed.url, "alice", 1, headers=bearer(acme))
    beta_view = wait_for_memories(keyed.url, "alice", 1, headers=bearer(beta))
    assert all("tea" in m["content"] and m["user"] == "alice" for m in acme_view)
    assert all("coffee" in m["content"] for m in beta_view)
    # recall stays in the tenant: beta's alice never sees acme's tea
    upstream.clear()
    assert chat(keyed.url, bearer(beta, **as_alice), "What does alice like to drink? tea?").status_code == 200
    prompt = str(upstream.chat_requests()[-1].body)
    assert "coffee" in prompt and "acme-alice" not in prompt
    # the body's ``user`` names the end user when the header is absent
    assert chat(keyed.url, bearer(acme), "Remember: dan rides.", user="dan").status_code == 200
    assert wait_for_memories(keyed.url, "dan", 1, headers=bearer(acme))
    # forgetting acme's alice leaves beta's alice alone
    betas = wait_for_memories(keyed.url, "alice", 2, headers=bearer(beta))  # the question above is stored too
    gone = httpx.delete(f"{keyed.url}/v1/users/alice/memories", headers=bearer(acme)).json()
    assert gone["deleted"] >= 1 and gone["user"] == "alice"
    assert listed(keyed.url, bearer(acme), "alice") == []
    assert listed(keyed.url, bearer(beta), "alice") == betas


def test_no_owner_named_is_401_not_default(keyed) -> None:
    service = bearer(keyed.key(kind="service", tenant="acme"))
    error = assert_error(chat(keyed.url, service), 401, "missing_user")
    assert "X-Memory-User" in error["message"]
    assert_error(chat(keyed.url, {**service, "X-Memory-User": ""}), 401, "missing_user")
    assert_error(httpx.get(f"{keyed.url}/v1/memories", headers=service), 401, "missing_user")
    admin = bearer(keyed.key(kind="admin"))
    assert_error(chat(keyed.url, admin), 401, "missing_user")


def test_scopes_are_enforced(keyed) -> None:
    reader = bearer(keyed.key(kind="user", user="rita", scopes=["memories:read"]))
    assert listed(keyed.url, reader) == []
    assert_error(chat(keyed.url, reader), 403, "insufficient_scope")
    assert_error(httpx.post(f"{keyed.url}/v1/memories", json={"memories": [{"content": "x"}]}, headers=reader), 403)
    assert_error(httpx.delete(f"{keyed.url}/v1/users/rita/memories", headers=reader), 403, "insufficient_scope")
    assert httpx.post(f"{keyed.url}/v1/memories/search", json={"query": "x"}, headers=reader).status_code == 200
    chatter = bearer(keyed.key(kind="user", user="rita", scopes=["chat"]))
    assert chat(keyed.url, chatter).status_code == 200
    assert_error(httpx.get(f"{keyed.url}/v1/memories", headers=chatter), 403, "insufficient_scope")
    assert_error(httpx.get(f"{keyed.url}/v1/admin/keys", headers=chatter), 403, "insufficient_scope")


def test_ollama_model_management_needs_admin(keyed) -> None:
    user = bearer(keyed.key(kind="user", user="mo"))
    for method, path in (("DELETE", "/api/delete"), ("POST", "/api/pull"), ("POST", "/api/copy")):
        response = httpx.request(method, f"{keyed.url}{path}", json={"model": "llama3.2"}, headers=user)
        assert_error(response, 403, "insufficient_scope")


def test_admin_api_creates_lists_and_revokes(keyed) -> None:
    admin = bearer(keyed.key(kind="admin"))
    created = httpx.post(
        f"{keyed.url}/v1/admin/keys",
        json={"name": "zoe's laptop", "kind": "user", "user": "zoé", "upstream_api_key": "sk-zoe-upstream"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    record = created.json()
    token = record["key"]
    assert token.startswith("mp-") and record["user"] == "zoé" and "sk-zoe-upstream" not in created.text
    assert chat(keyed.url, bearer(token)).status_code == 200
    everything = httpx.get(f"{keyed.url}/v1/admin/keys", headers=admin)
    assert token not in everything.text and "sk-zoe-upstream" not in everything.text
    assert record["id"] in {k["id"] for k in everything.json()["data"]}
    assert httpx.get(f"{keyed.url}/v1/admin/keys/{record['id']}", headers=admin).json()["name"] == "zoe's laptop"
    revoked = httpx.delete(f"{keyed.url}/v1/admin/keys/{record['id']}", headers=admin).json()
    assert revoked["revoked"] is True and revoked["revoked_at"]
    assert_error(chat(keyed.url, bearer(token)), 401, "invalid_api_key")  # at once
    assert_error(httpx.delete(f"{keyed.url}/v1/admin/keys/key_nope", headers=admin), 404, "key_not_found")
    bad = httpx.post(f"{keyed.url}/v1/admin/keys", json={"name": "x", "kind": "service"}, headers=admin)
    assert_error(bad, 400)
    # admin keys manage across tenants, by stored owner name
    acme = bearer(keyed.key(kind="service", tenant="acme"), **{"X-Memory-User": "al"})
    memory = add(keyed.url, acme, "Al's bike is red.")
    assert httpx.get(f"{keyed.url}/v1/memories/{memory['id']}", headers=admin).json()["user"] == "acme/al"
    assert [m["id"] for m in listed(keyed.url, admin, "acme/al")] == [memory["id"]]


def test_admin_api_is_off_without_keys(proxy) -> None:
    assert_error(httpx.get(f"{proxy.url}/v1/admin/keys"), 403, "auth_disabled")
    assert_error(httpx.post(f"{proxy.url}/v1/admin/keys", json={"name": "x", "kind": "admin"}), 403, "auth_disabled")


def test_memproxy_keys_never_go_upstream(make_proxy, keys_file, upstream) -> None:
    from proxy.auth.keys import KeyStore

    store = KeyStore(keys_file)
    _, plain = store.create(name="plain", kind="user", user="p")
    _, own = store.create(name="own", kind="user", user="o", upstream_api_key="sk-per-key")
    server = make_proxy(auth={"mode": "keys", "keys_file": str(keys_file)}, upstream={"api_key": "sk-global"})
    assert chat(server.url, bearer(plain)).status_code == 200
    assert upstream.chat_requests()[-1].headers["authorization"] == "Bearer sk-global"
    assert chat(server.url, bearer(own)).status_code == 200
    assert upstream.chat_requests()[-1].headers["authorization"] == "Bearer sk-per-key"
    emb = httpx.post(f"{server.url}/v1/embeddings", json={"model": "fake-model", "input": "x"}, headers=bearer(plain))
    assert emb.status_code == 200
    sent = [r.headers.get("authorization", "") for r in upstream.requests]
    assert all(plain not in h and own not in h for h in sent)


def test_without_any_upstream_key_nothing_is_forwarded(keyed, upstream) -> None:
    token = keyed.key(kind="user", user="n")
    assert chat(keyed.url, bearer(token)).status_code == 200
    assert "authorization" not in upstream.chat_requests()[-1].headers


def test_export_and_import_follow_the_key(keyed) -> None:
    """A user key moves only its own memory; a service key only its tenant's owners; scopes apply."""
    alice = bearer(keyed.key(kind="user", user="alice"))
    add(keyed.url, bearer(keyed.key(kind="user", user="bob")), "Bob's locker code is 4411.")
    add(keyed.url, alice, "Alice keeps bees.")
    exported = httpx.get(f"{keyed.url}/v1/memories/export", headers=alice, timeout=60)
    assert exported.status_code == 200, exported.text
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        contents = [json.loads(line)["content"] for line in archive.read("memories.jsonl").splitlines()]
    assert contents == ["Alice keeps bees."]
    assert_error(httpx.get(f"{keyed.url}/v1/memories/export", params={"user": "bob"}, headers=alice, timeout=60), 403, "owner_mismatch")

    acme, beta = keyed.key(kind="service", tenant="acme"), keyed.key(kind="service", tenant="beta")
    imported = httpx.post(
        f"{keyed.url}/v1/memories/import", params={"user": "carol"}, content=exported.content, headers=bearer(acme), timeout=60
    )
    assert imported.status_code == 200, imported.text
    assert [m["content"] for m in listed(keyed.url, bearer(acme), "carol")] == ["Alice keeps bees."]
    assert listed(keyed.url, bearer(beta), "carol") == [], "beta's carol is another owner"

    reader = keyed.key(kind="service", tenant="acme", scopes=["memories:read"])
    refused = httpx.post(f"{keyed.url}/v1/memories/import", params={"user": "carol"}, content=exported.content, headers=bearer(reader), timeout=60)
    assert_error(refused, 403, "insufficient_scope")
