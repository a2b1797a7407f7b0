"""How a memory is shown to the model, and how injected blocks are removed.

The proxy wraps recalled memories in ``<memproxy:memories>`` ...
``</memproxy:memories>``. Anything between those tags (inclusive) in text
we are about to store was put there by us, so it is stripped before writing:
otherwise recalled memories would be re-remembered as new turns.

Memory text itself can never close or spoof a block: :func:`neutralise`
(applied when a block is rendered) writes every angle bracket in it, and
every look-alike (fullwidth ``＜``, small ``﹤``, ``‹``, ``〈``, ``⟨``, ...), as
``&lt;``/``&gt;``, and drops invisible Unicode tag characters, so no form of
``</memproxy:memories>``, in any case or spacing, survives inside a block.
"""

from __future__ import annotations

import re

from memory.cube import MemCube
from memory.pack_owner import pack_label

BLOCK_OPEN = "<memproxy:memories>"
BLOCK_CLOSE = "</memproxy:memories>"

_BLOCK = re.compile(re.escape(BLOCK_OPEN) + r".*?" + re.escape(BLOCK_CLOSE), re.DOTALL)
_BLANK_RUNS = re.compile(r"\n{3,}")


# "<" and ">" and every character that normalises (NFKC) or looks like one
_LEFT = "<\uff1c\ufe64\u2039\u2329\u3008\u27e8\u276e\u276c\u02c2\u1438\u300a\u29fc\u2aa1"
_RIGHT = ">\uff1e\ufe65\u203a\u232a\u3009\u27e9\u276f\u276d\u02c3\u1433\u300b\u29fd\u2aa2"
_ESCAPES: dict[int, str | None] = {**{ord(c): "&lt;" for c in _LEFT}, **{ord(c): "&gt;" for c in _RIGHT}}
# Unicode tag characters (U+E0000..U+E007F) are invisible and can smuggle text
_ESCAPES.update({cp: None for cp in range(0xE0000, 0xE0080)})


def neutralise(text: str) -> str:
    """``text`` safe to place inside a memory block: no angle bracket (or
    look-alike) is left in it, so it cannot open, close or spoof a block."""
    return text.translate(_ESCAPES)


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
