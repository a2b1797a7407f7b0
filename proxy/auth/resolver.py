"""Identity from the API key (``auth.mode: keys``).

The key, not the request, decides whose memory a call uses:

- a **user key** acts as its bound owner. The body's ``user`` (OpenAI's
  end-user tag) is ignored; an ``X-Memory-User`` header naming someone else
  is a 403 rather than silently ignored;
- a **service key** names the end user with ``X-Memory-User`` (else the
  body's ``user``), and that name lives in its tenant's namespace;
- an **admin key** names any stored owner the same way.

Naming no owner is a 401 (``missing_user``): there is no shared ``default``
owner when keys are on.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers

from memory.cube import Owner
from proxy.auth.principal import Principal
from proxy.errors import Unauthorized
from proxy.identity import (
    USER_HEADER,
    HeaderIdentityResolver,
    Identity,
    body_user,
    check_id,
    explain_requested,
    header_id,
    session_of,
)


class KeyIdentityResolver:
    def __init__(self, default_mode: str = "on") -> None:
        self._headers = HeaderIdentityResolver(default_mode)

    def resolve(self, headers: Headers, body: dict[str, Any], principal: Principal | None = None) -> Identity:
        if principal is None or principal.open:
            raise Unauthorized("This request needs an API key.", code="invalid_api_key")
        named_header = header_id(headers, USER_HEADER)
        if named_header is not None:
            check_id(named_header, USER_HEADER)
        key = principal.key
        assert key is not None
        named = named_header if key.kind == "user" else named_header or body_user(body)
        owner = principal.owner_for(named, param=USER_HEADER)
        mode = self._headers.mode(headers)
        return Identity(Owner(user=owner, session=session_of(headers)), mode, explain_requested(headers))
