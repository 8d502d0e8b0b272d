"""Resources per block of the core: each block synthesized alone with ``make bitstream``'s yosys script.

    python -m fpga.blocks --config ulx3s [--only loss_engine ...] [--out build/fpga/blocks] [--timing MHZ]

The board build flattens the design, so its report has one total.  Here
every block (:data:`BLOCKS`: the MAC array, each engine, the shared ACC quantizer, the sequencer,
the tensor table, the memories, the data set's memories, the host link) is
converted alone and run through the same script
(fpga.netlist.synthesis_script, ending in ``stat`` instead of a netlist),
and its LUT4, FF, LUT RAM (TRELLIS_DPR16X4, 16 x 4 bits each), MULT18X18D and DP16KD are read
from yosys' statistics.  A block alone is optimized without its neighbours
(no constant crosses its ports), so the blocks add up to about, not
exactly, the flattened total (the MAC array is reported alone and inside the
MatmulEngine, and counted once).  The figures are yosys' cells: LUT4 are
logic LUTs without the carry cells (CCU2C, two LUTs each), where nextpnr's
report counts both.  Writes ``blocks.json`` and ``blocks.md``
in ``<out>/<board>-<device>-<config>/``.

``--timing MHZ`` also places and routes every block alone
(``nextpnr-ecp5 --out-of-context``: no IO buffers, ports left unplaced) at
that clock and adds its Fmax and the start and end of its critical path:
minutes per block instead of the half hour of the whole bitstream, to find
what limits the clock.  A block's ports are timed as if they were
registers outside it, so a path that crosses blocks shows up only in the
board build.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from amaranth.back import rtlil

from golden_model.config import get_config
from hw.acc_quantizer import AccQuantizer
from hw.core import ENGINE_CLASSES, build_engine, engine_name
from hw.data_memory import DataMemory
from hw.host_link import HostLink
from hw.mac_array import MacArray
from hw.memories import DataMemories
from hw.sequencer import Sequencer
from hw.tensor_table import TensorTable

from .build import BOARD_CONFIGS, BuildError, find_tools, get_platform, normalize_device, parse_yosys_stats
from .netlist import TOP, synthesis_script

ROOT = Path(__file__).resolve().parents[1]
BLOCKS_ROOT = ROOT / "build" / "fpga" / "blocks"
_WRITE_NETLIST = "write_verilog -noattr netlist.v"
COLUMNS = ("LUT4", "TRELLIS_FF", "CCU2C", "TRELLIS_DPR16X4", "MULT18X18D", "DP16KD")


#: block name -> its component for a configuration (every engine of hw.core.ENGINE_CLASSES, by its name)
BLOCKS = {
    "mac_array": lambda cfg: MacArray(cfg, overlap=True),      # as the MatmulEngine builds it
    **{engine_name(kind): partial(build_engine, kind) for kind in ENGINE_CLASSES},   # as the core builds them
    "acc_quantizer": AccQuantizer,                              # shared by the QUANT and UPDATE engines
    "sequencer": Sequencer,
    "tensor_table": TensorTable,
    "memories": lambda cfg: DataMemories(cfg, banks=2),
    "data_memory": DataMemory,
    "host_link": HostLink,
}
#: blocks that are also part of another block (reported, not added to the sum)
INSIDE = {"mac_array": "matmul_engine"}


def stat_script(board: str, device: str, lut_mapper: str = "abc") -> str:
    """``make bitstream``'s script for a block: synthesis, then statistics only."""
    script = synthesis_script(board, device, lut_mapper)
    if _WRITE_NETLIST not in script:
        raise BuildError(f"fpga.netlist's script has no '{_WRITE_NETLIST}' line to drop")
    return script.replace(_WRITE_NETLIST, "")


def synthesize_block(name: str, cfg, script: str, directory: Path, yosys: str, platform=None) -> dict:
    """One block's cells (yosys statistics) and seconds; ``platform`` elaborates it (the board's vendor cells)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{TOP}.il").write_text(rtlil.convert(BLOCKS[name](cfg), name=TOP, platform=platform))
    (directory / f"{TOP}.ys").write_text(script)
    start = time.monotonic()
    proc = subprocess.run([yosys, "-q", "-l", f"{TOP}.rpt", f"{TOP}.ys"], cwd=directory, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise BuildError(f"yosys failed on block {name} (exit {proc.returncode}); see {directory / (TOP + '.rpt')}"
                         f"\n{tail}")
    cells = parse_yosys_stats((directory / "stat.txt").read_text())
    return {"cells": cells, "seconds": round(time.monotonic() - start, 1)}


def nextpnr_device_options(platform) -> list[str]:
    """nextpnr-ecp5's device, package and speed options for the platform (as its build script has them)."""
    return [platform._nextpnr_device_options[platform.device], "--package",
            platform._nextpnr_package_options[platform.package].upper(), "--speed", str(platform.speed)]


