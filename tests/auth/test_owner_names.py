"""Owner names: any Unicode text, on every route; "/" included.

``X-Memory-User`` is percent-encoded UTF-8; raw UTF-8 bytes are decoded as
UTF-8 too (one person, one memory), anything else is a 400.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.auth.conftest import bearer
from tests.conftest import list_memories, wait_for_memories
from tests.openai_schema import validate

NAMES = ["josé", "李小龙", "team/alpha", "a/b/c", "emoji 🦊", "100% sure", "../etc", "ünï/cødé"]


def chat_raw(url: str, user_header: bytes, text: str, extra: list[tuple[bytes, bytes]] = ()) -> httpx.Response:
    # httpx only sends str headers as ASCII; bytes go out as they are
    headers = [(b"X-Memory-User", user_header), (b"X-Memory", b"on"), *extra]
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def test_percent_encoded_and_raw_utf8_reach_the_same_owner(proxy) -> None:
    assert chat_raw(proxy.url, quote("josé", safe="").encode(), "I play the oud.").status_code == 200
    assert chat_raw(proxy.url, "josé".encode(), "I play the viola.").status_code == 200
    stored = wait_for_memories(proxy.url, "josé", 2)
    assert {m["user"] for m in stored} == {"josé"}
    assert list_memories(proxy.url, "josÃ©") == []  # no mangled second owner


def test_a_header_that_is_not_utf8_is_a_clear_400(proxy) -> None:
    for raw in ("josé".encode("latin-1"), b"jos%E9", b"bad%C3"):
        response = chat_raw(proxy.url, raw, "hi")
        assert response.status_code == 400, (raw, response.text)
        error = response.json()
        validate("ErrorResponse", error)
        assert error["error"]["param"] == "X-Memory-User" and "percent-encoded UTF-8" in error["error"]["message"]


def test_session_header_is_percent_encoded_too(proxy) -> None:
    extra = [(b"X-Memory-Session", quote("réunion/1", safe="").encode())]
    assert chat_raw(proxy.url, b"sam", "Notes from the meeting.", extra).status_code == 200
    assert wait_for_memories(proxy.url, "sam", 1)[0]["session"] == "réunion/1"


@pytest.mark.parametrize("name", NAMES)
def test_every_route_takes_any_name(proxy, name: str) -> None:
    url = proxy.url
    assert chat_raw(url, quote(name, safe="").encode(), f"My name is {name} and I collect stamps.").status_code == 200
    added = httpx.post(f"{url}/v1/memories", json={"user": name, "memories": [{"content": "Likes tea."}]}, timeout=60)
    assert added.status_code == 201 and added.json()["data"][0]["user"] == name
    stored = wait_for_memories(url, name, 2)
    assert {m["user"] for m in stored} == {name}
    found = httpx.post(f"{url}/v1/memories/search", json={"user": name, "query": "stamps"}, timeout=60).json()
    assert found["data"]
    one = httpx.get(f"{url}/v1/memories/{stored[0]['id']}", timeout=60)
    assert one.status_code == 200 and one.json()["user"] == name
    # the forget route's path segment is percent-encoded ("/" as %2F; sent as is it works too)
    forgotten = httpx.delete(f"{url}/v1/users/{quote(name, safe='')}/memories", timeout=60)
    assert forgotten.status_code == 200, forgotten.text
    receipt = forgotten.json()
    assert (receipt["object"], receipt["user"], receipt["deleted"]) == ("user.memories.deleted", name, len(stored))
    assert list_memories(url, name) == []


def test_a_slash_name_can_be_forgotten_with_a_literal_slash(proxy) -> None:
    httpx.post(f"{proxy.url}/v1/memories", json={"user": "org/dev", "memories": [{"content": "x"}]}, timeout=60)
    response = httpx.delete(f"{proxy.url}/v1/users/org/dev/memories", timeout=60)
    assert response.json()["deleted"] == 1 and response.json()["user"] == "org/dev"


def test_unicode_and_slash_names_in_a_tenant(keyed) -> None:
    acme = keyed.key(kind="service", tenant="acme")
    for name in ("josé", "team/alpha"):
        headers = bearer(acme, **{"X-Memory-User": quote(name, safe="")})
        added = httpx.post(f"{keyed.url}/v1/memories", json={"memories": [{"content": "Likes tea."}]}, headers=headers)
        assert added.status_code == 201 and added.json()["data"][0]["user"] == name
        assert [m["user"] for m in list_memories(keyed.url, name, bearer(acme))] == [name]
        gone = httpx.delete(f"{keyed.url}/v1/users/{quote(name, safe='')}/memories", headers=bearer(acme))
        assert gone.json()["deleted"] == 1
    user_key = keyed.key(kind="user", tenant="acme", user="zoë/2")
    added = httpx.post(f"{keyed.url}/v1/memories", json={"memories": [{"content": "x"}]}, headers=bearer(user_key))
    assert added.json()["data"][0]["user"] == "zoë/2"
    admin = keyed.key(kind="admin")
    assert [m["user"] for m in list_memories(keyed.url, "acme/zoë/2", bearer(admin))] == ["acme/zoë/2"]
    gone = httpx.delete(f"{keyed.url}/v1/users/{quote('zoë/2', safe='')}/memories", headers=bearer(user_key))
    assert gone.json()["deleted"] == 1
