"""Who owns a memory pack's memories: the reserved owner ``pack:<name>@<version>``.

A pack lives in its own owner partition (its own Chroma collection), so
installing, upgrading and removing it never touches a user's memories, and
its memories can never be exported as a user's own. This module is the one
place that knows the naming (render.py labels recalled pack memories with it).
"""

from __future__ import annotations

import re

PACK_PREFIX = "pack:"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$")


def pack_owner(name: str, version: str) -> str:
    return f"{PACK_PREFIX}{name}@{version}"


def is_pack_owner(user: str) -> bool:
    return user.startswith(PACK_PREFIX)


def pack_label(user: str) -> str | None:
    """``name@version`` for a pack owner, None for anyone else."""
    return user[len(PACK_PREFIX) :] if is_pack_owner(user) else None
