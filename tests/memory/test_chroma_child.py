"""``memory.chroma_process: child``: the embedded store as a private ``chroma run``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from memory.chroma_child import ChromaChild
from memory.cube import Owner
from memory.engine import NewMemory
from memory.errors import StoreUnavailable
from tests.memory.memory_helpers import EngineFactory

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_child_store_keeps_the_folder_format_and_stops_with_the_engine(open_engine: EngineFactory,
                                                                          tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = await open_engine(chroma_process="child")
        child = engine.store.inner._child
        assert child is not None and child.url.startswith("http://127.0.0.1:")
        await engine.add(Owner("ann"), [NewMemory("I adopted a rescue greyhound named Biscuit.")])
        found = await engine.search("ann", "What is my dog called?")
        assert any("Biscuit" in item.text for item in found.items)
        await engine.aclose()
        assert child.process.returncode is not None  # stopped with the engine

        inline = await open_engine(chroma_process="inline")  # the same folder, in process: the same rows
        assert inline.store.inner._child is None
        again = await inline.search("ann", "What is my dog called?")
        assert [item.text for item in again.items] == [item.text for item in found.items]

    open_engine.run(scenario())


HOLDER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from memory.engine import MemoryEngine
    from memory.settings import MemorySettings

    async def main() -> None:
        engine = await MemoryEngine.open(MemorySettings(chroma_process="child"), Path(sys.argv[1]))
        print(engine.store.inner._child.process.pid, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


def test_the_child_does_not_outlive_a_killed_proxy(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout is not None
        child_pid = int(holder.stdout.readline())
        assert _alive(child_pid)
        holder.send_signal(signal.SIGKILL)  # no clean-up runs in the proxy
        holder.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child_pid), "chroma outlived the process that started it"

        async def restart() -> None:  # the folder's lock went with them: a new proxy starts at once
            child = await ChromaChild.start(tmp_path / "chroma", timeout_s=10)
            await child.stop()

        asyncio.run(restart())
    finally:
        holder.kill()


def test_one_folder_never_has_two_children(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = await ChromaChild.start(tmp_path / "chroma")
        try:
            with pytest.raises(StoreUnavailable, match="in use by another process"):
                await ChromaChild.start(tmp_path / "chroma", timeout_s=0.5)
        finally:
            await first.stop()
        second = await ChromaChild.start(tmp_path / "chroma")  # free again once the first has stopped
        await second.stop()
        await second.stop()  # idempotent

    asyncio.run(scenario())
