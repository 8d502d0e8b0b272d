"""`python -m bench` / `make bench`: run the benchmark sections and write one JSON.

Each section is a module in this package with ``run(quick: bool) -> dict``;
its dict is stored under the section's name (so ``golden.batch16.step_seconds``
is ``json["golden"]["batch16"]["step_seconds"]``).  To add a section, write
``bench/<name>.py`` with such a ``run``, import it here and add one line to
:data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy

from bench import cnn, core, golden, host_link, int_loss, link_faults

#: (name, module) of every benchmark section, run in this order.
SECTIONS = [
    ("golden", golden),
    ("int_loss", int_loss),
    ("host_link", host_link),
    ("link_faults", link_faults),
    ("core", core),
    ("cnn", cnn),
]


def section_names() -> list[str]:
    return [name for name, _ in SECTIONS]


def run_sections(names, quick: bool = False) -> dict:
    results = {}
    for name, module in SECTIONS:
        if name not in names:
            continue
        start = time.perf_counter()
        section = module.run(quick=quick)
        if not isinstance(section, dict):
            raise TypeError(f"bench section {name!r} returned {type(section).__name__}, expected dict")
        section["section_seconds"] = round(time.perf_counter() - start, 3)
        results[name] = section
    return results


def flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def format_value(value, seconds: bool = True) -> str:
    """A figure for the table; small ``seconds`` in microseconds, other small figures in scientific form."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        return f"{value * 1e6:.1f} us" if seconds else f"{value:.3e}"
    if abs(value) < 1:
        return f"{value:.4g}"
    return f"{value:,.3f}" if abs(value) < 1e6 else f"{value:.3e}"


def table(results: dict) -> str:
    flat = flatten(results)
    width = max((len(k) for k in flat), default=10)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 16}"]
    for key, value in flat.items():
        shown = format_value(value, seconds="seconds" in key)
        if key.endswith("_seconds") and isinstance(value, float) and abs(value) >= 1e-3:
            shown += " s"
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def metadata(names) -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "sections": list(names),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/bench.json", help="JSON output path (default %(default)s)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only this section (repeatable); sections: {', '.join(section_names())}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or []) - set(section_names()))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(section_names())}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(section_names()))
        return 0
    names = args.only or section_names()
    results = run_sections(names, quick=args.quick)
    document = {"meta": metadata(names), **results}
    if "core" in results:  # the headline figure, at the top level as the issue asks
        document["mac_utilization"] = results["core"]["mac_utilization"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(table(results))
    print(f"bench: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
