"""The arithmetic ablation: each of the core's choices against its WAGE/WAGEUBN alternative.

    python -m bench.ablation [--arch mlp cnn] [--data digits noisy-digits] [--batches 16 1]
                             [--variants core normalized ...] [--seeds 0 1 2] [--epochs N] [--quick]
                             [--out build/ablation.json]
    python -m bench.ablation --merge a.json b.json --out merged.json       # one table of earlier runs

For each data set, network and batch (16 and 1) this trains the FP32 Fixup
reference and the EOQ int8 golden model in every arithmetic variant
(golden_model/arithmetic.py), the same seeds and data order, and writes one
table: final test accuracy (mean and standard deviation over the seeds), the
gap to FP32 in points, and what the variant would cost the core.

Learning rates: 2**-default_lr_shift(batch, arch) (golden_model/train.py) for
FP32 and every variant with the plain update; the normalized update moves a
weight by at most 2**(7 - lr_shift) steps whatever the gradient's size, so it
has its own rule, :func:`normalized_lr_shift` (2**-4 at batch >= 8, 2**-6
below; chosen on noisy digits, seed 0, 3 epochs, from 2**-3 .. 2**-8).
Epochs: ``EPOCHS`` per batch (those of bench/accuracy.py), the same step decay.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from golden_model.arithmetic import Arithmetic
from golden_model.config import get_config
from golden_model.data import DATASETS, load_dataset
from golden_model.flag import FLAG_EXTRA_BITS
from golden_model.train import FloatTarget, GoldenTarget, default_lr_shift, run_training

#: name -> the variant: the core, each switch alone, and WAGEUBN's choices together.
VARIANTS = {
    "core": Arithmetic(),
    "normalized": Arithmetic(update="normalized"),
    "master16": Arithmetic(master_bits=16),
    "flag": Arithmetic(errors="flag"),
    "nearest": Arithmetic(scale="nearest"),
    "mult4": Arithmetic(multiplier_exp=-5),
    "wageubn": Arithmetic(update="normalized", master_bits=16, errors="flag", scale="nearest"),
}
#: what each variant changes in the core (docs/eoq_arithmetic.md, "Arithmetic variants")
HARDWARE_COST = {
    "core": "-",
    "normalized": "none: QUPDATE shifts by lr_shift alone (drops the e_G - e_W subtraction)",
    "master16": "+8 bits per weight (2x weight memory), a 16-bit update adder, a rounding shift for the int8 view",
    "flag": f"+1 flag bit per error element, coarse products shifted by {FLAG_EXTRA_BITS}: "
            f"accumulators +{FLAG_EXTRA_BITS} bits (or a second pass)",
    "nearest": "a comparator of max|x| with ceil(2**(b - 1/2)) per bit length b after the priority encoder",
    "mult4": "none (the multiplier's exponent constant; one fraction bit less)",
    "wageubn": "master16 + flag + nearest",
}
BATCHES = (16, 1)
EPOCHS = {16: 20, 1: 8}
QUICK_EPOCHS = {16: 3, 1: 1}
SEEDS = (0, 1, 2)


def normalized_lr_shift(batch: int) -> int:
    """The normalized update's learning rate 2**-lr_shift: 2**-4 at batch >= 8, 2**-6 below."""
    return 4 if batch >= 8 else 6


def lr_shift_for(variant: str, batch: int, arch: str) -> int:
    return normalized_lr_shift(batch) if VARIANTS[variant].update == "normalized" else default_lr_shift(batch, arch)


def largest_multiplier(model) -> float:
    """The largest Fixup multiplier of a trained model (int8: its value q * 2**exp)."""
    values = [float(p.to_float()[0]) if hasattr(p, "to_float") else float(p[0])
              for name, p in model.params.items() if name.rsplit(".", 1)[-1] == "scale"]
    return max(values)


def accuracies(make, *, epochs: int, batch: int, seeds, data) -> tuple[list[float], list[float], float]:
    """Final test accuracy of ``make(seed)`` per seed, its largest Fixup multiplier, and the seconds taken."""
    start, result, multipliers = time.perf_counter(), [], []
    for seed in seeds:
        target = make(seed)
        history, _ = run_training(target, epochs, batch, seed, data, progress=False, log=None)
        result.append(history[-1].test_accuracy)
        multipliers.append(largest_multiplier(target.model))
    return result, multipliers, time.perf_counter() - start


