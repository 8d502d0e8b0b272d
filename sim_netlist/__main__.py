"""``python -m sim_netlist --board ulx3s --config small4x4 --steps 5``: train on the gate-level board netlist.

Synthesizes the netlist (fpga.netlist, make bitstream's yosys script),
compiles it with the ECP5 cell models (sim_netlist.build), opens it as a
simulated board (host.device.SimDevice over the harness' byte pipe) and runs
``--steps`` training steps of the digits ResMLP at batch ``--batch`` through
the host link (host.train.DeviceTarget: the golden ResMLP trains alongside on
the same batches); ``--loss int`` has the core compute the output error
(its LOSS instruction and the loss tables' block-RAM ROMs) instead of the
host.  Then the weights are read back and compared with the golden model's
bit for bit.  Prints one JSON line: steps, bit_exact, the
first step whose loss or logits differed, simulated cycles, wall seconds and
cycles per second; exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fpga.build import BuildError as FpgaBuildError
from fpga.netlist import NETLIST_ROOT, NetlistOptions, synthesize
from golden_model.arithmetic import LOSSES, Arithmetic
from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.train import default_lr_shift
from host.device import SimDevice
from host.train import DeviceTarget
from sim_board.build import BuildError

from .build import build

#: The host waits this long for an answer: the gate-level board runs about 10^3-10^4 cycles per second.
ANSWER_TIMEOUT = 300.0
RUN_TIMEOUT = 3600.0


@dataclass(frozen=True)
class RunOptions:
    """netlist: what to synthesize; steps, batch, seed, loss: the training run."""

    netlist: NetlistOptions = NetlistOptions()
    steps: int = 5
    batch: int = 16
    seed: int = 0
    loss: str = "float"


def run(options: RunOptions, log=print) -> dict:
    """Train ``options.steps`` steps on the netlist's simulated board; the figures as a dict."""
    if options.steps < 1:
        raise ValueError(f"steps must be at least 1, got {options.steps}")
    cfg = get_config(options.netlist.config)
    exe = build(synthesize(options.netlist, log=log), log=log)
    digits = load_digits_split()
    start = time.monotonic()
    device = SimDevice(cfg, exe=exe, timeout=ANSWER_TIMEOUT, run_timeout=RUN_TIMEOUT)
    try:
        target = DeviceTarget(device, cfg, options.seed, default_lr_shift(options.batch), options.batch,
                              arithmetic=Arithmetic(loss=options.loss))
        for step in range(options.steps):
            rows = slice(step * options.batch, (step + 1) * options.batch)
            loss = target.step(digits.train_x[rows], digits.train_y[rows])
            log(f"sim_netlist: step {step + 1}/{options.steps} loss {loss:.4f} "
                f"({time.monotonic() - start:.0f} s)")
        bit_exact, difference = target.compare_weights()
        stats = device.stats
    finally:
        device.close()
    harness = device.harness_stats
    return {
        "board": options.netlist.board, "device": options.netlist.device, "config": cfg.name,
        "netlist": str(exe.parent / "netlist.v"), "steps": options.steps, "batch": options.batch,
        "loss": options.loss,
        "bit_exact": bit_exact and target.first_divergence is None, "difference": difference,
        "first_divergence": target.first_divergence,
        "core_cycles": stats.cycles, "link_bytes": stats.bytes_out + stats.bytes_in,
        "simulated_cycles": harness.get("cycles"), "wall_seconds": round(time.monotonic() - start, 1),
        "cycles_per_second": harness.get("cycles_per_second"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim_netlist", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="ulx3s")
    parser.add_argument("--device", default="85F")
    parser.add_argument("--config", default="small4x4", help="golden_model.config.CONFIGS name")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", choices=sorted(LOSSES), default="float",
                        help="int: the core's LOSS computes the output error (default: the host, in float)")
    parser.add_argument("--out", default=str(NETLIST_ROOT), help="build root (default build/netlist)")
    args = parser.parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    try:
        netlist = NetlistOptions(board=args.board, device=args.device, config=args.config, out=Path(args.out))
        result = run(RunOptions(netlist=netlist, steps=args.steps, batch=args.batch, seed=args.seed,
                                loss=args.loss), log=log)
    except (FpgaBuildError, BuildError, ValueError) as exc:
        print(f"sim_netlist: ERROR: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    if not result["bit_exact"]:
        print(f"sim_netlist: NOT BIT-EXACT: {result['difference'] or 'loss or logits differed at step '}"
              f"{'' if result['difference'] else result['first_divergence']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
