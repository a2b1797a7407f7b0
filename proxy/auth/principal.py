"""Who is calling, and which memory owners that caller may act as.

A :class:`Principal` is the authenticated caller of one request: an API key
(``auth.mode: keys``) or :data:`OPEN` (``auth.mode: none``, anyone may do
anything, as before keys existed). Every route that names an owner or a
memory asks the principal:

- :meth:`Principal.owner_for` turns the owner a request names into the
  stored owner name, or refuses: a user key only ever acts as its own owner;
  a service key's names live in its tenant's namespace (``<tenant>/<user>``);
  an admin key names stored owners directly.
- :meth:`Principal.owns` says whether a stored memory's owner is the
  caller's; routes answer 404 when it is not, exactly as for a missing id.
- :meth:`Principal.view` shows a stored owner name as the caller named it
  (a service key sees ``alice``, not ``acme/alice``).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from memory.cube import tenant_owner
from proxy.auth.keys import SCOPE_ADMIN, SCOPES, ApiKey
from proxy.errors import Forbidden, InvalidRequest, Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    key: ApiKey | None  # None: auth is off (``auth.mode: none``)

    @property
    def open(self) -> bool:
        return self.key is None

    @property
    def scopes(self) -> tuple[str, ...]:
        return SCOPES if self.key is None else self.key.scopes

    @property
    def upstream_api_key(self) -> str | None:
        return None if self.key is None else self.key.upstream_api_key

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, scope: str) -> None:
        if not self.has(scope):
            raise Forbidden(
                f"This API key lacks the '{scope}' scope needed for this request.", code="insufficient_scope"
            )

    def owner_for(self, named: str | None, *, param: str = "user") -> str:
        """The stored owner this request acts as, given the owner it names (None: names none)."""
        key = self.key
        if key is None:
            if not named:
                raise InvalidRequest(f"Invalid value for '{param}': Field required", param=param)
            return named
        if key.kind == "user":
            assert key.owner is not None
            if named is not None and named != key.owner and not self._is_own_relative(named):
                raise Forbidden(
                    "This API key acts as exactly one memory owner and cannot name another.",
                    param=param,
                    code="owner_mismatch",
                )
            return key.owner
        if not named:
            raise Unauthorized(
                "This API key serves many memory owners: name one with the X-Memory-User header "
                "(percent-encoded UTF-8) or the 'user' field.",
                param=param,
                code="missing_user",
            )
        if key.kind == "service":
            assert key.tenant is not None
            return tenant_owner(key.tenant, named)
        return named  # admin: stored owner names, across tenants

    def owns(self, stored_owner: str) -> bool:
        """Whether a memory of ``stored_owner`` belongs to this caller."""
        key = self.key
        if key is None or key.kind == "admin":
            return True
        if key.kind == "user":
            return stored_owner == key.owner
        assert key.tenant is not None
        return stored_owner.startswith(tenant_owner(key.tenant, ""))

    def view(self, stored_owner: str) -> str:
        """``stored_owner`` as this caller names it (its tenant prefix dropped)."""
        key = self.key
        if key is not None and key.tenant is not None:
            prefix = tenant_owner(key.tenant, "")
            if stored_owner.startswith(prefix):
                return stored_owner[len(prefix) :]
        return stored_owner

    @property
    def is_admin(self) -> bool:
        return self.has(SCOPE_ADMIN)

    def _is_own_relative(self, named: str) -> bool:
        key = self.key
        return key is not None and key.tenant is not None and tenant_owner(key.tenant, named) == key.owner


OPEN = Principal(None)


def principal_of(request: Request) -> Principal:
    """The caller of ``request``, as :class:`proxy.auth.middleware.AuthMiddleware` set it.

    A request that did not pass through the middleware is refused, never open.
    """
    found = request.scope.get("state", {}).get("principal")
    if not isinstance(found, Principal):
        raise Unauthorized("This request was not authenticated.", code="invalid_api_key")
    return found
