"""Helpers for the portable-memory tests (a uniquely named module)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memory.archive import MANIFEST, manifest_checksum

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data" / "portable"
EXAMPLE_PACK = ROOT / "examples" / "packs" / "elements-of-style"


def rewrite(src: Path, dst: Path, *, manifest: Callable[[dict[str, Any]], None] | None = None,
            member: tuple[str, Callable[[bytes], bytes]] | None = None, reseal: bool = True) -> None:
    """Copy an archive, changing its manifest and/or one member (resealing the checksum unless told not to)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == MANIFEST and manifest is not None:
                doc = json.loads(data)
                manifest(doc)
                if reseal:
                    doc["checksum"] = manifest_checksum(doc)
                data = json.dumps(doc).encode()
            if member is not None and info.filename == member[0]:
                data = member[1](data)
            zout.writestr(info.filename, data)


class EmbedCounter:
    """Counts texts embedded on the write lane of a (shared) embedder."""

    def __init__(self, embedder: Any, monkeypatch: Any) -> None:
        self.texts = 0
        for name in ("embed", "embed_memories"):
            monkeypatch.setattr(embedder, name, self._counting(getattr(embedder, name)))

    def _counting(self, original: Any) -> Any:
        async def counting(texts: list[str]) -> Any:
            self.texts += len(texts)
            return await original(texts)

        return counting
