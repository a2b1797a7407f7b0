"""The MCP server, driven by the official MCP client: over streamable HTTP (``/mcp``) and over stdio
(``memproxy mcp`` against a running server). Every tool, identity and key enforcement, errors."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from proxy.auth.keys import KeyStore

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {
    "search_memories", "add_memory", "list_memories", "get_memory",
    "update_memory", "delete_memory", "forget_user", "get_core",
}


@asynccontextmanager
async def http_session(url: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    async with httpx2.AsyncClient(headers=headers, timeout=60) as client:
        async with streamable_http_client(f"{url}/mcp", http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


@asynccontextmanager
async def stdio_session(url: str, api_key: str | None, user: str | None = None) -> AsyncIterator[ClientSession]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MEMPROXY_URL": url}
    env.pop("MEMPROXY_API_KEY", None)
    if api_key:
        env["MEMPROXY_API_KEY"] = api_key
    args = ["-m", "proxy.cli", "mcp"] + (["--user", user] if user else [])
    params = StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(ROOT))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def call_error(session: ClientSession, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error
    return " ".join(getattr(c, "text", "") for c in result.content)


async def exercise_every_tool(session: ClientSession, user: str | None, api: httpx.Client, owner: str) -> None:
    """All tools as one owner; each result checked against the HTTP API."""
    named = {"user": user} if user else {}
    tools = {t.name for t in (await session.list_tools()).tools}
    assert tools == TOOLS
    added = await call(session, "add_memory", content="I am allergic to peanuts.", kind="fact", **named)
    memory_id = added["id"]
    assert api.get(f"/v1/memories/{memory_id}").json()["content"] == "I am allergic to peanuts."
    await call(session, "add_memory", content="My favourite colour is teal.", **named)
    listed = await call(session, "list_memories", **named)
    assert {m["content"] for m in listed["data"]} == {"I am allergic to peanuts.", "My favourite colour is teal."}
    found = await call(session, "search_memories", query="what food allergies do I have?", **named)
    assert found["data"][0]["id"] == memory_id and found["data"][0]["score"] > 0
    # the reference time reaches the API: a valid one recalls the same, a bad one is the API's 400
    then = await call(session, "search_memories", query="what food allergies do I have?",
                      now="2031-05-01T09:00:00Z", **named)
    assert then["data"][0]["id"] == memory_id
    refused = await call_error(session, "search_memories", query="allergies?", now="yesterday", **named)
    assert "400" in refused and "now" in refused
    assert (await call(session, "get_memory", memory_id=memory_id))["content"] == "I am allergic to peanuts."
    pinned = await call(session, "update_memory", memory_id=memory_id, tier="core")
    assert pinned["tier"] == "core" and pinned["version"] == 2
    core = await call(session, "get_core", **named)
    assert core["injected_ids"] == [memory_id] and "I am allergic to peanuts." in core["block"]
    assert core["block"] == api.get("/v1/memories", params={"tier": "core", **named}).json()["core"]["block"]
    assert "confirm=true" in await call_error(session, "forget_user", user=user or owner, confirm=False)
    deleted = await call(session, "delete_memory", memory_id=memory_id)
    assert deleted["deleted"] is True
    assert api.get(f"/v1/memories/{memory_id}").status_code == 404
    assert "404 memory_not_found" in await call_error(session, "get_memory", memory_id=memory_id)
    forgotten = await call(session, "forget_user", user=user or owner, confirm=True)
    assert forgotten["deleted"] == 1
    assert api.get("/v1/memories", params=named).json()["data"] == []


def test_every_tool_over_http_and_stdio_without_keys(proxy) -> None:
    url = proxy.url

    async def scenario() -> None:
        with httpx.Client(base_url=url, headers={"X-Memory-User": "mcp-open"}, timeout=30) as api:
            async with http_session(url, {}) as session:
                await exercise_every_tool(session, "mcp-open", api, "mcp-open")
                # no owner named: the API's own 400, as a tool error
                assert "400" in await call_error(session, "list_memories")
        with httpx.Client(base_url=url, headers={"X-Memory-User": "mcp-stdio"}, timeout=30) as api:
            async with stdio_session(url, None, user="mcp-stdio") as session:  # --user names the owner
                await exercise_every_tool(session, None, api, "mcp-stdio")

    asyncio.run(scenario())


def test_keys_scopes_and_owners_are_enforced(make_proxy, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.sqlite3"
    store = KeyStore(keys_file)
    server = make_proxy(auth={"mode": "keys", "keys_file": str(keys_file)})
    url = server.url
    _, alice = store.create(name="alice", kind="user", user="alice")
    _, reader = store.create(name="alice ro", kind="user", user="alice", scopes=("memories:read",))
    _, bob = store.create(name="bob", kind="user", user="bob")
    _, acme = store.create(name="acme", kind="service", tenant="acme")
    _, admin = store.create(name="root", kind="admin")
    bob_id = httpx.post(
        f"{url}/v1/memories", json={"memories": [{"content": "Bob's secret: the vault code is 4321."}]},
        headers={"Authorization": f"Bearer {bob}"},
    ).json()["data"][0]["id"]

    async def scenario() -> None:
        # no key: the endpoint itself is refused, before any MCP exchange
        refused = httpx.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {alice}"}, timeout=30) as api:
            async with http_session(url, {"Authorization": f"Bearer {alice}"}) as session:
                await exercise_every_tool(session, None, api, "alice")  # a user key names nobody
                # another owner: named -> 403; by id -> the same 404 as a missing id
                assert "403 owner_mismatch" in await call_error(session, "list_memories", user="bob")
                assert "404 memory_not_found" in await call_error(session, "get_memory", memory_id=bob_id)
                assert "404 memory_not_found" in await call_error(session, "delete_memory", memory_id=bob_id)
                assert "403 owner_mismatch" in await call_error(session, "forget_user", user="bob", confirm=True)
            # a read-only key reads, and cannot write
            async with stdio_session(url, reader) as session:
                assert (await call(session, "list_memories"))["data"] == []
                assert "403 insufficient_scope" in await call_error(session, "add_memory", content="x")
        # a service key reaches its tenant's users, named in its own namespace
        async with http_session(url, {"Authorization": f"Bearer {acme}", "X-Memory-User": "carol"}) as session:
            added = await call(session, "add_memory", content="Carol likes jazz.")
            assert added["user"] == "carol"
        carol = httpx.get(f"{url}/v1/memories", params={"user": "acme/carol"}, headers={"Authorization": f"Bearer {admin}"})
        assert [m["content"] for m in carol.json()["data"]] == ["Carol likes jazz."]
        # a bad key over stdio: every tool answers the API's 401
        async with stdio_session(url, "mp-not-a-key-at-all-0000000000000000000000000") as session:
            assert "401 invalid_api_key" in await call_error(session, "list_memories", user="alice")
        # bob's memory survived everything above
        assert httpx.get(f"{url}/v1/memories/{bob_id}", headers={"Authorization": f"Bearer {bob}"}).status_code == 200

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_claude_desktop_config_in_the_docs_is_valid_json() -> None:
    text = (ROOT / "docs" / "mcp.md").read_text()
    block = text.split("```json", 1)[1].split("```", 1)[0]
    config = json.loads(block)
    server = config["mcpServers"]["memproxy"]
    assert server["command"] == "memproxy" and server["args"] == ["mcp"]
