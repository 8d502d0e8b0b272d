"""Bench section ``link_faults``: training throughput on the simulated board against the host-link fault rate.

For each rate of :data:`RATES` (faults per frame, host/faults.py: flipped
bits, dropped, duplicated and truncated frames and stalls, in both
directions, generator seed 0) it trains ``steps`` steps of the digits ResMLP
(batch 16) on the sim target with the golden model alongside
(host/device_target.py) and reports the training throughput (samples per
wall second, and its ratio to the fault-free run), the faults injected, the
retries, the resent and flushed bytes, and whether the device's weights
still equal the golden model's.  What a fault costs is mostly waiting: a
lost answer costs the client's answer timeout (0.5 s on the sim target).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.train import default_lr_shift
from host.device import open_device
from host.device_target import DeviceTarget

RATES = (0.0, 1e-4, 1e-3, 1e-2)
BATCH = 16


def measure(rate: float, steps: int, config: str = "default", seed: int = 0) -> dict:
    """``steps`` training steps on the sim target at ``rate`` faults per frame (after one warm-up step)."""
    cfg = get_config(config)
    data = load_digits_split()
    options = {"link_faults": rate, "fault_seed": seed} if rate else {}
    device = open_device("sim", cfg, log=lambda message: print(message, file=sys.stderr), **options)
    try:
        target = DeviceTarget(device, cfg, seed, default_lr_shift(BATCH), BATCH)
        batches = [slice(i * BATCH % 1424, i * BATCH % 1424 + BATCH) for i in range(steps + 1)]
        target.step(data.train_x[batches[0]], data.train_y[batches[0]])
        before = device.stats
        start = time.perf_counter()
        for rows in batches[1:]:
            target.step(data.train_x[rows], data.train_y[rows])
        seconds = time.perf_counter() - start
        delta = device.stats.minus(before)
        bit_exact, difference = target.compare_weights()
        faults = device.faults.counts.to_dict() if device.faults else {"total": 0, "frames": None}
    finally:
        device.close()
    return {
        "rate_per_frame": rate,
        "steps": steps,
        "samples_per_second": round(steps * BATCH / seconds, 2),
        "step_seconds": seconds / steps,
        "faults_injected": faults["total"],
        "frames": delta.frames,
        "retries": delta.retries,
        "resent_bytes": delta.resent_bytes,
        "resyncs": delta.resyncs,
        "flush_bytes": delta.flush_bytes,
        "bit_exact": bit_exact and target.first_divergence is None,
        "difference": difference,
    }


def run(quick: bool = False, steps: int | None = None, config: str = "default") -> dict:
    steps = steps or (8 if quick else 150)
    result = {"batch": BATCH, "steps_per_rate": steps, "rates": {}}
    for rate in RATES:
        result["rates"][f"{rate:g}"] = measure(rate, steps, config)
    clean = result["rates"]["0"]["samples_per_second"]
    for figures in result["rates"].values():
        figures["throughput_vs_no_faults"] = round(figures["samples_per_second"] / clean, 3)
    result["all_bit_exact"] = all(f["bit_exact"] for f in result["rates"].values())
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.link_faults", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--config", default="default")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.quick, args.steps, args.config), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
