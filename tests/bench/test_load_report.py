"""bench load's report: the writer keeping up, and who used the CPU."""

from __future__ import annotations

import os

from bench.cpu import CpuSample, process_cpu_s, shares
from bench.load import _writer_rates


def test_writer_rates_compare_stored_and_arrived_overall_and_in_the_second_half() -> None:
    written = [(0.0, 0), (5.0, 10), (10.0, 60), (20.0, 160)]
    acked_at = [0.25 * i for i in range(40)] + [10.0 + 0.1 * i for i in range(100)]  # 4/s, then 10/s
    rates = _writer_rates(written, acked_at)
    assert rates["stored_per_s"] == 8.0 and rates["arrived_per_s"] == 7.0
    assert rates["second_half_stored_per_s"] == 10.0 and rates["second_half_arrived_per_s"] == 10.0
    assert _writer_rates([], [])["stored_per_s"] == 0.0


def test_cpu_shares_split_the_machine_between_the_parties() -> None:
    before = CpuSample(server=10.0, bench=4.0, upstream=1.0, machine=100.0)
    after = CpuSample(server=22.0, bench=8.0, upstream=2.0, machine=139.0)
    got = shares(before, after, 20.0)
    assert (got["server"], got["clients"], got["fake_upstream"], got["other"], got["machine"]) == (0.6, 0.15, 0.05, 1.15, 1.95)
    assert process_cpu_s(os.getpid()) > 0
