"""Fixtures for the auth tests: a key store and a proxy with ``auth.mode: keys``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.auth.keys import KeyStore
from testing.serving import ServerThread


@dataclass
class KeyedProxy:
    server: ServerThread
    store: KeyStore

    @property
    def url(self) -> str:
        return self.server.url

    def key(self, **fields: object) -> str:
        fields.setdefault("name", f"test-{fields.get('kind')}")
        _, token = self.store.create(**fields)  # type: ignore[arg-type]
        return token


@pytest.fixture()
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "keys.sqlite3"


@pytest.fixture()
def keyed(make_proxy, keys_file: Path):
    """A proxy with keys on, and its key store (keys made here work at once)."""
    store = KeyStore(keys_file)
    server = make_proxy(auth={"mode": "keys", "keys_file": str(keys_file)})
    yield KeyedProxy(server, store)
    store.close()


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}
