"""The board's synthesized netlist of EoqSystem, for gate-level simulation (sim_netlist/).

    python -m fpga.netlist --board ulx3s --device 85F --config small4x4    # prints the netlist's path

The yosys script is the one ``make bitstream`` runs: Amaranth's
LatticeECP5Platform for the same board and device renders top.ys with
fpga.build's synthesis overrides (synth_ecp5 up to LUT mapping, the classic
``abc -lut 4:7``, the rest of synth_ecp5), and only its last command changes:
``write_json top.json`` (nextpnr's input) becomes ``write_verilog -noattr``
(the netlist of ECP5 cells: LUT4, CCU2C, PFUMX, L6MUX21, TRELLIS_FF,
TRELLIS_DPR16X4, DP16KD, MULT18X18D).

What differs from the bitstream's netlist: the top is ``EoqSystem`` (the
host link and the core, byte streams outside), not fpga.top.UlxTop, so the
PLL, the UART receiver and transmitter, the 16-byte RX FIFO, the reset
synchronizer and the LEDs are not in it, and yosys optimizes the design
without them (the same RTL, a separate synthesis run).  The byte streams
are what the simulated board's harness (sim_board/harness.cpp) drives.

Outputs in build/netlist/<board>-<device>-<config>/: top.il, top.ys, the
yosys log top.rpt, stat.txt and netlist.v; yosys is skipped when top.il and
top.ys are unchanged (netlist.key).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import Module
from amaranth.back import rtlil

from golden_model.config import get_config
from hw.system import EoqSystem

from .build import BuildError, find_tools, get_platform, normalize_device, synth_overrides, tool_environment

ROOT = Path(__file__).resolve().parents[1]
NETLIST_ROOT = ROOT / "build" / "netlist"
#: The module name of the netlist's top (the build plan's name).
TOP = "top"
_WRITE_JSON = f"write_json {TOP}.json"


@dataclass(frozen=True)
class NetlistOptions:
    """board, device, config: as for fpga.build; lut_mapper: yosys' LUT mapping; out: the build root."""

    board: str = "ulx3s"
    device: str = "85F"
    config: str = "small4x4"
    lut_mapper: str = "abc"
    out: Path = NETLIST_ROOT
    resynth: bool = False


def netlist_dir(options: NetlistOptions) -> Path:
    return Path(options.out) / f"{options.board}-{normalize_device(options.device)}-{options.config}"


def synthesis_script(board: str, device: str, lut_mapper: str) -> str:
    """``make bitstream``'s top.ys for ``board``/``device``, ending in write_verilog instead of write_json."""
    platform = get_platform(board, device)()
    env = find_tools()
    with tool_environment(env):                  # prepare() checks the tools through these variables
        plan = platform.prepare(Module(), name=TOP, **synth_overrides(lut_mapper))
    script = plan.files[f"{TOP}.ys"]
    if _WRITE_JSON not in script:
        raise BuildError(f"the platform's {TOP}.ys has no '{_WRITE_JSON}' line to replace (Amaranth changed?)")
    return script.replace(_WRITE_JSON, "tee -q -o stat.txt stat\nwrite_verilog -noattr netlist.v")


def synthesize(options: NetlistOptions, log=print) -> Path:
    """Write (or reuse) the netlist of ``options.config``'s EoqSystem; returns netlist.v."""
    cfg = get_config(options.config)
    script = synthesis_script(options.board, options.device, options.lut_mapper)
    out = netlist_dir(options)
    out.mkdir(parents=True, exist_ok=True)
    design = rtlil.convert(EoqSystem(cfg), name=TOP, platform=get_platform(options.board, options.device)())
    key = hashlib.sha256((design + script).encode()).hexdigest()
    netlist, stamp = out / "netlist.v", out / "netlist.key"
    if not options.resynth and netlist.exists() and stamp.exists() and stamp.read_text().strip() == key:
        return netlist
    (out / f"{TOP}.il").write_text(design)
    (out / f"{TOP}.ys").write_text(script)
    yosys = find_tools()["YOSYS"]
    log(f"fpga.netlist: synthesizing {options.config} for {options.board} {normalize_device(options.device)} "
        f"with make bitstream's script (yosys, 1-4 min; log {out / (TOP + '.rpt')})")
    start = time.monotonic()
    proc = subprocess.run([yosys, "-q", "-l", f"{TOP}.rpt", f"{TOP}.ys"], cwd=out, capture_output=True, text=True)
    if proc.returncode != 0 or not netlist.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(f"yosys failed (exit {proc.returncode}); see {out / (TOP + '.rpt')}\n{tail}")
    stamp.write_text(key + "\n")
    log(f"fpga.netlist: netlist written in {time.monotonic() - start:.0f} s: {netlist}")
    return netlist


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpga.netlist", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="ulx3s")
    parser.add_argument("--device", default="85F", help="12F, 25F, 45F or 85F")
    parser.add_argument("--config", default="small4x4", help="golden_model.config.CONFIGS name")
    parser.add_argument("--lut-mapper", default="abc", help="as for fpga.build")
    parser.add_argument("--resynth", action="store_true", help="run yosys even if the design is unchanged")
    args = parser.parse_args(argv)
    try:
        path = synthesize(NetlistOptions(board=args.board, device=args.device, config=args.config,
                                         lut_mapper=args.lut_mapper, resynth=args.resynth),
                          log=lambda message: print(message, file=sys.stderr, flush=True))
    except (BuildError, ValueError) as exc:
        print(f"fpga.netlist: ERROR: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
