"""``python -m formal [--quick] [--only NAME ...]``: run the formal checks, one table line each with its time.

Exit status 0 when every check passed, 1 when one failed (its counterexample
trace is in <out>/<name>/job/engine_0/), 2 for a missing tool or a bad name.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .checks import CHECKS, build_design, get_check
from .sby import FormalToolMissing, find_tools, run

OUT = Path("build/formal")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m formal", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the quick checks (what CI runs)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these checks only")
    parser.add_argument("--out", default=str(OUT), help="work directories (default build/formal)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for check in CHECKS:
            print(f"{check.name:<30} {check.mode:<5} depth {check.depth:<3} {'quick' if check.quick else 'slow ':<5} "
                  f"{check.proves}")
        return 0
    try:
        checks = [get_check(name) for name in args.only] if args.only else \
            [check for check in CHECKS if check.quick or not args.quick]
        find_tools()
    except (ValueError, FormalToolMissing) as exc:
        print(f"formal: ERROR: {exc}", file=sys.stderr)
        return 2
    failed = 0
    start = time.monotonic()
    print(f"{'check':<30} {'mode':<5} {'depth':>5} {'result':<7} {'seconds':>8}", flush=True)
    for check in checks:
        outcome = run(build_design(check), mode=check.mode, depth=check.depth, workdir=Path(args.out) / check.name)
        failed += not outcome.passed
        print(f"{check.name:<30} {check.mode:<5} {check.depth:>5} {outcome.status:<7} {outcome.seconds:>8.1f}"
              + (f"  {outcome.detail}" if outcome.detail else ""), flush=True)
    print(f"formal: {len(checks) - failed} passed, {failed} failed in {time.monotonic() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
