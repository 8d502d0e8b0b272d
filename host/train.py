"""`eoq-train` / `make train`: train the digits network on a target and report.

Targets: ``golden`` (EOQ int8 NumPy golden model) and ``fp32`` (float32
reference).  Prints per-epoch loss and accuracy under a progress bar, writes
the metrics JSON and a PNG of the curves, and prints the metrics JSON as its
last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.train import FloatTarget, GoldenTarget, default_lr_shift, run_training

TARGETS = ("golden", "fp32")
ARCHS = ("mlp", "cnn")


def count_int_macs(arch: str, batch: int, cfg, seed: int = 0) -> int:
    """int8 MACs of one full-batch training step, counted by running one golden step."""
    data = load_digits_split()
    target = GoldenTarget(cfg.replace(max_batch=max(cfg.max_batch, batch)), seed, default_lr_shift(batch, arch), arch)
    target.step(data.train_x[:batch], data.train_y[:batch])
    return target.macs.total


def make_target(name: str, arch: str, cfg, seed: int, lr_shift: int):
    if name == "golden":
        return GoldenTarget(cfg, seed, lr_shift, arch)
    if name == "fp32":
        return FloatTarget(seed, lr_shift, arch)
    if name == "sim" or name.startswith("serial:"):
        raise SystemExit(f"eoq-train: target {name!r} needs the hardware core and host link, which are not "
                         f"built yet (issues 3 and 4); use --target golden or --target fp32")
    raise SystemExit(f"eoq-train: unknown target {name!r}; choose one of {', '.join(TARGETS)}")


def plot_history(history, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [r.loss for r in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss", title="loss")
    ax_acc.plot(epochs, [r.train_accuracy for r in history], marker="o", label="train")
    ax_acc.plot(epochs, [r.test_accuracy for r in history], marker="s", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="eoq-train", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="golden", help="golden | fp32 (sim and serial:PORT come with the core)")
    parser.add_argument("--arch", default="mlp", choices=ARCHS)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr-shift", type=int, default=None,
                        help="learning rate 2**-LR_SHIFT (default: tuned per batch size)")
    parser.add_argument("--config", default="default", help="core configuration name")
    parser.add_argument("--metrics", default="build/metrics.json", help="metrics JSON path (PNG written beside it)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("epochs", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.lr_shift is not None and args.lr_shift < 0:
        parser.error(f"--lr-shift must be >= 0 (learning rate 2**-lr_shift), got {args.lr_shift}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = get_config(args.config)
    except ValueError as error:
        raise SystemExit(f"eoq-train: {error}")
    if args.batch > cfg.max_batch:
        cfg = cfg.replace(max_batch=args.batch) if args.target in ("golden", "fp32") else cfg
    lr_shift = default_lr_shift(args.batch, args.arch) if args.lr_shift is None else args.lr_shift
    target = make_target(args.target, args.arch, cfg, args.seed, lr_shift)
    print(f"eoq-train: target={args.target} arch={args.arch} epochs={args.epochs} batch={args.batch} "
          f"seed={args.seed} lr=2^-{lr_shift} config={cfg.name}", flush=True)
    history, seconds = run_training(target, args.epochs, args.batch, args.seed,
                                    progress=not args.no_progress)
    metrics_path = Path(args.metrics)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    plot_path = metrics_path.with_suffix(".png")
    plot_history(history, plot_path, f"{args.target} {args.arch} batch {args.batch} seed {args.seed}")
    metrics = {
        "target": args.target,
        "arch": args.arch,
        "epochs": args.epochs,
        "batch": args.batch,
        "seed": args.seed,
        "lr_shift": lr_shift,
        "config": cfg.name,
        "test_accuracy": history[-1].test_accuracy,
        "train_accuracy": history[-1].train_accuracy,
        "final_loss": history[-1].loss,
        "train_seconds": round(seconds, 3),
        "int_macs_per_step": count_int_macs(args.arch, args.batch, cfg),
        "history": [vars(r) for r in history],
        "plot": str(plot_path),
    }
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"eoq-train: wrote {metrics_path} and {plot_path}", flush=True)
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
