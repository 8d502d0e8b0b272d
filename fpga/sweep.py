"""Build a list of configurations x clock targets x nextpnr seeds and write one table.

    python -m fpga.sweep --configs ulx3s small4x4 --freqs 30 40 [--seeds 1 2 3] [--jobs 2] [--out build/fpga/sweep]

Each point is one ``fpga.build`` (its own build directory, ``<board>-<device>-<config>-<MHz>MHz-s<seed>``);
a point that does not fit or misses timing is a row too.  Writes ``sweep.json`` (every report) and
``sweep.md`` (the table: MACs, LUT4, FF, MULT18X18D, DP16KD, routed Fmax, met, build minutes, and GMAC/s
at the achieved clock, the Fmax spread over the seeds where several were built).  ``--jobs N`` builds N points
at once (each its own process; the table keeps the list's order and is rewritten as each point finishes);
``--timeout MIN`` gives up on a point's tool step after MIN minutes (a router that does not converge);
``--merge A/sweep.json B/sweep.json`` tabulates earlier sweeps without building.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from golden_model.config import get_config

from .build import BOARD_CONFIGS, DEFAULT_SEED, BuildError, BuildOptions, build

#: The keys of a row (``row``), which ``--merge`` checks in the files it reads.
ROW_KEYS = ("config", "macs", "freq_mhz", "seed", "LUT4", "TRELLIS_FF", "MULT18X18D", "DP16KD", "fmax_mhz", "met",
            "minutes", "gmacs", "error")
COLUMNS = ("config", "MACs", "clock MHz", "seed", "LUT4", "FF", "MULT18X18D", "DP16KD", "Fmax MHz", "met",
           "build min", "GMAC/s")


def point(config: str, freq: float, seed: int, *, board: str, device: str, out: Path, threads: int,
          timeout_min: float | None = None) -> dict:
    """One build's row (BuildError: the failure report's figures and the error)."""
    name = f"{board}-{device}-{config}-{freq:g}MHz-s{seed}"
    options = BuildOptions(board=board, device=device, config=config, freq_mhz=freq, out=out, name=name,
                           seed=seed, threads=threads, timeout_min=timeout_min)
    try:
        report, error = build(options), None
    except BuildError as failure:
        saved = out / name / "fpga_report.json"
        report, error = (json.loads(saved.read_text()) if saved.exists() else {}), str(failure).splitlines()[0]
    return row(config, freq, seed, report, error)


def row(config: str, freq: float, seed: int, report: dict, error: str | None) -> dict:
    """The table's row of one build report."""
    cfg = get_config(config)
    resources = report.get("resources", {})
    used = {name: resources.get(name, {}).get("used") for name in ("LUT4", "TRELLIS_FF", "MULT18X18D", "DP16KD")}
    for name, count in report.get("yosys_cells", {}).items():      # a build that stopped before nextpnr
        if name in ("MULT18X18D", "DP16KD") and used[name] is None:
            used[name] = count
    # a build that stopped before routing logged at most nextpnr's placement estimate: no Fmax
    clocks = [] if "failed_step" in report else report.get("clocks", [])
    fmax = min((c["achieved_mhz"] for c in clocks), default=None)
    met = bool(report.get("timing_met")) and error is None
    return {"config": config, "macs": cfg.num_pes, "freq_mhz": freq, "seed": seed, **used, "fmax_mhz": fmax,
            "met": met, "minutes": round(report["seconds"] / 60, 1) if "seconds" in report else None,
            "gmacs": round(cfg.num_pes * min(fmax, freq) / 1e3, 2) if fmax else None, "error": error}


def outcome(error: str | None) -> str:
    """The met column of a build that did not meet timing: missed, did not fit, gave up, or failed."""
    if error is None or error.startswith("timing not met"):
        return "no"
    if "does not fit" in error:
        return "does not fit"
    if "did not finish" in error:
        return "gave up (--timeout)"
    return "failed"


