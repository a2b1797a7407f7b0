"""Export/import over HTTP (streamed) and the CLI commands, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx

from testing.processes import memproxy_exe
from tests.portable.portable_helpers import SAMPLES


def test_http_export_import_round_trip(make_proxy):
    first, second = make_proxy(), make_proxy()
    added = httpx.post(f"{first.url}/v1/memories", json={"user": "alice", "memories": [
        {"content": "I keep bees on my roof in Lisbon.", "metadata": {"hives": 2}},
        {"content": "My daughter Ines was born in 2019.", "tier": "core"}]}, timeout=60)
    assert added.status_code == 201
    with httpx.stream("GET", f"{first.url}/v1/memories/export", params={"user": "alice"}, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
        archive = b"".join(response.iter_bytes())
    imported = httpx.post(f"{second.url}/v1/memories/import", params={"user": "alice"}, content=archive, timeout=60)
    assert imported.status_code == 200, imported.text
    assert imported.json()["added"] == 2 and imported.json()["vectors_reused"] is True
    again = httpx.get(f"{second.url}/v1/memories/export", params={"user": "alice"}, timeout=60).content
    assert again == archive
    as_bob = httpx.post(f"{second.url}/v1/memories/import", params={"user": "bob"}, content=archive, timeout=60).json()
    assert as_bob["added"] == 2
    facts = httpx.post(f"{second.url}/v1/memories/import", params={"user": "carol", "format": "mem0"},
                       content=(SAMPLES / "mem0_get_all.json").read_bytes(), timeout=60).json()
    assert facts["added"] == 3
    broken = httpx.post(f"{second.url}/v1/memories/import", params={"user": "dave"}, content=b"garbage", timeout=60)
    assert broken.status_code == 400 and broken.json()["error"]["param"] == "file"
    pack = httpx.get(f"{second.url}/v1/memories/export", params={"user": "pack:x@1"}, timeout=60)
    assert pack.status_code == 400 and pack.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{second.url}/v1/memories", params={"user": "dave"}, timeout=60).json()["data"] == []


def test_cli_import_export_and_packs_list(tmp_path: Path):
    """(packs build/install/remove share these code paths and are tested on the engine in test_packs.py)"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def memproxy(*args: str) -> dict:
        done = subprocess.run([memproxy_exe(), *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    data = str(tmp_path / "data")
    chatgpt = memproxy("import", str(SAMPLES / "conversations.json"), "--as-user", "alice", "--data-dir", data)
    assert (chatgpt["format"], chatgpt["added"]) == ("chatgpt", 3)
    out = memproxy("export", "--user", "alice", "-o", str(tmp_path / "alice.memcube"), "--data-dir", data)
    assert out["memories"] == 3
    (tmp_path / "packs-data").mkdir()
    assert memproxy("packs", "list", "--data-dir", str(tmp_path / "packs-data")) == {"object": "list", "data": []}
    bad = subprocess.run([memproxy_exe(), "import", str(SAMPLES / "facts.md"), "--data-dir", data],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "--as-user" in bad.stderr
