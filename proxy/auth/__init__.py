"""API keys, tenants and ownership (``auth.mode: keys``); see docs/security.md.

- :mod:`proxy.auth.keys`: the hashed key store (SQLite) shared by the CLI and the admin API;
- :mod:`proxy.auth.middleware`: authenticates every request and checks its scope;
- :mod:`proxy.auth.principal`: which owners and memories a caller may touch;
- :mod:`proxy.auth.resolver`: :class:`KeyIdentityResolver`, the owner of a chat call;
- :mod:`proxy.auth.router`: the admin API (``/v1/admin/keys``);
- :mod:`proxy.auth.settings`: the ``auth:`` settings section and the safe default.
"""