def table(rows: list[dict]) -> str:
    """Markdown table of the rows, then the Fmax spread of each (config, clock) over its seeds."""
    def cell(value):
        return "-" if value is None else (f"{value:,}" if isinstance(value, int) and not isinstance(value, bool)
                                          else str(value))

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        met = "yes" if r["met"] else outcome(r["error"])
        values = (r["config"], r["macs"], r["freq_mhz"], r["seed"], r["LUT4"], r["TRELLIS_FF"], r["MULT18X18D"],
                  r["DP16KD"], r["fmax_mhz"], met, r["minutes"], r["gmacs"])
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    spread = {}                 # seeds pool only within one source commit (a --merge may hold several)
    for r in rows:
        if r["fmax_mhz"] is not None:
            spread.setdefault((r.get("commit"), r["config"], r["freq_mhz"]), []).append(r["fmax_mhz"])
    for (commit, config, freq), fmaxes in spread.items():
        if len(fmaxes) > 1:
            at = f" ({commit})" if commit else ""
            lines.append(f"\n{config}{at} at {freq:g} MHz: Fmax {min(fmaxes):.2f} to {max(fmaxes):.2f} MHz over "
                         f"{len(fmaxes)} seeds")
    return "\n".join(lines)


def merge(sources: list[Path], out: Path) -> int:
    """One table of earlier sweeps' rows (their sweep.json files, in the order given); the Fmax spread
    pools seeds of one source commit only."""
    rows = []
    for source in sources:
        try:
            loaded = json.loads(source.read_text())
            if not isinstance(loaded, list) or not all(isinstance(r, dict) and set(ROW_KEYS) <= r.keys()
                                                       for r in loaded):
                raise ValueError("not a list of sweep rows")
        except (OSError, ValueError) as error:
            print(f"fpga.sweep: cannot read {source} ({error}): give the sweep.json a sweep wrote",
                  file=sys.stderr)
            return 2
        rows += loaded
    write(rows, out)
    return 0 if all(r["met"] for r in rows) else 1


def source_commit() -> str | None:
    """The tree the sweep builds, as ``git describe --always --dirty`` (None outside a git checkout)."""
    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                   cwd=Path(__file__).parent)
    except OSError:
        return None
    if described.returncode != 0:
        return None
    return described.stdout.strip() or None


def write(rows: list[dict], out: Path) -> None:
    """``out/sweep.json`` (the rows) and ``out/sweep.md`` (their table)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "sweep.md").write_text(table(rows) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpga.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="ulx3s")
    parser.add_argument("--device", default="85F")
    parser.add_argument("--configs", nargs="+", default=None, help="CONFIGS names (default: the board's)")
    parser.add_argument("--freqs", nargs="+", type=float, help="core clocks in MHz")
    parser.add_argument("--seeds", nargs="+", type=int, default=[DEFAULT_SEED],
                        help=f"nextpnr placement seeds (default {DEFAULT_SEED}, fpga.build's)")
    parser.add_argument("--threads", type=int, default=1, help="nextpnr threads per build")
    parser.add_argument("--jobs", type=int, default=1, help="builds at once (each a process)")
    parser.add_argument("--timeout", type=float, default=None, metavar="MIN",
                        help="give up on a point's tool step after MIN minutes (a row that says so)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="no builds: one table of earlier sweeps' sweep.json files")
    parser.add_argument("--out", default="build/fpga/sweep")
    args = parser.parse_args(argv)
    if args.merge:
        return merge([Path(name) for name in args.merge], Path(args.out))
    if not args.freqs:
        parser.error("give the clocks to build (--freqs MHZ ...), or --merge earlier sweeps' sweep.json")
    configs = args.configs or [BOARD_CONFIGS.get(args.board, "default")]
    try:
        for config in configs:
            get_config(config)
    except ValueError as error:
        parser.error(str(error))
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1 (the number of builds at once)")
    if args.timeout is not None and args.timeout <= 0:
        parser.error(f"--timeout {args.timeout:g}: give a positive number of minutes (or leave it out: no limit)")
    out = Path(args.out)
    points = [(config, freq, seed) for config in configs for freq in args.freqs for seed in args.seeds]
    commit, done = source_commit(), {}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(point, *p, board=args.board, device=args.device, out=out, threads=args.threads,
                               timeout_min=args.timeout): p for p in points}
        for future in as_completed(futures):
            config, freq, seed = finished = futures[future]
            done[finished] = {**future.result(), "commit": commit}
            print(f"fpga.sweep: {config} at {freq:g} MHz, seed {seed}: done ({len(done)} of {len(points)})",
                  flush=True)
            rows = [done[p] for p in points if p in done]
            write(rows, out)
    print(table(rows))
    print(f"fpga.sweep: wrote {out / 'sweep.json'} and {out / 'sweep.md'}")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
