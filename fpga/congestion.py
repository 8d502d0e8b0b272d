"""Where the router's overuse is: nextpnr router2's heatmaps summed by block, by net and by chip region.

    python -m fpga.congestion build/fpga/ulx3s-85F-ulx3s [--iteration N] [--top 15]

``python -m fpga.build --heatmap`` runs nextpnr with ``--router2-heatmap heat/router2``, which writes, for
every router iteration i, ``router2_congestion_by_net_<i>.csv`` (net name, overuse: the wires it shares
with another net) and ``router2_congestion_by_coordinate_<i>.csv`` (overuse per tile).  This sums a
chosen iteration (the last by default) per block of the design hierarchy (``system.core.update_engine``
...), lists the worst nets, and prints the chip as a coarse grid, so a build that does not route says
which logic the wires pile up around.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

HEATMAP_DIR = "heat"
HEATMAP_PREFIX = "router2"
_NET_FILE = re.compile(rf"{HEATMAP_PREFIX}_congestion_by_net_(\d+)\.csv$")


def iterations(build_dir: Path) -> list[int]:
    """Router iterations with a per-net heatmap in ``build_dir``, in order."""
    heat = Path(build_dir) / HEATMAP_DIR
    found = [int(m.group(1)) for p in heat.glob("*.csv") if (m := _NET_FILE.search(p.name))]
    return sorted(found)


def block_of(net: str, depth: int = 3) -> str:
    """The hierarchy block a net belongs to: its first ``depth`` dotted names (top-level nets as they are)."""
    parts = net.split(".")
    return ".".join(parts[:depth]) if len(parts) > 1 else net


def net_overuse(build_dir: Path, iteration: int) -> Counter:
    """Overuse per net at one iteration."""
    path = Path(build_dir) / HEATMAP_DIR / f"{HEATMAP_PREFIX}_congestion_by_net_{iteration}.csv"
    overuse = Counter()
    for line in path.read_text().splitlines():
        name, _, value = line.rpartition(",")
        if name:
            overuse[name] += int(value)
    return overuse


def coordinate_overuse(build_dir: Path, iteration: int) -> list[list[int]]:
    """Overuse per tile at one iteration, as nextpnr writes it (one CSV row per x, one column per y)."""
    path = Path(build_dir) / HEATMAP_DIR / f"{HEATMAP_PREFIX}_congestion_by_coordinate_{iteration}.csv"
    return [[int(v) for v in line.rstrip(",").split(",") if v != ""] for line in path.read_text().splitlines()]


def coarse_grid(grid: list[list[int]], cell: int) -> list[list[int]]:
    """Sum ``grid`` over ``cell`` x ``cell`` squares."""
    rows, cols = len(grid), max(map(len, grid), default=0)
    return [[sum(grid[r][c] for r in range(r0, min(r0 + cell, rows)) for c in range(c0, min(c0 + cell, len(grid[r]))))
             for c0 in range(0, cols, cell)] for r0 in range(0, rows, cell)]


def summary(build_dir: Path, iteration: int | None = None, top: int = 15, depth: int = 3, cell: int = 8) -> str:
    """A text report of one iteration's congestion (the last one with a heatmap unless given)."""
    found = iterations(build_dir)
    if not found:
        raise FileNotFoundError(f"no router2 heatmaps in {Path(build_dir) / HEATMAP_DIR}: build with "
                                f"`python -m fpga.build --heatmap` (router2 only)")
    if iteration is None:
        iteration = found[-1]
    elif iteration not in found:
        raise FileNotFoundError(f"no heatmap for router iteration {iteration} in {build_dir}; "
                                f"iterations {found[0]}..{found[-1]} have one")
    nets = net_overuse(build_dir, iteration)
    total = sum(nets.values())
    blocks = Counter()
    for name, value in nets.items():
        blocks[block_of(name, depth)] += value
    trend = ", ".join(f"{i}: {sum(net_overuse(build_dir, i).values()):,}" for i in found)
    lines = [f"overuse by router iteration: {trend}", "",
             f"router iteration {iteration}: overuse {total:,} over {sum(1 for v in nets.values() if v):,} nets",
             "", "by block:"]
    lines += [f"  {value:8,}  {100 * value / max(total, 1):5.1f} %  {name}" for name, value in blocks.most_common(top)]
    lines += ["", "worst nets:"]
    lines += [f"  {value:8,}  {name}" for name, value in nets.most_common(top)]
    grid = coarse_grid(coordinate_overuse(build_dir, iteration), cell)
    lines += ["", f"by chip region ({cell}x{cell} tiles per entry; rows are x, columns y):"]
    lines += ["  " + " ".join(f"{v:5d}" for v in row) for row in grid]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fpga.congestion", description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", type=Path, help="a build directory of `python -m fpga.build --heatmap`")
    parser.add_argument("--iteration", type=int, default=None, help="router iteration (default: the last)")
    parser.add_argument("--top", type=int, default=15, help="blocks and nets to list")
    parser.add_argument("--depth", type=int, default=3, help="hierarchy levels that name a block")
    args = parser.parse_args(argv)
    try:
        print(summary(args.build_dir, args.iteration, args.top, args.depth))
    except FileNotFoundError as exc:
        print(f"fpga.congestion: ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
