"""`verilator --lint-only -Wall` is clean on the whole system's Verilog (waivers: verilator_waivers.vlt)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WAIVERS = ROOT / "sim_tests" / "verilator_waivers.vlt"


@pytest.mark.sim
@pytest.mark.parametrize("config", ["default", pytest.param("wide8x16", marks=pytest.mark.slow)])
def test_system_lints_clean(tmp_path, config):
    if shutil.which("verilator") is None:
        pytest.fail("verilator not found: run make setup")
    subprocess.run([sys.executable, "-m", "rtl_gen", "--config", config, "-o", str(tmp_path), "--unit", "eoq_system"],
                   cwd=ROOT, check=True, capture_output=True)
    lint = subprocess.run(["verilator", "--lint-only", "-Wall", str(WAIVERS), str(tmp_path / "eoq_system.v")],
                          capture_output=True, text=True)
    assert lint.returncode == 0 and "%Warning" not in lint.stderr, lint.stderr[-3000:]
