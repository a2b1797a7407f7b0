"""The fake upstream a benchmark drives, from the source tree's ``testing`` package.

``testing/`` is not installed with memproxy: a benchmark that needs it says so
clearly when it is run outside a source checkout.
"""

from __future__ import annotations

from typing import Any


def fake_upstream(bench: str) -> tuple[Any, Any]:
    """``(FakeOpenAI, ServerThread)``, or a clear exit naming ``memproxy bench <bench>``."""
    try:
        from testing.fake_openai import FakeOpenAI
        from testing.serving import ServerThread
    except ModuleNotFoundError as exc:
        if exc.name not in ("testing", "testing.fake_openai", "testing.serving"):
            raise
        raise SystemExit(
            f"memproxy bench {bench} needs the fake upstream, which lives in the source tree's testing/ package "
            f"(not installed with memproxy): run `PYTHONPATH=. memproxy bench {bench}` at the repository root."
        ) from exc
    return FakeOpenAI, ServerThread
