"""Token counting with tiktoken's ``cl100k_base``, fully offline.

tiktoken normally downloads its BPE files on first use. litellm ships them in
its package, so we point ``TIKTOKEN_CACHE_DIR`` there before loading — found
with ``importlib`` so that litellm itself (slow to import) is never imported.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import tiktoken

ENCODING = "cl100k_base"


def bundled_tiktoken_dir() -> Path | None:
    """litellm's bundled tiktoken cache directory, or None if not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "litellm_core_utils" / "tokenizers"
        if candidate.is_dir():
            return candidate
    return None


class TokenCounter:
    """Counts ``cl100k_base`` tokens; the encoding loads on first use."""

    def __init__(self, encoding: str = ENCODING) -> None:
        self._name = encoding
        self._encoding: tiktoken.Encoding | None = None
        self._lock = threading.Lock()

    def _load(self) -> tiktoken.Encoding:
        with self._lock:
            if self._encoding is None:
                directory = bundled_tiktoken_dir()  # also when the engine is used without the proxy
                if directory is not None:
                    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(directory))
                self._encoding = tiktoken.get_encoding(self._name)
            return self._encoding

    def count(self, text: str) -> int:
        encoding = self._encoding or self._load()
        return len(encoding.encode(text, disallowed_special=()))
