"""The ``auth:`` settings section.

``auth.mode``:

- ``auto`` (default): no authentication on a loopback address
  (``127.0.0.1``, ``::1``, ``localhost``); **refuses to start** on any other
  address, so a proxy exposed to a network is never open by accident;
- ``none``: no authentication, wherever it listens (set it explicitly to run
  an open proxy on a network, e.g. behind an authenticating gateway);
- ``keys``: every request but health checks needs a memproxy API key
  (``Authorization: Bearer mp-…``); see ``memproxy keys --help``.

``auth.keys_file``: the SQLite key store (default ``<data_dir>/keys.sqlite3``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from proxy.auth.keys import KEYS_FILE

AuthMode = Literal["auto", "none", "keys"]


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: AuthMode = "auto"
    keys_file: str | None = None

    def keys_path(self, data_dir: Path) -> Path:
        return Path(self.keys_file).expanduser() if self.keys_file else Path(data_dir) / KEYS_FILE

    def resolved_mode(self, host: str) -> Literal["none", "keys"]:
        """``none`` or ``keys``; raises ValueError for ``auto`` on a non-loopback ``host``."""
        if self.mode != "auto":
            return self.mode
        if is_loopback(host):
            return "none"
        raise ValueError(
            f"refusing to listen on {host} without authentication. Anyone who reaches the port could "
            "read and erase every user's memories and spend your upstream credentials. Either turn on "
            "API keys (auth.mode: keys, MEMPROXY_AUTH__MODE=keys or --auth-mode keys; create one with "
            "`memproxy keys create --kind admin --name root`) or, to run open on purpose, set "
            "auth.mode: none explicitly."
        )


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False
