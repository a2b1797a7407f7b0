"""Who a request's memories belong to, and what memory may do for it.

The owner is the ``X-Memory-User`` header if present, else the body's
``user`` field, else ``default``. ``X-Memory-Session`` names the session.
API-key binding (a later feature) plugs in as another :class:`IdentityResolver`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.datastructures import Headers

from memory.cube import Owner
from proxy.errors import InvalidRequest

DEFAULT_USER = "default"
MAX_ID_LENGTH = 256


class MemoryMode(str, enum.Enum):
    ON = "on"  # recall and write
    OFF = "off"  # pure passthrough
    READ = "read"  # recall only
    WRITE = "write"  # store only

    @property
    def reads(self) -> bool:
        return self in (MemoryMode.ON, MemoryMode.READ)

    @property
    def writes(self) -> bool:
        return self in (MemoryMode.ON, MemoryMode.WRITE)


@dataclass(frozen=True, slots=True)
class Identity:
    owner: Owner
    mode: MemoryMode


class IdentityResolver(Protocol):
    def resolve(self, headers: Headers, body: dict[str, Any]) -> Identity: ...


class HeaderIdentityResolver:
    """Resolves identity from ``X-Memory-*`` headers and the body's ``user``."""

    def __init__(self, default_mode: str = "on") -> None:
        self.default_mode = MemoryMode(default_mode)

    def resolve(self, headers: Headers, body: dict[str, Any]) -> Identity:
        user = headers.get("x-memory-user") or _body_user(body) or DEFAULT_USER
        session = headers.get("x-memory-session") or None
        _check_id(user, "X-Memory-User")
        if session is not None:
            _check_id(session, "X-Memory-Session")
        return Identity(Owner(user=user, session=session), self._mode(headers))

    def _mode(self, headers: Headers) -> MemoryMode:
        raw = headers.get("x-memory")
        if raw is None or raw.strip() == "":
            return self.default_mode
        try:
            return MemoryMode(raw.strip().lower())
        except ValueError:
            raise InvalidRequest(
                f"Invalid X-Memory header '{raw}': expected one of on, off, read, write.",
                param="X-Memory",
            ) from None


def _body_user(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return user if isinstance(user, str) and user.strip() else None


def _check_id(value: str, name: str) -> None:
    if len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise InvalidRequest(
            f"{name} must be printable and at most {MAX_ID_LENGTH} characters.", param=name
        )
