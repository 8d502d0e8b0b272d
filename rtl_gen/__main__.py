"""``python -m rtl_gen --config NAME -o build/rtl/``: Verilog of every unit plus config.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from golden_model.config import get_config

from .units import UNITS, generate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtl_gen", description=__doc__)
    parser.add_argument("--config", default="default", help="configuration name (golden_model.config.CONFIGS)")
    parser.add_argument("-o", "--out", default="build/rtl", help="output directory")
    parser.add_argument("--unit", action="append", choices=sorted(UNITS),
                        help="unit to emit (repeatable; default: all)")
    parser.add_argument("--lanes", type=int, default=None,
                        help="override the lane count of laned units (default: cfg.lanes)")
    args = parser.parse_args(argv)

    cfg = get_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.unit or list(UNITS):
        lanes = args.lanes if UNITS[name].has_lanes else None
        path = generate(name, cfg, out, lanes)
        print(f"rtl_gen: {path}")
    (out / "config.json").write_text(cfg.to_json() + "\n")
    print(f"rtl_gen: {out / 'config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
