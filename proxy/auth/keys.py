"""The API-key store: one small SQLite file under the data directory.

A key is a random token ``mp-<43 url-safe characters>`` (256 bits). Only its
SHA-256 digest is stored: a high-entropy token needs no slow hash, and the
plaintext is shown once, at creation, and can never be recovered. Lookups go
by digest and are confirmed with a constant-time comparison.

Each key has a ``kind``:

- ``user``: acts as exactly one memory owner (``owner``), whatever the
  request's headers or body say;
- ``service``: an application serving many end users; it names the owner
  with ``X-Memory-User`` (or ``user``), inside its own ``tenant`` namespace;
- ``admin``: names any owner and manages keys.

and ``scopes`` (:data:`SCOPES`). Revoked keys stay in the file (``revoked_at``)
so the listing keeps a record. The CLI (``memproxy keys``) and the admin API
share this store; SQLite's WAL mode lets both use it at once.

Authenticating is on every request, so active keys are cached in process by
digest. The cache is only trusted while the file is unchanged: SQLite's
``PRAGMA data_version`` moves whenever another connection (the CLI, another
server process) commits, and this store's own writes clear the cache, so a
revocation is honoured on the very next request, wherever it was made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memory.cube import tenant_owner

KEY_PREFIX = "mp-"
KEYS_FILE = "keys.sqlite3"

SCOPE_CHAT = "chat"
SCOPE_READ = "memories:read"
SCOPE_WRITE = "memories:write"
SCOPE_ADMIN = "admin"
SCOPES = (SCOPE_CHAT, SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN)

KINDS = ("user", "service", "admin")
DEFAULT_SCOPES = {
    "user": (SCOPE_CHAT, SCOPE_READ, SCOPE_WRITE),
    "service": (SCOPE_CHAT, SCOPE_READ, SCOPE_WRITE),
    "admin": SCOPES,
}

# A tenant is a namespace prefix of owner names ("<tenant>/<user>"), so it
# cannot contain "/"; it is kept to a plain, log- and URL-safe alphabet.
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_NAME = 128
MAX_OWNER = 256
CACHED_KEYS = 4096  # active keys remembered by digest (least recently used dropped first)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    scopes TEXT NOT NULL,
    tenant TEXT,
    owner TEXT,
    upstream_api_key TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)
"""