def measure(*, arch: str, data_name: str, batch: int, epochs: int, seeds, variants, config: str = "default",
            log=print) -> list[dict]:
    """Rows for one data set, network and batch: FP32 first, then each variant."""
    data, cfg = load_dataset(data_name), get_config(config)
    fp32, multipliers, seconds = accuracies(lambda seed: FloatTarget(seed, default_lr_shift(batch, arch), arch, data.format),
                               epochs=epochs, batch=batch, seeds=seeds, data=data)
    base = {"data": data_name, "arch": arch, "batch": batch, "epochs": epochs, "seeds": list(seeds)}
    rows = [{**base, "variant": "fp32", "lr_shift": default_lr_shift(batch, arch), "accuracy": fp32,
             "mean": float(np.mean(fp32)), "std": float(np.std(fp32)), "gap_points": 0.0,
             "hardware_cost": "", "multiplier": multipliers, "seconds": round(seconds, 1)}]
    for name in variants:
        lr_shift = lr_shift_for(name, batch, arch)
        acc, multipliers, seconds = accuracies(lambda seed: GoldenTarget(cfg, seed, lr_shift, arch, data.format,
                                                            arithmetic=VARIANTS[name]),
                                  epochs=epochs, batch=batch, seeds=seeds, data=data)
        rows.append({**base, "variant": name, "arithmetic": VARIANTS[name].label, "lr_shift": lr_shift,
                     "accuracy": acc, "mean": float(np.mean(acc)), "std": float(np.std(acc)),
                     "gap_points": round(100 * (rows[0]["mean"] - float(np.mean(acc))), 2),
                     "hardware_cost": HARDWARE_COST[name], "multiplier": multipliers,
                     "seconds": round(seconds, 1)})
    if log is not None:
        for row in rows:
            log(f"{data_name} {arch} batch {batch:2d} {row['variant']:10s} {100 * row['mean']:6.2f}% "
                f"({', '.join(f'{100 * a:.1f}' for a in row['accuracy'])})  {row['seconds']} s")
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| data | network | batch | epochs | variant | lr | test accuracy (mean ± std) | gap to FP32 | "
             "largest Fixup multiplier | hardware cost |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = "" if r["variant"] == "fp32" else f"{r['gap_points']:+.2f}"
        multiplier = f"{np.mean(r['multiplier']):.2f}" if "multiplier" in r else ""
        lines.append(f"| {r['data']} | {r['arch']} | {r['batch']} | {r['epochs']} | {r['variant']} | "
                     f"2^-{r['lr_shift']} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f} | {gap} | "
                     f"{multiplier} | {r['hardware_cost']} |")
    return "\n".join(lines)


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", choices=("mlp", "cnn"), default=["mlp", "cnn"])
    parser.add_argument("--data", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"default {list(SEEDS)}; --quick: 0")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"the same for every batch; default {EPOCHS}, --quick {QUICK_EPOCHS}")
    parser.add_argument("--quick", action="store_true", help="one seed, few epochs")
    parser.add_argument("--config", default="default")
    parser.add_argument("--out", default="build/ablation.json")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="no training: merge these runs' rows")
    args = parser.parse_args(argv)
    args.seeds = args.seeds if args.seeds is not None else ([0] if args.quick else list(SEEDS))
    return args


def main(argv=None) -> int:
    args = parse(argv)
    schedule = QUICK_EPOCHS if args.quick else EPOCHS
    rows = []
    if args.merge:
        runs = [json.loads(Path(path).read_text()) for path in args.merge]
        rows = [row for run in runs for row in run["rows"]]
        settings = {"merged": {path: run["settings"] for path, run in zip(args.merge, runs)}}
    else:
        for data in args.data:
            for arch in args.arch:
                for batch in args.batches:
                    epochs = args.epochs if args.epochs is not None else schedule.get(batch, schedule[BATCHES[0]])
                    rows += measure(arch=arch, data_name=data, batch=batch, epochs=epochs, seeds=args.seeds,
                                    variants=args.variants, config=args.config)
        settings = {"seeds": args.seeds, "epochs": args.epochs or schedule, "config": args.config,
                    "lr_rule": "default_lr_shift(batch, arch); normalized update: normalized_lr_shift(batch)"}
    print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
