"""The isolation property (Hypothesis): no owner ever sees another owner's secret.

One proxy with keys on serves 23 owners through several keys and tenants:
two service keys of tenant ``acme`` (one namespace), one of tenant ``beta``
(the same end-user names, different owners; one acme user is even named
``beta/alice``), user keys (one of them bound inside ``acme``, so that owner
is reachable both ways). Every owner has a secret. Hypothesis draws random
interleavings of every surface: chat (streamed and not), the Responses API
(streamed and not), Ollama chat and generate, the management API (add, list,
search, get, patch, delete by id) and forget, plus attempts to name another
owner. After every step:

- no response body contains another owner's secret;
- no request that reached an upstream (OpenAI-compatible or Ollama) contains
  another owner's secret;
- every access to another owner's memory id is a 404, the same as a missing id;
- a user key naming another owner is refused (403).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from proxy.auth.keys import KeyStore
from testing.fake_ollama import FakeOllama
from testing.fake_openai import FakeOpenAI
from testing.serving import ServerThread

END_USERS = ["alice", "bob", "carol", "dave", "erin", "josé", "李", "team/x"]
USER_KEY_OWNERS = ["u1", "u2", "u3", "ü/4", "u5"]


@dataclass(frozen=True)
class Actor:
    label: str
    token: str
    owner: str  # the stored owner name
    names: str | None  # what it sends as X-Memory-User (None: a user key, bound)

    def headers(self, **extra: str) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}", **extra}
        if self.names is not None:
            out["X-Memory-User"] = quote(self.names, safe="")
        return out


@dataclass
class World:
    url: str
    openai: FakeOpenAI
    ollama: FakeOllama
    actors: list[Actor]
    secrets: dict[str, str]  # owner -> secret
    ids: dict[str, str]  # memory id -> owner
    client: httpx.Client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder: Any, fake_upstream) -> Iterator[World]:
    from proxy.app import create_app
    from proxy.config import load_settings

    fake_openai, openai_server = fake_upstream
    fake_openai.clear()
    root: Path = tmp_path_factory.mktemp("isolation")
    store = KeyStore(root / "keys.sqlite3")
    actors: list[Actor] = []

    def token(**fields: Any) -> str:
        return store.create(name=f"k{len(actors)}", **fields)[1]

    acme_1, acme_2 = token(kind="service", tenant="acme"), token(kind="service", tenant="acme")
    beta = token(kind="service", tenant="beta")
    for i, name in enumerate(END_USERS):
        actors.append(Actor(f"acme:{name}", acme_1 if i % 2 else acme_2, f"acme/{name}", name))
        actors.append(Actor(f"beta:{name}", beta, f"beta/{name}", name))
    actors.append(Actor("acme:beta/alice", acme_1, "acme/beta/alice", "beta/alice"))
    for owner in USER_KEY_OWNERS:
        actors.append(Actor(f"user:{owner}", token(kind="user", user=owner), owner, None))
    actors.append(Actor("user:acme/frank", token(kind="user", tenant="acme", user="frank"), "acme/frank", None))
    actors.append(Actor("acme:frank", acme_2, "acme/frank", "frank"))  # the same owner, through the service key
    owners = {a.owner for a in actors}
    assert len(owners) >= 20
    secret_of = {owner: f"zq{secrets.token_hex(6)}" for owner in sorted(owners)}

    fake_ollama = FakeOllama()
    with ServerThread(fake_ollama.app()) as ollama_server:
        settings_ = load_settings(
            data_dir=str(root / "data"),
            upstream={"base_url": f"{openai_server.url}/v1", "provider": "openai"},
            memory={"recall_deadline_ms": 10_000},
            ollama={"base_url": ollama_server.url},
            auth={"mode": "keys", "keys_file": str(root / "keys.sqlite3")},
        )
        with ServerThread(create_app(settings_, embedder=embedder)) as proxy, httpx.Client(timeout=60) as client:
            yield World(proxy.url, fake_openai, fake_ollama, actors, secret_of, {}, client)
    store.close()
    fake_openai.clear()


# -- the surfaces ---------------------------------------------------------------


def _said(world: World, actor: Actor, step: int) -> str:
    return f"Remember that my code is {world.secrets[actor.owner]} (note {step}). Which codes do you know?"


def chat(world: World, actor: Actor, step: int, stream: bool) -> httpx.Response:
    body = {"model": "fake-model", "stream": stream, "messages": [{"role": "user", "content": _said(world, actor, step)}]}
    return world.client.post(f"{world.url}/v1/chat/completions", json=body, headers=actor.headers())


def responses(world: World, actor: Actor, step: int, stream: bool) -> httpx.Response:
    body = {"model": "fake-model", "stream": stream, "input": _said(world, actor, step)}
    return world.client.post(f"{world.url}/v1/responses", json=body, headers=actor.headers())


def ollama_chat(world: World, actor: Actor, step: int, stream: bool) -> httpx.Response:
    body = {"model": "llama3.2", "stream": stream, "messages": [{"role": "user", "content": _said(world, actor, step)}]}
    return world.client.post(f"{world.url}/api/chat", json=body, headers=actor.headers())


def ollama_generate(world: World, actor: Actor, step: int, stream: bool) -> httpx.Response:
    body = {"model": "llama3.2", "stream": stream, "prompt": _said(world, actor, step)}
    return world.client.post(f"{world.url}/api/generate", json=body, headers=actor.headers())


def add(world: World, actor: Actor, step: int, _: bool) -> httpx.Response:
    body = {"memories": [{"content": f"The code is {world.secrets[actor.owner]}, note {step}."}]}
    response = world.client.post(f"{world.url}/v1/memories", json=body, headers=actor.headers())
    assert response.status_code == 201, response.text
    return response


def list_(world: World, actor: Actor, _: int, core: bool) -> httpx.Response:
    params = {"limit": 1000, **({"tier": "core"} if core else {})}
    response = world.client.get(f"{world.url}/v1/memories", params=params, headers=actor.headers())
    assert response.status_code == 200, response.text
    return response


def search(world: World, actor: Actor, _: int, __: bool) -> httpx.Response:
    body = {"query": "which codes do you know?"}
    response = world.client.post(f"{world.url}/v1/memories/search", json=body, headers=actor.headers())
    assert response.status_code == 200, response.text
    return response


def forget(world: World, actor: Actor, _: int, __: bool) -> httpx.Response:
    name = actor.names if actor.names is not None else actor.owner.removeprefix("acme/")
    response = world.client.delete(f"{world.url}/v1/users/{quote(name, safe='')}/memories", headers=actor.headers())
    assert response.status_code == 200, response.text
    return response


SURFACES = {
    "chat": chat,
    "responses": responses,
    "ollama_chat": ollama_chat,
    "ollama_generate": ollama_generate,
    "add": add,
    "list": list_,
    "search": search,
    "forget": forget,
}
BY_ID = ("get", "patch", "delete")

steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(sorted(SURFACES)), st.integers(0, 10_000), st.booleans()),
        st.tuples(st.sampled_from(BY_ID), st.integers(0, 10_000), st.integers(0, 10_000)),
        st.tuples(st.just("impersonate"), st.integers(0, 10_000), st.integers(0, 10_000)),
    ),
    min_size=4,
    max_size=14,
)


def by_id(world: World, actor: Actor, what: str, pick: int) -> httpx.Response:
    memory_id, owner = sorted(world.ids.items())[pick % len(world.ids)]
    url = f"{world.url}/v1/memories/{memory_id}"
    if what == "get":
        response = world.client.get(url, headers=actor.headers())
    elif what == "patch":
        content = f"Patched: the code is {world.secrets[actor.owner]}."
        response = world.client.patch(url, json={"content": content}, headers=actor.headers())
    else:
        response = world.client.delete(url, headers=actor.headers())
    if owner != actor.owner:
        assert response.status_code == 404, (what, actor.label, owner, response.text)
        error = response.json()["error"]
        assert error["code"] == "memory_not_found" and error["message"] == f"No memory found with id '{memory_id}'."
    else:
        assert response.status_code in (200, 404), response.text
    return response


def impersonate(world: World, actor_pick: int, victim_pick: int) -> None:
    """A user key naming someone else is refused, on chat and on the management API."""
    bound = [a for a in world.actors if a.names is None]
    actor = bound[actor_pick % len(bound)]
    victim = world.actors[victim_pick % len(world.actors)]
    if victim.owner == actor.owner:
        return
    named = {"X-Memory-User": quote(victim.owner, safe="")}
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hello"}]}
    refused = world.client.post(f"{world.url}/v1/chat/completions", json=body, headers=actor.headers(**named))
    assert refused.status_code == 403, refused.text
    listing = world.client.get(f"{world.url}/v1/memories", params={"user": victim.owner}, headers=actor.headers())
    assert listing.status_code == 403, listing.text
    assert world.secrets[victim.owner] not in refused.text + listing.text


def _record_ids(world: World, actor: Actor, response: httpx.Response) -> None:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return
    data = response.json().get("data") if isinstance(response.json(), dict) else None
    for item in data or []:
        if isinstance(item, dict) and str(item.get("id", "")).startswith("mem_"):
            world.ids[item["id"]] = actor.owner


# No shrinking: each step is a real HTTP call, and a failure names the step, the actor and the leak.
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=steps, actor_picks=st.lists(st.integers(0, 10_000), min_size=14, max_size=14))
def test_no_owner_ever_sees_another_owners_secret(world: World, plan, actor_picks) -> None:
    for step, (what, pick, flag) in enumerate(plan):
        actor = world.actors[actor_picks[step] % len(world.actors)]
        seen_openai, seen_ollama = len(world.openai.requests), len(world.ollama.requests)
        if what == "impersonate":
            impersonate(world, pick, flag)
            response = None
        elif what in BY_ID:
            if not world.ids:
                add(world, actor, step, False)
                list_(world, actor, step, False)
                _record_ids(world, actor, list_(world, actor, step, False))
            response = by_id(world, actor, what, flag)
        else:
            response = SURFACES[what](world, actor, pick, flag)
            assert response.status_code == 200 or (what == "add" and response.status_code == 201), response.text
            _record_ids(world, actor, response)
        if response is not None:
            leaked = [o for o, s in world.secrets.items() if o != actor.owner and s in response.text]
            assert not leaked, f"{what} as {actor.label} returned the secret of {leaked}: {response.text}"
        sent = world.openai.requests[seen_openai:] + world.ollama.requests[seen_ollama:]
        for request in sent:
            prompt = json.dumps(request.body, ensure_ascii=False)
            leaked = [o for o, s in world.secrets.items() if o != actor.owner and s in prompt]
            assert not leaked, f"{what} as {actor.label} sent the secret of {leaked} upstream: {prompt}"


def test_the_harness_sees_an_owners_own_secret(world: World) -> None:
    """The property is not vacuous: recall does put an owner's own secrets in its prompts."""
    actor = next(a for a in world.actors if a.label == "beta:josé")
    add(world, actor, 0, False)
    world.openai.clear()
    assert chat(world, actor, 1, False).status_code == 200
    prompt = json.dumps(world.openai.chat_requests()[-1].body, ensure_ascii=False)
    assert prompt.count(world.secrets[actor.owner]) >= 2  # the recalled memory and the new message