def time_block(name: str, directory: Path, nextpnr: str, platform, mhz: float, seed: int = 1) -> dict:
    """Place and route the block out of context at ``mhz``: its Fmax and critical path's ends."""
    start = time.monotonic()
    proc = subprocess.run([nextpnr, "--quiet", "--out-of-context", *nextpnr_device_options(platform),
                           "--json", f"{TOP}.json", "--freq", str(mhz), "--timing-allow-fail", "--seed", str(seed),
                           "--threads", "1", "--router", "router2", "--report", "timing.json", "--log", "timing.log"],
                          cwd=directory, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise BuildError(f"nextpnr failed on block {name} (exit {proc.returncode}); see "
                         f"{directory / 'timing.log'}\n{tail}")
    report = json.loads((directory / "timing.json").read_text())
    fmax = min((entry["achieved"] for entry in report.get("fmax", {}).values()), default=None)
    path = (report.get("critical_paths") or [{}])[0].get("path", [])
    ends = [path[0]["from"]["cell"], path[-1]["to"]["cell"]] if path else []
    return {"fmax": fmax, "constraint": mhz, "seed": seed, "path": ends,
            "seconds": round(time.monotonic() - start, 1)}


def table(config: str, blocks: dict) -> str:
    timed = any("timing" in result for result in blocks.values())
    extra = " Fmax MHz (out of context) | critical path |" if timed else ""
    lines = [f"| block ({config}) | " + " | ".join(COLUMNS) + " | yosys s |" + extra,
             "|" + "---|" * (len(COLUMNS) + 2 + 2 * timed)]
    for name, result in blocks.items():
        cells = result["cells"]
        label = f"{name} (in {INSIDE[name]})" if name in INSIDE else name
        row = f"| {label} | " + " | ".join(f"{cells.get(c, 0):,}" for c in COLUMNS) + f" | {result['seconds']} |"
        if timed:
            timing = result.get("timing", {})
            fmax = timing.get("fmax")
            row += f" {fmax:.1f} |" if fmax is not None else " - |"
            row += " " + " -> ".join(f"`{cell}`" for cell in timing.get("path", [])) + " |"
        lines.append(row)
    totals = {c: sum(r["cells"].get(c, 0) for n, r in blocks.items() if n not in INSIDE) for c in COLUMNS}
    lines.append("| sum of the blocks | " + " | ".join(f"{totals[c]:,}" for c in COLUMNS) + " | |" + " | |" * timed)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpga.blocks", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="ulx3s")
    parser.add_argument("--device", default="85F")
    parser.add_argument("--config", default=None, help="golden_model.config.CONFIGS name (default: the board's, "
                                                       "fpga.build.BOARD_CONFIGS)")
    parser.add_argument("--only", nargs="+", choices=sorted(BLOCKS), help="these blocks only")
    parser.add_argument("--out", type=Path, default=BLOCKS_ROOT)
    parser.add_argument("--timing", type=float, metavar="MHZ",
                        help="also place and route each block out of context at this clock: Fmax, critical path")
    parser.add_argument("--seed", type=int, default=1,
                        help="nextpnr's placement seed for --timing (the spread over seeds shows how thin a margin is)")
    args = parser.parse_args(argv)
    if args.timing is not None and not args.timing > 0:
        parser.error(f"--timing {args.timing:g}: the clock to time the blocks at must be positive MHz, e.g. 100")
    args.config = args.config or BOARD_CONFIGS.get(args.board, "default")
    try:
        cfg = get_config(args.config)
        script = stat_script(args.board, args.device) + (f"\nwrite_json {TOP}.json" if args.timing else "")
        tools = find_tools()
        platform = get_platform(args.board, args.device)()
    except (BuildError, ValueError) as error:
        print(f"fpga.blocks: ERROR: {error}", file=sys.stderr)
        return 1
    out = args.out / f"{args.board}-{normalize_device(args.device)}-{args.config}"
    blocks = {}
    for name in args.only or BLOCKS:
        print(f"fpga.blocks: {name} ...", file=sys.stderr, flush=True)
        try:
            blocks[name] = synthesize_block(name, cfg, script, out / name, tools["YOSYS"], platform)
            if args.timing:
                blocks[name]["timing"] = time_block(name, out / name, tools["NEXTPNR_ECP5"], platform, args.timing,
                                                    seed=args.seed)
        except BuildError as error:
            print(f"fpga.blocks: ERROR: {error}", file=sys.stderr)
            return 1
    out.mkdir(parents=True, exist_ok=True)
    (out / "blocks.json").write_text(json.dumps({"config": args.config, "blocks": blocks}, indent=2) + "\n")
    text = table(args.config, blocks)
    (out / "blocks.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
