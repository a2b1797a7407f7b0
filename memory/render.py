"""How a memory is shown to the model, and how injected blocks are removed.

The proxy wraps recalled memories in ``<memproxy:memories>`` ...
``</memproxy:memories>``. Anything between those tags (inclusive) in text
we are about to store was put there by us, so it is stripped before writing:
otherwise recalled memories would be re-remembered as new turns.
"""

from __future__ import annotations

import re

from memory.cube import MemCube
from memory.pack_owner import pack_label

BLOCK_OPEN = "<memproxy:memories>"
BLOCK_CLOSE = "</memproxy:memories>"

_BLOCK = re.compile(re.escape(BLOCK_OPEN) + r".*?" + re.escape(BLOCK_CLOSE), re.DOTALL)
_BLANK_RUNS = re.compile(r"\n{3,}")


def render_item(cube: MemCube) -> str:
    """One line per memory: ``[YYYY-MM-DD] content`` (date only when known);
    a memory from an installed pack is prefixed ``[pack: name@version]``."""
    content = cube.content.strip()
    label = pack_label(cube.owner.user)
    if label is not None:
        content = f"[pack: {label}] {content}"
    if cube.event_time is None:
        return content
    return f"[{cube.event_time.date().isoformat()}] {content}"


def strip_injected(text: str) -> str:
    """``text`` without any memproxy memory block (an unclosed one runs to the end)."""
    if BLOCK_OPEN not in text:
        return text
    stripped = _BLOCK.sub("", text)
    cut = stripped.find(BLOCK_OPEN)
    if cut != -1:
        stripped = stripped[:cut]
    return _BLANK_RUNS.sub("\n\n", stripped).strip()
