"""Accuracy table: EOQ int8 golden model vs the float32 reference on digits.

    python -m bench.accuracy [--arch mlp cnn] [--seeds 0 1 2] [--batch 16 1] [--loss float|int] [--jobs N]
                             [--out build/accuracy.json]

For each network, at batch 16 (20 epochs) and batch 1 (8 epochs, online
training), trains both targets with each seed and prints the mean test
accuracy, the gap in points, and whether the targets hold: the residual MLP
int8 >= 95% and within 1.5 points of FP32, the convolutional ResNet int8 >=
97.5% and within 1.0 point.  int8 test accuracy is by frozen-exponent
inference (golden_model/inference.py).  ``--loss int`` trains the int8
network with the integer output error the core computes
(golden_model/int_loss.py) instead of the host's float softmax; ``--loss
autonomous`` trains it as the core trains alone (``make train``'s default on
sim and serial: the resident data in the epochs' Feistel order, the test
accuracy of the core's own evaluation pass; MLP only).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from golden_model.arithmetic import LOSSES, Arithmetic
from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.train import FloatTarget, GoldenTarget, default_lr_shift, run_training
from host.autonomous import train_autonomous

#: per network: (batch, epochs) settings, and (least int8 accuracy, largest gap to FP32)
SETTINGS = {"mlp": ((16, 20), (1, 8)), "cnn": ((16, 20), (1, 8))}
TARGETS = {"mlp": (0.95, 0.015), "cnn": (0.975, 0.010)}


def train_one(job: tuple) -> tuple[float, float]:
    """(final test accuracy, training seconds) of one (target, arch, config, batch, epochs, seed, loss) run;
    loss "autonomous": the integer loss, trained as the core trains alone (host/autonomous.py, golden device)."""
    name, arch, config, batch, epochs, seed, loss = job
    cfg, lr_shift = get_config(config), default_lr_shift(batch, arch)
    start = time.perf_counter()
    if name == "golden" and loss == "autonomous":
        run = {"dataset": load_digits_split(), "seed": seed, "lr_shift": lr_shift, "batch": batch, "epochs": epochs,
               "target": "golden"}
        outcome = train_autonomous(run, cfg, log=lambda message: None)
        return outcome.history[-1].test_accuracy, time.perf_counter() - start
    target = (GoldenTarget(cfg, seed, lr_shift, arch, arithmetic=Arithmetic(loss=loss)) if name == "golden"
              else FloatTarget(seed, lr_shift, arch))
    history, _ = run_training(target, epochs, batch, seed, load_digits_split(), progress=False, log=None)
    return history[-1].test_accuracy, time.perf_counter() - start


def measure(seeds, settings=None, config: str = "default", arch: str = "mlp", jobs: int = 1,
            loss: str = "float") -> dict:
    """Train every (setting, seed, target) in ``jobs`` processes; the table's rows, one per setting."""
    settings = settings or SETTINGS[arch]
    least, most_gap = TARGETS[arch]
    runs = [(name, arch, config, batch, epochs, seed, loss) for batch, epochs in settings for seed in seeds
            for name in ("golden", "fp32")]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            results = dict(zip(runs, pool.map(train_one, runs)))
    else:
        results = {run: train_one(run) for run in runs}
    rows = []
    for batch, epochs in settings:
        accuracies = {name: [results[(name, arch, config, batch, epochs, seed, loss)][0] for seed in seeds]
                      for name in ("golden", "fp32")}
        seconds = {name: sum(results[(name, arch, config, batch, epochs, seed, loss)][1] for seed in seeds)
                   for name in ("golden", "fp32")}
        golden, fp32 = float(np.mean(accuracies["golden"])), float(np.mean(accuracies["fp32"]))
        rows.append({
            "batch": batch, "epochs": epochs, "lr_shift": default_lr_shift(batch, arch), "seeds": list(seeds),
            "int8_accuracy": accuracies["golden"], "fp32_accuracy": accuracies["fp32"],
            "int8_mean": golden, "fp32_mean": fp32, "gap_points": round(100 * (fp32 - golden), 2),
            "meets_target": golden >= least and fp32 - golden <= most_gap,
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
        })
    return {"config": config, "arch": arch, "loss": loss, "target": {"int8_at_least": least, "gap_at_most": most_gap},
            "rows": rows}


def table(results: list[dict]) -> str:
    lines = ["| network | batch | epochs | lr | EOQ int8 (mean of seeds) | FP32 | gap (points) | target met |",
             "|---|---|---|---|---|---|---|---|"]
    for result, row in ((result, row) for result in results for row in result["rows"]):
        lines.append(f"| {result['arch']} | {row['batch']} | {row['epochs']} | 2^-{row['lr_shift']} | "
                     f"{100 * row['int8_mean']:.2f}% | "
                     f"{100 * row['fp32_mean']:.2f}% | {row['gap_points']:+.2f} | "
                     f"{'yes' if row['meets_target'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", choices=sorted(TARGETS), default=sorted(TARGETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="build/accuracy.json")
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="only these settings' batch sizes")
    parser.add_argument("--loss", choices=(*LOSSES, "autonomous"), default="float",
                        help="the int8 network's output error (golden_model/arithmetic.py LOSSES); autonomous: the "
                             "integer loss as the core trains alone (MLP; the data's order and the test accuracy "
                             "of the core's own evaluation, golden_model/autonomous.py)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="training processes (default: cores)")
    args = parser.parse_args(argv)
    results = []
    for arch in args.arch:
        settings = [setting for setting in SETTINGS[arch] if args.batch is None or setting[0] in args.batch]
        if not settings:
            parser.error(f"--batch {args.batch}: {arch} is measured at batch "
                         f"{', '.join(str(batch) for batch, _ in SETTINGS[arch])}")
        results.append(measure(args.seeds, settings, arch=arch, jobs=args.jobs, loss=args.loss))
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"networks": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if all(row["meets_target"] for result in results for row in result["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
