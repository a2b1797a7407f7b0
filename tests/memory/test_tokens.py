"""Token counting works offline without the proxy having prepared the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_counts_offline_when_used_as_a_library() -> None:
    # a fresh interpreter that never imported the proxy: no TIKTOKEN_CACHE_DIR set,
    # and no network here, so tiktoken's download would fail
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    code = "from memory.tokens import TokenCounter; print(TokenCounter().count('hello there, world'))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == 4
