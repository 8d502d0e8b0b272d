"""`make sim`: the whole cocotb regression, with a pass/fail table per unit and configuration.

    python -m sim_tests.regress [--sim verilator|icarus] [--jobs N] [-k EXPR]

Runs every test marked ``sim`` (quick and slow) through pytest, then reads
the JUnit XML and prints one row per unit with a column per configuration
variant (rounding mode, lanes).  Exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from sim_tests.matrix import BENCHES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "build" / "sim-results.xml"
CASE = re.compile(r"test_unit\[(?P<id>[^\]]+)\]")


def outcomes(path: Path) -> dict[str, str]:
    """test id -> PASS / FAIL / SKIP from a JUnit XML file."""
    result = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        match = CASE.search(case.get("name", ""))
        if not match:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            state = "FAIL"
        elif case.find("skipped") is not None:
            state = "SKIP"
        else:
            state = "PASS"
        result[match["id"]] = state
    return result


def table(results: dict[str, str]) -> str:
    rows = defaultdict(dict)
    for ident, state in results.items():
        unit = next((u for u in sorted(BENCHES, key=len, reverse=True) if ident.startswith(u + "-")), ident)
        rows[unit][ident[len(unit) + 1:]] = state
    columns = sorted({variant for cells in rows.values() for variant in cells})
    width = max([len(c) for c in columns] + [4])
    unit_width = max(len(u) for u in rows) if rows else 4
    lines = [" ".join(["unit".ljust(unit_width)] + [c.ljust(width) for c in columns])]
    for unit in sorted(rows):
        lines.append(" ".join([unit.ljust(unit_width)] + [rows[unit].get(c, "-").ljust(width) for c in columns]))
    passed = sum(s == "PASS" for s in results.values())
    failed = sum(s == "FAIL" for s in results.values())
    lines.append(f"{passed} passed, {failed} failed")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim_tests.regress", description=__doc__.splitlines()[0])
    parser.add_argument("--sim", default=os.environ.get("SIM", "verilator"), choices=("verilator", "icarus"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("-k", default=None, help="pytest -k expression to select tests")
    args = parser.parse_args(argv)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", str(ROOT / "sim_tests"), "-m", "sim", "-n", str(args.jobs),
               f"--junitxml={RESULTS}", "-p", "no:cacheprovider"]
    if args.k:
        command += ["-k", args.k]
    code = subprocess.call(command, cwd=ROOT, env={**os.environ, "SIM": args.sim})
    if RESULTS.exists():
        print()
        print(f"cocotb regression on {args.sim}:")
        print(table(outcomes(RESULTS)))
    return code


if __name__ == "__main__":
    sys.exit(main())
