"""The key store, the safe default and ``memproxy keys`` (no server needed)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from proxy.auth.keys import InvalidKey, KeyStore, digest
from proxy.auth.settings import AuthSettings, is_loopback
from proxy.cli import main
from proxy.config import load_settings


def test_keys_are_stored_hashed_and_shown_once(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    key, token = store.create(name="app", kind="service", tenant="acme")
    assert token.startswith("mp-") and len(token) >= 40
    assert store.authenticate(token) == key
    assert key.scopes == ("chat", "memories:read", "memories:write")
    store.close()
    raw = (tmp_path / "keys.sqlite3").read_bytes()
    wal = tmp_path / "keys.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert token.encode() not in raw and token[3:].encode() not in raw
    with sqlite3.connect(tmp_path / "keys.sqlite3") as db:
        assert db.execute("SELECT digest FROM api_keys").fetchone()[0] == digest(token)
    assert token not in json.dumps(key.to_dict())


def test_unknown_and_revoked_keys_do_not_authenticate(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    key, token = store.create(name="alice", kind="user", user="alice")
    assert store.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.authenticate("sk-not-ours") is None and store.authenticate("") is None
    revoked = store.revoke(key.id)
    assert revoked is not None and revoked.revoked_at
    assert store.authenticate(token) is None
    assert store.list() == [] and [k.id for k in store.list(include_revoked=True)] == [key.id]
    assert store.revoke("key_missing") is None


def test_cached_keys_honour_revocation_from_anywhere(tmp_path: Path) -> None:
    """Keys are cached in process; a revocation through this store, another
    store on the same file (the CLI, another server) or a plain SQLite write
    is honoured on the next authentication."""
    path = tmp_path / "keys.sqlite3"
    server = KeyStore(path)
    first, first_token = server.create(name="a", kind="user", user="a")
    second, second_token = server.create(name="b", kind="user", user="b")
    third, third_token = server.create(name="c", kind="user", user="c")
    for token, key in ((first_token, first), (second_token, second), (third_token, third)):
        assert server.authenticate(token) == key
        assert server.authenticate(token) == key  # the cached answer is the same key
    cli = KeyStore(path)
    assert cli.revoke(first.id) is not None
    cli.close()
    assert server.authenticate(first_token) is None
    assert server.authenticate(second_token) == second
    with sqlite3.connect(path) as db:
        db.execute("UPDATE api_keys SET revoked_at = 'now' WHERE id = ?", (second.id,))
    assert server.authenticate(second_token) is None
    server.revoke(third.id)
    assert server.authenticate(third_token) is None
    server.close()


def test_upstream_credential_is_never_echoed(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite3")
    key, _ = store.create(name="billing", kind="user", user="bo", upstream_api_key="sk-upstream-secret")
    public = json.dumps(key.to_dict())
    assert "sk-upstream-secret" not in public and key.to_dict()["has_upstream_api_key"] is True


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "user"},  # a user key needs its owner
        {"kind": "service"},  # a service key needs a tenant
        {"kind": "service", "tenant": "acme", "user": "al"},
        {"kind": "service", "tenant": "a/b"},  # a tenant cannot contain "/"
        {"kind": "admin", "tenant": "acme"},
        {"kind": "user", "user": "al", "scopes": ["admin"]},
        {"kind": "user", "user": "al", "scopes": ["memories:everything"]},
        {"kind": "root", "user": "al"},
    ],
)
def test_bad_key_requests_are_refused(tmp_path: Path, fields: dict) -> None:
    with pytest.raises(InvalidKey):
        KeyStore(tmp_path / "keys.sqlite3").create(name="x", **fields)


def test_a_user_key_in_a_tenant_is_bound_to_the_tenant_owner(tmp_path: Path) -> None:
    key, _ = KeyStore(tmp_path / "k.sqlite3").create(name="x", kind="user", tenant="acme", user="josé")
    assert key.owner == "acme/josé" and key.tenant == "acme"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_auto_is_open_on_loopback(host: str) -> None:
    assert is_loopback(host) and AuthSettings().resolved_mode(host) == "none"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com"])
def test_auto_refuses_a_network_address_without_keys(host: str) -> None:
    with pytest.raises(ValueError, match="refusing to listen"):
        AuthSettings().resolved_mode(host)
    assert AuthSettings(mode="none").resolved_mode(host) == "none"
    assert AuthSettings(mode="keys").resolved_mode(host) == "keys"


def test_auth_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMPROXY_AUTH__MODE", "keys")
    assert load_settings(host="0.0.0.0").resolved_auth_mode() == "keys"


def test_serve_refuses_an_open_network_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "data")])
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0" in err and "auth.mode: none" in err and "memproxy keys create" in err
    assert not (tmp_path / "data").exists()  # nothing was started


def test_keys_cli_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    data = str(tmp_path / "data")
    monkeypatch.setenv("ACME_UPSTREAM_KEY", "sk-acme-upstream")
    assert main(["keys", "create", "--data-dir", data, "--name", "acme app", "--kind", "service", "--tenant", "acme",
                 "--upstream-api-key-env", "ACME_UPSTREAM_KEY"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("mp-")
    assert main(["keys", "create", "--data-dir", data, "--name", "root", "--kind", "admin", "--json"]) == 0
    admin = json.loads(capsys.readouterr().out)
    assert admin["key"].startswith("mp-") and admin["scopes"] == ["chat", "memories:read", "memories:write", "admin"]

    store = KeyStore(tmp_path / "data" / "keys.sqlite3")
    service = store.authenticate(token)
    assert service is not None and service.tenant == "acme" and service.upstream_api_key == "sk-acme-upstream"

    assert main(["keys", "list", "--data-dir", data, "--json"]) == 0
    listed = capsys.readouterr().out
    assert token not in listed and "sk-acme-upstream" not in listed and admin["key"] not in listed
    assert {k["name"] for k in json.loads(listed)} == {"acme app", "root"}

    assert main(["keys", "revoke", "--data-dir", data, service.id]) == 0
    assert store.authenticate(token) is None  # the running proxy sees it on its next request
    assert main(["keys", "revoke", "--data-dir", data, "key_nope"]) == 1
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "list", "--data-dir", data]) == 0
    out = capsys.readouterr().out
    assert "acme app" not in out and "root" in out


def test_keys_cli_reports_a_bad_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--data-dir", str(tmp_path), "--name", "x", "--kind", "user"]) == 1
    assert "needs the user" in capsys.readouterr().err
