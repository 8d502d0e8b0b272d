"""The batch-size experiment: BN against Fixup in FP32, and EOQ int8, from batch 1 to 32.

    python -m bench.batch_size [--arch mlp cnn] [--data digits noisy-digits] [--batches 1 2 4 8 16 32]
                               [--seeds 0 1 2] [--epochs 8] [--quick] [--out build/batch_size.json]
    python -m bench.batch_size --merge a.json b.json --out merged.json     # one table and PNG of earlier runs

EOQ's claim (arXiv 2105.13890): batch normalization degrades as the batch
shrinks, Fixup without BN does not, so int8 training without BN is the better
fit for small-batch online training.  For each data set, network and batch
size this trains FP32 with BN (golden_model/float_bn.py), FP32 with Fixup
(golden_model/float_ref.py, cnn.py) and the EOQ int8 golden model, the same
data order for all three, and reports the final test accuracy (mean and
standard deviation over the seeds).

Learning rate: 2**-default_lr_shift(batch, arch) for all three methods
(golden_model/train.py: tuned at batch 16 and 1, the nearest tuned setting's
rule elsewhere); the same step decay (halve at 50% and 75% of the epochs); the
same number of epochs at every batch size, so every method sees the same
samples.  Batches above the core's ``max_batch`` run the int8 model on a
configuration with a larger ``max_batch`` (and ``max_dim``/``acc_elements``
for the CNN's pixel rows); a batch that no valid configuration holds is
reported as such, and so is a batch a float reference cannot run (the CNN's
convolution geometry holds at most 31 images, in FP32 as on the core).  Writes the JSON and a PNG (accuracy against batch size,
one line per method, one panel per data set and network).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from golden_model.config import CoreConfig, get_config
from golden_model.data import DATASETS, load_dataset
from golden_model.train import FloatTarget, GoldenTarget, check_fits, default_lr_shift, run_training

BATCHES = (1, 2, 4, 8, 16, 32)
SEEDS = (0, 1, 2)
EPOCHS = 8
QUICK_EPOCHS = 2
METHODS = ("fp32-bn", "fp32-fixup", "eoq-int8")


def config_for_batch(cfg: CoreConfig, batch: int, arch: str) -> tuple[CoreConfig | None, str]:
    """(cfg or a copy sized for ``batch``: max_batch, and for the CNN's pixel rows max_dim and
    acc_elements; "") or (None, why no valid configuration holds the network at that batch)."""
    if batch <= cfg.max_batch:
        return cfg, ""
    scale = -(-batch // cfg.max_batch) if arch == "cnn" else 1
    try:
        wider = cfg.replace(name=f"{cfg.name}_batch{batch}", max_batch=batch, max_dim=cfg.max_dim * scale,
                            acc_elements=cfg.acc_elements * scale)
        check_fits(arch, load_dataset("digits").format, wider, batch)
    except ValueError as error:
        return None, str(error)
    return wider, ""


def make_target(method: str, cfg: CoreConfig, seed: int, lr_shift: int, arch: str, fmt):
    if method == "eoq-int8":
        return GoldenTarget(cfg, seed, lr_shift, arch, fmt)
    return FloatTarget(seed, lr_shift, arch, fmt, norm="bn" if method == "fp32-bn" else "fixup")


def measure(*, arch: str, data_name: str, batches, seeds, epochs: int, cfg: CoreConfig, log=print) -> list[dict]:
    """One row per (method, batch): accuracies per seed, mean, std, seconds."""
    data = load_dataset(data_name)
    rows = []
    for batch in batches:
        lr_shift = default_lr_shift(batch, arch)
        batch_cfg, why = config_for_batch(cfg, batch, arch)
        for method in METHODS:
            row = {"data": data_name, "arch": arch, "method": method, "batch": batch, "lr_shift": lr_shift,
                   "epochs": epochs, "seeds": list(seeds), "accuracy": [], "seconds": 0.0}
            if method == "eoq-int8" and batch_cfg is None:
                row.update(mean=None, std=None, note=why)
                rows.append(row)
                continue
            try:
                for seed in seeds:
                    start = time.perf_counter()
                    target = make_target(method, batch_cfg or cfg, seed, lr_shift, arch, data.format)
                    history, _ = run_training(target, epochs, batch, seed, data, progress=False, log=None)
                    row["accuracy"].append(history[-1].test_accuracy)
                    row["seconds"] += time.perf_counter() - start
            except ValueError as error:          # a reference's own limit (the CNN geometry holds 31 images)
                row.update(accuracy=[], mean=None, std=None, note=str(error))
                rows.append(row)
                continue
            row.update(mean=float(np.mean(row["accuracy"])), std=float(np.std(row["accuracy"])),
                       seconds=round(row["seconds"], 1))
            if log is not None:
                log(f"{data_name} {arch} batch {batch:2d} {method:10s} {100 * row['mean']:6.2f}% "
                    f"({', '.join(f'{100 * a:.1f}' for a in row['accuracy'])})  {row['seconds']} s")
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one line per data set, network and batch; mean +- std (points) per method."""
    lines = ["| data | network | batch | lr | " + " | ".join(METHODS) + " |",
             "|---|---|---|---|" + "---|" * len(METHODS)]
    keys = sorted({(r["data"], r["arch"], r["batch"]) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
    for data, arch, batch in keys:
        cells = []
        for method in METHODS:
            row = next(r for r in rows if (r["data"], r["arch"], r["batch"], r["method"]) == (data, arch, batch, method))
            cells.append("n/a" if row["mean"] is None else f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f}")
        lr = next(r["lr_shift"] for r in rows if (r["data"], r["arch"], r["batch"]) == (data, arch, batch))
        lines.append(f"| {data} | {arch} | {batch} | 2^-{lr} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Accuracy against batch size (log scale), one line per method, one panel per data set and network."""
    panels = sorted({(r["data"], r["arch"]) for r in rows})
    fig = Figure(figsize=(4.2 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (data, arch) in zip(axes[0], panels):
        for method in METHODS:
            points = sorted((r["batch"], r["mean"], r["std"]) for r in rows
                            if (r["data"], r["arch"], r["method"]) == (data, arch, method) and r["mean"] is not None)
            if points:
                b, m, s = zip(*points)
                ax.errorbar(b, 100 * np.array(m), yerr=100 * np.array(s), marker="o", capsize=3, label=method)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{arch}, {data}")
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_size", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", choices=("mlp", "cnn"), default=["mlp", "cnn"])
    parser.add_argument("--data", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"default {list(SEEDS)}; --quick: 0")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {EPOCHS}; --quick: {QUICK_EPOCHS}")
    parser.add_argument("--quick", action="store_true", help="one seed, few epochs")
    parser.add_argument("--config", default="default")
    parser.add_argument("--out", default="build/batch_size.json")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="no training: merge these runs' rows")
    args = parser.parse_args(argv)
    args.seeds = args.seeds if args.seeds is not None else ([0] if args.quick else list(SEEDS))
    args.epochs = args.epochs if args.epochs is not None else (QUICK_EPOCHS if args.quick else EPOCHS)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.merge:
        runs = [json.loads(Path(path).read_text()) for path in args.merge]
        rows = [row for run in runs for row in run["rows"]]
        settings = {"merged": {path: run["settings"] for path, run in zip(args.merge, runs)}}
    else:
        cfg = get_config(args.config)
        rows = [row for data in args.data for arch in args.arch
                for row in measure(arch=arch, data_name=data, batches=args.batches, seeds=args.seeds,
                                   epochs=args.epochs, cfg=cfg)]
        settings = {"seeds": args.seeds, "epochs": args.epochs, "batches": args.batches, "config": args.config,
                    "lr_rule": "2**-default_lr_shift(batch, arch) for every method, step decay at 50% and 75%"}
    print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
