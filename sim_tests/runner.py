"""Build helper of the cocotb regression: generate a unit's Verilog and compile it once per simulator.

Each (unit, configuration, lanes) is generated with rtl_gen (through the
bench unit registry, sim_tests/units.py) into
build/sim/<unit>-<config>[-l<lanes>]/ and built once per simulator (a stamp
file holding a hash of the Verilog and build options skips rebuilds; a lock
file serialises concurrent pytest-xdist workers).  Environment:
  SIM=verilator|icarus   simulator (default verilator)
  WAVES=1                write waveforms (dump.fst for Verilator, <top>.fst for Icarus)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import warnings
from pathlib import Path

from golden_model.config import get_config
from rtl_gen.units import generate

from .units import BENCH_UNITS

ROOT = Path(__file__).resolve().parents[1]
WAIVERS = ROOT / "sim_tests" / "verilator_waivers.vlt"
BUILD_ROOT = ROOT / "build" / "sim"


def simulator() -> str:
    return os.environ.get("SIM", "verilator")


def waves() -> bool:
    return os.environ.get("WAVES", "") not in ("", "0")


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
        source = generate(BENCH_UNITS[unit], get_config(config), directory / "rtl", lanes)
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