class InvalidKey(ValueError):
    """A key cannot be created as asked (bad kind, scope, tenant or owner)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key (never its plaintext)."""

    id: str
    name: str
    kind: str
    scopes: tuple[str, ...]
    tenant: str | None
    owner: str | None
    hint: str
    created_at: str
    revoked_at: str | None = None
    upstream_api_key: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """The public view: the upstream credential is never echoed, only whether one is set."""
        return {
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "kind": self.kind,
            "scopes": list(self.scopes),
            "tenant": self.tenant,
            "user": self.owner,
            "hint": self.hint,
            "has_upstream_api_key": self.upstream_api_key is not None,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyStore:
    """Create, look up, list and revoke keys in ``path`` (SQLite, WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._cache: OrderedDict[str, ApiKey] = OrderedDict()  # digest -> active key
        self._version = self._data_version()

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _cached(self, wanted: str) -> ApiKey | None:
        """The cached key for a digest, if the file has not changed since it was cached (holds the lock)."""
        version = self._data_version()
        if version != self._version:  # another connection committed: anything may have been revoked
            self._cache.clear()
            self._version = version
            return None
        key = self._cache.get(wanted)
        if key is not None:
            self._cache.move_to_end(wanted)
        return key

    def _remember(self, wanted: str, key: ApiKey) -> None:
        self._cache[wanted] = key
        while len(self._cache) > CACHED_KEYS:
            self._cache.popitem(last=False)

    @classmethod
    def in_dir(cls, data_dir: Path) -> KeyStore:
        return cls(Path(data_dir) / KEYS_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _cursor(self, *, writes: bool = False) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            if writes:  # this connection's own commits do not move data_version
                self._cache.clear()
            cursor = self._db.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def create(
        self,
        *,
        name: str,
        kind: str,
        scopes: Iterable[str] | None = None,
        tenant: str | None = None,
        user: str | None = None,
        upstream_api_key: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key; returns it and its plaintext (shown once, never stored)."""
        key = _checked(name, kind, scopes, tenant, user, upstream_api_key)
        token = new_token()
        key = replace(key, id=f"key_{secrets.token_hex(8)}", hint=f"{token[:6]}…{token[-4:]}")
        with self._cursor(writes=True) as cur:
            cur.execute(
                "INSERT INTO api_keys (id, digest, hint, name, kind, scopes, tenant, owner, upstream_api_key, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    digest(token),
                    key.hint,
                    key.name,
                    key.kind,
                    " ".join(key.scopes),
                    key.tenant,
                    key.owner,
                    key.upstream_api_key,
                    key.created_at,
                ),
            )
        return key, token

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key whose plaintext is ``token``, or None."""
        if not token.startswith(KEY_PREFIX) or len(token) > 256:
            return None
        wanted = digest(token)
        with self._cursor() as cur:
            cached = self._cached(wanted)
            if cached is not None:
                return cached
            row = cur.execute("SELECT * FROM api_keys WHERE digest = ?", (wanted,)).fetchone()
            columns = [c[0] for c in cur.description] if row else []
            if row is None:
                return None
            record = dict(zip(columns, row, strict=True))
            if not hmac.compare_digest(record["digest"], wanted) or record["revoked_at"] is not None:
                return None
            key = _from_row(record)
            self._remember(wanted, key)
        return key

    def get(self, key_id: str) -> ApiKey | None:
        with self._cursor() as cur:
            row = cur.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            columns = [c[0] for c in cur.description] if row else []
        return _from_row(dict(zip(columns, row, strict=True))) if row else None

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        query = "SELECT * FROM api_keys" + ("" if include_revoked else " WHERE revoked_at IS NULL")
        with self._cursor() as cur:
            rows = cur.execute(query + " ORDER BY created_at, id").fetchall()
            columns = [c[0] for c in cur.description]
        return [_from_row(dict(zip(columns, row, strict=True))) for row in rows]

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke ``key_id`` (effective on the next request); None when there is no such key."""
        with self._cursor(writes=True) as cur:
            cur.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (_now(), key_id)
            )
        return self.get(key_id)

    def count_active(self) -> int:
        with self._cursor() as cur:
            return int(cur.execute("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()[0])


def _checked(
    name: str,
    kind: str,
    scopes: Iterable[str] | None,
    tenant: str | None,
    user: str | None,
    upstream_api_key: str | None,
) -> ApiKey:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidKey(f"A key needs a printable name of at most {MAX_NAME} characters.")
    if kind not in KINDS:
        raise InvalidKey(f"kind must be one of {', '.join(KINDS)}.")
    chosen = tuple(dict.fromkeys(scopes)) if scopes else DEFAULT_SCOPES[kind]
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise InvalidKey(f"Unknown scope {unknown[0]!r}: expected {', '.join(SCOPES)}.")
    if SCOPE_ADMIN in chosen and kind != "admin":
        raise InvalidKey("Only an admin key can have the admin scope.")
    if tenant is not None and not TENANT_RE.match(tenant):
        raise InvalidKey("tenant must be 1-64 characters of letters, digits, '.', '_' or '-' (no '/').")
    owner: str | None = None
    if kind == "user":
        if not user:
            raise InvalidKey("A user key needs the user (memory owner) it acts as.")
        owner = tenant_owner(tenant, user) if tenant else user
        if len(owner) > MAX_OWNER or not owner.isprintable():
            raise InvalidKey(f"user must be printable and at most {MAX_OWNER} characters.")
    elif kind == "service":
        if tenant is None:
            raise InvalidKey("A service key needs a tenant: its end users live in that namespace.")
        if user:
            raise InvalidKey("A service key names its users per request; it is not bound to one.")
    else:
        if tenant is not None or user:
            raise InvalidKey("An admin key has no tenant or user: it manages across tenants.")
    if upstream_api_key is not None and not upstream_api_key.strip():
        upstream_api_key = None
    return ApiKey(
        id="",
        name=name,
        kind=kind,
        scopes=chosen,
        tenant=tenant,
        owner=owner,
        hint="",
        created_at=_now(),
        upstream_api_key=upstream_api_key,
    )


def _from_row(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        scopes=tuple(row["scopes"].split()),
        tenant=row["tenant"],
        owner=row["owner"],
        hint=row["hint"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        upstream_api_key=row["upstream_api_key"],
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
