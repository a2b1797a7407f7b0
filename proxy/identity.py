"""Who a request's memories belong to, and what memory may do for it.

With ``auth.mode: none`` the owner is the ``X-Memory-User`` header if
present, else the body's ``user`` field, else ``default``
(:class:`HeaderIdentityResolver`). With ``auth.mode: keys`` the API key
decides (:class:`proxy.auth.resolver.KeyIdentityResolver`). ``X-Memory-Session``
names the session.

Owner and session names are any Unicode text. HTTP headers carry bytes, so
``X-Memory-User`` and ``X-Memory-Session`` are **percent-encoded UTF-8**
(``jos%C3%A9`` is ``josé``; a literal ``%`` is ``%25``). A header sent as raw
UTF-8 bytes is decoded as UTF-8 too, so both spellings reach the same owner;
bytes that are not UTF-8 (or a bad percent escape) are a 400, never a
silently mangled second owner.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from starlette.datastructures import Headers
from starlette.requests import Request

from memory.cube import Owner
from proxy.errors import InvalidRequest

if TYPE_CHECKING:
    from proxy.auth.principal import Principal

DEFAULT_USER = "default"
MAX_ID_LENGTH = 256
USER_HEADER = "X-Memory-User"
SESSION_HEADER = "X-Memory-Session"


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
    explain: bool = False  # X-Memory-Explain: 1 -> the recall is explained (proxy/pipeline/explain.py)


def explain_requested(headers: Headers) -> bool:
    return (headers.get("x-memory-explain") or "").strip().lower() in ("1", "true", "yes", "on")


class IdentityResolver(Protocol):
    def resolve(self, headers: Headers, body: dict[str, Any], principal: Principal | None = None) -> Identity: ...


class HeaderIdentityResolver:
    """Resolves identity from ``X-Memory-*`` headers and the body's ``user`` (no authentication)."""

    def __init__(self, default_mode: str = "on") -> None:
        self.default_mode = MemoryMode(default_mode)

    def resolve(self, headers: Headers, body: dict[str, Any], principal: Principal | None = None) -> Identity:
        user = header_id(headers, USER_HEADER) or body_user(body) or DEFAULT_USER
        check_id(user, USER_HEADER)
        return Identity(Owner(user=user, session=session_of(headers)), self.mode(headers), explain_requested(headers))

    def mode(self, headers: Headers) -> MemoryMode:
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


def header_id(headers: Headers, name: str) -> str | None:
    """The decoded value of the ``name`` header (percent-encoded UTF-8), or None when absent or empty."""
    raw = headers.get(name.lower())
    if not raw:
        return None
    return decode_header_id(raw, name)


def decode_header_id(raw: str, name: str) -> str:
    """Decode a header value that Starlette read as latin-1: UTF-8 bytes, then percent escapes."""
    hint = f"Send {name} as percent-encoded UTF-8, e.g. 'jos%C3%A9' for 'josé'."
    try:
        text = raw.encode("latin-1").decode("utf-8") if not raw.isascii() else raw
        return unquote(text, encoding="utf-8", errors="strict")
    except UnicodeError:
        raise InvalidRequest(f"{name} is not valid UTF-8. {hint}", param=name) from None


def session_of(headers: Headers) -> str | None:
    session = header_id(headers, SESSION_HEADER)
    if session is not None:
        check_id(session, SESSION_HEADER)
    return session


def body_user(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return user if isinstance(user, str) and user.strip() else None


def check_id(value: str, name: str) -> None:
    if len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise InvalidRequest(
            f"{name} must be printable and at most {MAX_ID_LENGTH} characters.", param=name
        )


def named_owner(request: Request, user: str | None) -> str | None:
    """The owner a management call names: its ``user`` field, else the ``X-Memory-User`` header."""
    if user is not None:
        return user
    named = header_id(request.headers, USER_HEADER)
    if named is not None:
        check_id(named, USER_HEADER)
    return named
