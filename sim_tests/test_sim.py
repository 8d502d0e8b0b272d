"""pytest entry of the cocotb regression: one test per (unit, configuration, lanes, rounding mode).

Each (unit, configuration, lanes) is generated with rtl_gen into
build/sim/<unit>-<config>[-l<lanes>]/ and built once per simulator (a stamp
file holding a hash of the Verilog and build options skips rebuilds; a lock
file serialises concurrent pytest-xdist workers); the cocotb bench module
sim_tests.tb_<unit> then runs in it.  Environment:
  SIM=verilator|icarus   simulator (default verilator)
  WAVES=1                write waveforms (dump.fst for Verilator, <top>.fst for Icarus)
  EOQ_SEED=N             reproduce a run (the seed is printed by every bench)
Quick subset (not slow): default configuration, one rounding mode per unit.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the simulator's Python inherits sys.path as PYTHONPATH
    sys.path.insert(0, str(ROOT))

from golden_model.config import get_config  # noqa: E402
from rtl_gen.units import UNITS, generate  # noqa: E402

WAIVERS = ROOT / "sim_tests" / "verilator_waivers.vlt"
BUILD_ROOT = ROOT / "build" / "sim"
CONFIG_NAMES = ("small4x4", "default", "wide8x16")
MODES = ("nearest", "stochastic")

# unit -> (rounding modes exercised, mode of the quick test)
BENCHES = {
    "random_lanes": ((None,), None),
    "mac_array": ((None,), None),
    "shift_quantizer": (MODES, "nearest"),
    "update_unit": (MODES, "stochastic"),
    "vector_engine": ((None,), None),
    "quant_engine": (MODES, "nearest"),
    "update_engine": (MODES, "stochastic"),
    "matmul_engine": ((None,), None),
    "host_link": ((None,), None),
    "eoq_core": (("quick", "full"), "quick"),  # full adds the 50-step training run
}


def simulator() -> str:
    return os.environ.get("SIM", "verilator")


def waves() -> bool:
    return os.environ.get("WAVES", "") not in ("", "0")


def _cases():
    for unit, (modes, quick_mode) in BENCHES.items():
        variants = [(name, None) for name in CONFIG_NAMES]
        if UNITS[unit].has_lanes:
            variants.append(("default", 1))
        for config, lanes in variants:
            for mode in modes:
                quick = config == "default" and lanes is None and mode == quick_mode
                marks = [pytest.mark.sim] + ([] if quick else [pytest.mark.slow])
                ident = "-".join(str(p) for p in (unit, config, f"l{lanes}" if lanes else None, mode) if p)
                yield pytest.param(unit, config, lanes, mode, marks=marks, id=ident)


def build_dir(unit: str, config: str, lanes: int | None) -> Path:
    return BUILD_ROOT / (f"{unit}-{config}" + (f"-l{lanes}" if lanes else ""))


def build(unit: str, config: str, lanes: int | None):
    """Generate and compile one unit; return (runner, build directory)."""
    with warnings.catch_warnings():  # cocotb 1.8 flags its runner API as experimental
        warnings.simplefilter("ignore", UserWarning)
        from cocotb.runner import get_runner

    sim = simulator()
    directory = build_dir(unit, config, lanes)
    directory.mkdir(parents=True, exist_ok=True)
    runner = get_runner(sim)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        source = generate(unit, get_config(config), directory / "rtl", lanes)
        if sim == "verilator":
            args = [str(WAIVERS)] + (["--trace-fst", "--trace-structs"] if waves() else [])
            sources = [source]
        else:
            # The generated Verilog has no `timescale; give Icarus the cocotb clock's units.
            timescale = directory / "iverilog_cmds.f"
            timescale.write_text("+timescale+1ns/1ps\n")
            # Icarus does not run `always @*` at time 0, so Yosys' combinational blocks
            # stay X until an input changes; `always_comb` (SystemVerilog) does run at 0.
            icarus_source = directory / "rtl" / f"{unit}.icarus.v"
            icarus_source.write_text(source.read_text().replace("always @* begin", "always_comb begin"))
            args, sources = ["-c", str(timescale)], [icarus_source]
            if waves():
                dump = directory / "iverilog_dump.v"
                dump.write_text(
                    f"module iverilog_dump();\ninitial begin\n  $dumpfile(\"{unit}.fst\");\n"
                    f"  $dumpvars(0, {unit});\nend\nendmodule\n")
                sources.append(dump)
                args += ["-s", unit, "-s", "iverilog_dump"]
        digest = hashlib.sha256(b"".join(Path(f).read_bytes() for f in sources) + repr((sim, args)).encode()).hexdigest()
        stamp = directory / f".built-{sim}"
        if not (stamp.exists() and stamp.read_text() == digest):
            stamp.unlink(missing_ok=True)
            runner.build(verilog_sources=sources, hdl_toplevel=unit, build_args=args,
                         build_dir=directory, always=True)
            stamp.write_text(digest)
    return runner, directory


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
