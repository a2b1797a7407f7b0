"""CPU time spent by the parties of a benchmark that share one machine.

``bench load`` runs the load generator, the fake upstream and the server on
the same cores; a throughput figure only means something next to who used
the CPU. Linux ``/proc`` only (elsewhere every figure is ``nan``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _ticks(stat: str) -> float:
    """utime + stime (seconds) from a ``/proc/.../stat`` line (the comm may hold spaces)."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` so far."""
    try:
        return _ticks(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return math.nan


def with_descendants(pids: list[int]) -> list[int]:
    """``pids`` and every process below them (the server's private Chroma child,
    memory/chroma_child.py, works for the server: its CPU is the server's)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def thread_cpu_s(native_id: int | None) -> float:
    """User + system CPU seconds of one thread of this process (``threading.Thread.native_id``)."""
    if native_id is None:
        return math.nan
    try:
        return _ticks(Path(f"/proc/self/task/{native_id}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return math.nan


def machine_busy_s() -> float:
    """CPU seconds every core spent not idle since boot (``/proc/stat``, all processes)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return math.nan
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICKS


@dataclass(frozen=True, slots=True)
class CpuSample:
    server: float  # the server process(es) and their children (a private Chroma)
    bench: float  # this process: the load generator and the in-process fake upstream
    upstream: float  # the fake upstream's thread (part of ``bench``)
    machine: float  # all cores, everything running


def sample(server_pids: list[int], upstream_thread: int | None) -> CpuSample:
    return CpuSample(
        server=sum(process_cpu_s(pid) for pid in with_descendants(server_pids)),
        bench=process_cpu_s(os.getpid()),
        upstream=thread_cpu_s(upstream_thread),
        machine=machine_busy_s(),
    )


def shares(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float]:
    """Cores used on average over ``seconds`` by each party (1.0 = one core busy all the time)."""

    def cores(a: float, b: float) -> float:
        return round((b - a) / seconds, 2) if seconds > 0 else math.nan

    server = cores(before.server, after.server)
    bench = cores(before.bench, after.bench)
    upstream = cores(before.upstream, after.upstream)
    machine = cores(before.machine, after.machine)
    return {
        "server": server,
        "clients": round(bench - upstream, 2),
        "fake_upstream": upstream,
        "other": round(machine - server - bench, 2),  # everything else on the machine (other users, the OS)
        "machine": machine,
        "cores": float(os.cpu_count() or math.nan),
    }
