"""pytest entry of the cocotb regression: one test per (unit, configuration, lanes, rounding mode).

The matrix is sim_tests/matrix.py; each case is built by sim_tests/runner.py
and the cocotb bench module sim_tests.tb_<unit> then runs in it.
Environment: SIM, WAVES (sim_tests/runner.py) and
  EOQ_SEED=N             reproduce a run (the seed is printed by every bench)
Quick subset (not slow): default configuration, both rounding modes of a unit that has two.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the simulator's Python inherits sys.path as PYTHONPATH
    sys.path.insert(0, str(ROOT))

from sim_tests.matrix import BENCHES, CONFIG_NAMES  # noqa: E402
from sim_tests.runner import build, simulator, waves  # noqa: E402
from sim_tests.units import BENCH_UNITS  # noqa: E402


def _cases():
    for unit, (modes, quick_modes) in BENCHES.items():
        variants = [(name, None) for name in CONFIG_NAMES]
        if BENCH_UNITS[unit].has_lanes:
            variants.append(("default", 1))
        for config, lanes in variants:
            for mode in modes:
                quick = config == "default" and lanes is None and mode in quick_modes
                marks = [pytest.mark.sim] + ([] if quick else [pytest.mark.slow])
                ident = "-".join(str(p) for p in (unit, config, f"l{lanes}" if lanes else None, mode) if p)
                yield pytest.param(unit, config, lanes, mode, marks=marks, id=ident)


@pytest.mark.parametrize("unit, config, lanes, mode", list(_cases()))
def test_unit(unit, config, lanes, mode):
    runner, directory = build(unit, config, lanes)
    env = {"EOQ_CONFIG": config, "EOQ_LANES": str(lanes) if lanes else "", "EOQ_MODE": mode or ""}
    if "EOQ_SEED" in os.environ:
        env["EOQ_SEED"] = os.environ["EOQ_SEED"]
    plusargs = ["-fst"] if simulator() == "icarus" and waves() else []
    runner.test(hdl_toplevel=unit, hdl_toplevel_lang="verilog", test_module=f"sim_tests.tb_{unit}", build_dir=directory,
                test_dir=directory, extra_env=env, plusargs=plusargs,
                results_xml=f"results-{mode or 'any'}.xml")
