"""``memproxy memories …`` against a running server: Rich tables for people, ``--json`` for scripts,
the server's key rules, API errors as a message and exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from proxy.auth.keys import KeyStore
from proxy.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["memories", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_command_against_a_keyed_server(make_proxy, tmp_path: Path, capsys, monkeypatch) -> None:
    keys_file = tmp_path / "keys.sqlite3"
    store = KeyStore(keys_file)
    server = make_proxy(auth={"mode": "keys", "keys_file": str(keys_file)})
    _, alice = store.create(name="alice", kind="user", user="alice")
    _, bob = store.create(name="bob", kind="user", user="bob")
    store.close()
    monkeypatch.setenv("MEMPROXY_URL", server.url)
    monkeypatch.setenv("MEMPROXY_API_KEY", alice)
    monkeypatch.delenv("MEMPROXY_USER", raising=False)
    monkeypatch.setenv("COLUMNS", "240")  # Rich wraps to the terminal; capture has none
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {alice}"}, timeout=30)
    contents = ["I am allergic to peanuts.", "My sister lives in Porto.", "[bold red]not markup[/bold red]"]
    ids = [api.post("/v1/memories", json={"memories": [{"content": c}]}).json()["data"][0]["id"] for c in contents]
    bob_id = httpx.post(f"{server.url}/v1/memories", json={"memories": [{"content": "Bob's code is 4321."}]},
                        headers={"Authorization": f"Bearer {bob}"}).json()["data"][0]["id"]

    code, out, _ = run(capsys, "list")
    assert code == 0 and "3 memories" in out and "peanuts" in out and "[bold red]not markup[/bold red]" in out
    code, out, _ = run(capsys, "list", "--limit", "0", "--json")  # 0: every page
    assert [m["content"] for m in json.loads(out)["data"]] == contents
    code, out, _ = run(capsys, "search", "what am I allergic to?", "--json")
    assert json.loads(out)["data"][0]["id"] == ids[0]
    code, out, _ = run(capsys, "search", "where does my sister live?")
    assert code == 0 and "Porto" in out and "score" in out
    code, out, _ = run(capsys, "show", ids[1])
    assert code == 0 and "My sister lives in Porto." in out and "provenance" in out
    code, out, _ = run(capsys, "edit", ids[1], "--content", "My sister lives in Lisbon.", "--tier", "core", "--json")
    edited = json.loads(out)
    assert edited["tier"] == "core" and edited["version"] == 2
    assert api.get(f"/v1/memories/{ids[1]}").json()["content"] == "My sister lives in Lisbon."
    code, out, _ = run(capsys, "explain", "Can I eat peanut butter?", "--json")
    explained = json.loads(out)
    assert explained["injected"] == [ids[0]] and explained["core"]["ids"] == [ids[1]]
    code, out, _ = run(capsys, "explain", "Can I eat peanut butter?", "--now", explained["now"])
    assert code == 0 and "allergic to peanuts" in out and "version " + explained["core"]["version"] in out
    code, out, _ = run(capsys, "rm", ids[2])
    assert code == 0 and "deleted 1 memory" in out
    assert api.get(f"/v1/memories/{ids[2]}").status_code == 404

    # the server's rules: bob's memory is "not found" to alice's key; naming bob is refused
    code, _, err = run(capsys, "show", bob_id)
    assert code == 1 and "404 memory_not_found" in err
    code, _, err = run(capsys, "list", "--user", "bob")
    assert code == 1 and "403 owner_mismatch" in err
    code, _, err = run(capsys, "forget", "--user", "alice")  # not a terminal and no --yes: refused
    assert code == 1 and "--yes" in err
    assert len(api.get("/v1/memories").json()["data"]) == 2
    code, out, _ = run(capsys, "forget", "--user", "alice", "--yes")
    assert code == 0 and "2 memories erased" in out
    assert api.get("/v1/memories").json()["data"] == []
    assert httpx.get(f"{server.url}/v1/memories/{bob_id}", headers={"Authorization": f"Bearer {bob}"}).status_code == 200
    code, _, err = run(capsys, "list", "--url", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach memproxy" in err
