"""bench/link_faults.py: registration and a quick run of the section on the simulated board."""

from __future__ import annotations

import bench.__main__ as bench_main
from bench import link_faults


def test_link_faults_is_registered():
    assert "link_faults" in bench_main.section_names()


def test_link_faults_section_quick(sim_exe):
    result = link_faults.run(quick=True)
    rates = result["rates"]
    assert list(rates) == ["0", "0.0001", "0.001", "0.01"] and result["all_bit_exact"] is True
    assert rates["0"]["faults_injected"] == 0 and rates["0"]["retries"] == 0
    assert rates["0"]["throughput_vs_no_faults"] == 1.0
    assert all(r["samples_per_second"] > 0 and r["frames"] > 0 for r in rates.values())
