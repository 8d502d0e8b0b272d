"""bench/host_link.py: registration, Fmax choice, and (slow) a quick run of the section."""

from __future__ import annotations

import json

import pytest

import bench.__main__ as bench_main
from bench import host_link


def test_host_link_is_registered():
    assert "host_link" in bench_main.section_names()


def test_fmax_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("EOQ_FMAX_MHZ", raising=False)
    monkeypatch.setattr(host_link, "ROOT", tmp_path)
    assert host_link.choose_fmax(None, "default") == (host_link.DEFAULT_FREQ / 1e6, "fpga.top.DEFAULT_FREQ (no FPGA report yet)")
    report = tmp_path / "build" / "fpga" / "ulx3s-85F-default" / "fpga_report.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"clocks": [{"net": "sync", "achieved_mhz": 61.5, "constraint_mhz": 50,
                                              "met": True},
                                             {"net": "uart", "achieved_mhz": 90.0, "constraint_mhz": 48,
                                              "met": True}]}))
    assert host_link.choose_fmax(None, "default") == (61.5, "build/fpga/ulx3s-85F-default/fpga_report.json")
    monkeypatch.setenv("EOQ_FMAX_MHZ", "40")
    assert host_link.choose_fmax(None, "default") == (40.0, "EOQ_FMAX_MHZ")
    assert host_link.choose_fmax(25, "default") == (25.0, "command line")


def test_missing_tools_say_make_setup(monkeypatch):
    import shutil

    from sim_board import build
    real = shutil.which
    monkeypatch.setattr(build.shutil, "which", lambda tool: None if tool == "verilator" else real(tool))
    with pytest.raises(build.BuildError, match="verilator.*run make setup"):
        build.check_tools()


@pytest.mark.slow
def test_host_link_section_quick():
    result = host_link.run(quick=True, fmax_mhz=50)
    assert result["bytes_per_step"]["total"] > 16 * 64
    assert result["core_cycles_per_step"] > 0 and result["bound"] in ("host link", "core compute")
    assert result["sim"]["samples_per_second"] > 0 and result["golden"]["samples_per_second"] > 0
    assert result["sim"]["cycles_per_second"] > 0 and result["sim"]["retries"] == 0
    autonomous = result["autonomous"]     # 8 steps: the epoch's and the evaluation's few commands, whatever the steps
    assert autonomous["steps"] == 8 and 0 < autonomous["bytes_per_step"] * 8 < 600


def test_autonomous_figures_amortise_the_epoch():
    measured = {"steps": 90, "upload_bytes": 132_938, "train_bytes": 548, "train_cycles": 90 * 13_000,
                "eval_bytes": 130, "eval_cycles": 23 * 6_000, "poll_bytes": 48}
    figures = host_link.autonomous_figures(measured, fmax=30.0, baud=3_000_000)
    assert figures["bytes_per_step"] == 7.0 and figures["bytes_per_step_sim"] == round(678 / 90, 2)
    link = 630 * 10 / 3e6
    compute = (90 * 13_000 + 23 * 6_000) / 30e6
    assert figures["link_share"] == round(link / (link + compute), 5)
    assert figures["board_samples_per_second"] == round(90 * 16 / (link + compute), 1)


@pytest.mark.slow
def test_autonomous_measure_on_golden():
    result = host_link.measure_autonomous("golden", 3)
    assert result["steps"] == 3 and result["train_bytes"] == 0 and result["upload_bytes"] == 0
