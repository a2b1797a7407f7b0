"""The process environment memproxy runs in, set once by the CLI (and the test suite).

memproxy works offline: models load from installed packages, litellm uses
its bundled price map, and tiktoken reads litellm's bundled encodings. Those
libraries read environment variables, so they are set here, in one place,
before any of them is imported; a value the user already set is kept.
"""

from __future__ import annotations

import os

from memory.tokens import bundled_tiktoken_dir

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # sentence-transformers / transformers: never reach the hub
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # litellm: the bundled model price map
    "ANONYMIZED_TELEMETRY": "False",  # chromadb: no telemetry
}


def prepare_environment() -> None:
    """Set the offline defaults (and tiktoken's cache directory) unless already set."""
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    directory = bundled_tiktoken_dir()
    if directory is not None:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(directory))
