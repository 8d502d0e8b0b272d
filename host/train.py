"""`eoq-train` / `make train`: train the digits network on a target and report.

Targets (host/device.py):
  sim                 the Verilator-simulated core behind the host link (default)
  serial:PORT[@BAUD]  a board on a serial port
  golden              the golden Machine behind the same device API
  fp32                the float32 reference (no device)

On a device target the training step runs as core programs
(golden_model.program.ProgramTrainer over the device), and the golden ResMLP
trains alongside on the same batches: every step's logits are compared, and
at the end the device's weights are read back and compared with the golden
model's; any difference fails the run (exit code 1) naming the first
differing tensor.  ``bit_exact`` in the metrics says whether they agreed.

Prints per-epoch loss and accuracy under a progress bar, writes the metrics
JSON and a PNG of the curves, and prints the metrics JSON as its last line.
Train accuracy is the running accuracy over the epoch's batches (from the
logits every step computes anyway, while the weights still change); the test
set is evaluated once per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.network import ResMLP, quantize_input
from golden_model.program import PARAMS, ProgramTrainer
from golden_model.train import FloatTarget, GoldenTarget, default_lr_shift, run_training

from .device import DeviceNotFound, DeviceStats, is_device_target, open_device
from .client import DeviceError, LinkError

TARGETS = ("sim", "golden", "fp32", "serial:PORT[@BAUD]")
ARCHS = ("mlp", "cnn")


def count_int_macs(arch: str, batch: int, cfg, seed: int = 0) -> int:
    """int8 MACs of one full-batch training step, counted by running one golden step."""
    data = load_digits_split()
    target = GoldenTarget(cfg.replace(max_batch=max(cfg.max_batch, batch)), seed, default_lr_shift(batch, arch), arch)
    target.step(data.train_x[:batch], data.train_y[:batch])
    return target.macs.total


class DeviceTarget:
    """The training step as core programs on a device, with the golden ResMLP alongside.

    ``step`` runs ProgramTrainer.train_step on the device and ResMLP.train_step
    on the same quantized batch, and records the first step whose logits or
    loss differ.  ``train_stats`` sums the device statistics of the steps only.
    """

    def __init__(self, device, cfg, seed: int, lr_shift: int, batch: int):
        self.name = device.target
        self.device, self.cfg = device, cfg
        self.golden = ResMLP(cfg, seed, lr_shift)
        self.trainer = ProgramTrainer(device, self.golden, batch)   # copies the initial weights
        self.steps = self.samples = 0
        self.train_stats = DeviceStats()
        self.first_divergence: int | None = None
        self.last_logits = None

    @property
    def lr_shift(self) -> int:
        return self.golden.lr_shift

    @lr_shift.setter
    def lr_shift(self, value: int) -> None:
        self.golden.lr_shift = self.trainer.lr_shift = value

    @property
    def macs(self):
        return self.golden.macs

    def step(self, pixels, labels):
        x = quantize_input(pixels, self.cfg)
        before = self.device.stats
        loss = self.trainer.train_step(x, labels)
        delta = self.device.stats.minus(before)
        for key, value in delta.to_dict().items():
            setattr(self.train_stats, key, getattr(self.train_stats, key) + value)
        golden_loss = self.golden.train_step(x, labels)
        self.last_logits = self.trainer.last_logits
        if self.first_divergence is None and (loss != golden_loss or
                                              not np.array_equal(self.trainer.last_logits, self.golden.last_logits)):
            self.first_divergence = self.steps
        self.steps += 1
        self.samples += len(labels)
        return loss

    def predict(self, pixels):
        return self.trainer.predict(quantize_input(pixels, self.cfg))

    def compare_weights(self) -> tuple[bool, str]:
        """Read the device's weights back; (identical, description of the first difference)."""
        params = self.trainer.params()
        for name in PARAMS:
            got, want = params[name], self.golden.params[name]
            got_q = np.asarray(got.q).reshape(np.shape(want.q))
            if got.exp != want.exp:
                return False, f"{name}: exponent {got.exp} on the device, {want.exp} in the golden model"
            if not np.array_equal(got_q, want.q):
                diff = np.argwhere(got_q != want.q)
                first = tuple(int(i) for i in diff[0])
                return False, (f"{name}: {len(diff)} of {want.q.size} mantissas differ, first at {first}: "
                               f"device {int(got_q[first])}, golden {int(want.q[first])}")
        return True, ""


def make_target(name: str, arch: str, cfg, seed: int, lr_shift: int, batch: int = 16):
    if name == "fp32":
        return FloatTarget(seed, lr_shift, arch)
    if name == "golden" and arch != "mlp":
        return GoldenTarget(cfg, seed, lr_shift, arch)     # no core programs for the CNN yet
    if is_device_target(name):
        if arch != "mlp":
            raise SystemExit(f"eoq-train: --arch {arch} has no core programs yet; the {name} target trains "
                             f"--arch mlp (use --target golden or fp32 for the CNN)")
        try:
            device = open_device(name, cfg)
        except (DeviceNotFound, LinkError, ValueError) as error:
            raise SystemExit(f"eoq-train: {error}")
        try:
            return DeviceTarget(device, cfg, seed, lr_shift, batch)
        except BaseException:
            device.close()
            raise
    raise SystemExit(f"eoq-train: unknown target {name!r}; choose one of {', '.join(TARGETS)}")


def device_metrics(target, steps: int) -> dict:
    """device_cycles, host_link_bytes and sim-board figures of a device target (None elsewhere)."""
    if not isinstance(target, DeviceTarget):
        return {"device_cycles": None, "host_link_bytes": None}
    total, train = target.device.stats, target.train_stats
    per = max(steps, 1)
    return {
        "device_cycles": {"total": total.cycles, "train_steps": train.cycles, "per_step": train.cycles / per,
                          "runs": total.runs},
        "host_link_bytes": {"in": total.bytes_in, "out": total.bytes_out,
                            "per_step_in": train.bytes_in / per, "per_step_out": train.bytes_out / per,
                            "frames": total.frames, "retries": total.retries},
    }


def plot_history(history, path: Path, title: str) -> None:
    epochs = [r.epoch for r in history]
    fig = Figure(figsize=(9, 3.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r.loss for r in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="mean training loss", title="loss")
    ax_acc.plot(epochs, [r.train_accuracy for r in history], marker="o", label="train")
    ax_acc.plot(epochs, [r.test_accuracy for r in history], marker="s", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="eoq-train", description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="sim", help="sim (default) | golden | fp32 | serial:PORT[@BAUD]")
    parser.add_argument("--arch", default="mlp", choices=ARCHS)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr-shift", type=int, default=None,
                        help="learning rate 2**-LR_SHIFT (default: tuned per batch size)")
    parser.add_argument("--config", default="default", help="core configuration name")
    parser.add_argument("--metrics", default="build/metrics.json", help="metrics JSON path (PNG written beside it)")
    parser.add_argument("--steps", type=int, default=None,
                        help="at most this many training steps per epoch (smoke tests)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
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
        if args.target not in ("golden", "fp32"):
            raise SystemExit(f"eoq-train: --batch {args.batch} exceeds max_batch {cfg.max_batch} of "
                             f"configuration {cfg.name}, which the {args.target} core is built for")
        cfg = cfg.replace(max_batch=args.batch)
    lr_shift = default_lr_shift(args.batch, args.arch) if args.lr_shift is None else args.lr_shift
    print(f"eoq-train: target={args.target} arch={args.arch} epochs={args.epochs} batch={args.batch} "
          f"seed={args.seed} lr=2^-{lr_shift} config={cfg.name}", flush=True)
    target = make_target(args.target, args.arch, cfg, args.seed, lr_shift, args.batch)
    try:
        history, seconds = run_training(target, args.epochs, args.batch, args.seed, progress=not args.no_progress,
                                        train_accuracy="running", max_steps=args.steps)
        bit_exact, difference = None, ""
        if isinstance(target, DeviceTarget):
            bit_exact, difference = target.compare_weights()
            if bit_exact and target.first_divergence is not None:
                bit_exact = False
                difference = f"logits or loss differed from step {target.first_divergence} on"
    except (LinkError, DeviceError) as error:
        raise SystemExit(f"eoq-train: the {args.target} device failed: {error}")
    finally:
        if isinstance(target, DeviceTarget):
            target.device.close()
    steps = getattr(target, "steps", None)
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
        "train_accuracy_mode": "running",
        "steps": steps,
        **device_metrics(target, steps or 0),
        "bit_exact": bit_exact,
        "history": [vars(r) for r in history],
        "plot": str(plot_path),
    }
    if isinstance(target, DeviceTarget) and getattr(target.device, "harness_stats", None):
        hs = target.device.harness_stats
        metrics["sim_board"] = {"cycles": hs.get("cycles"), "wall_seconds": hs.get("wall_seconds"),
                                "cycles_per_second": hs.get("cycles_per_second")}
    if steps:
        metrics["samples_per_second"] = round(target.samples / max(seconds, 1e-9), 2)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"eoq-train: wrote {metrics_path} and {plot_path}", flush=True)
    if bit_exact is False:
        print(f"eoq-train: BIT-EXACT CHECK FAILED on target {args.target}: the device's weights differ from the "
              f"golden model's for seed {args.seed}; first difference: {difference}", file=sys.stderr, flush=True)
    elif bit_exact:
        print(f"eoq-train: bit-exact: the {args.target} device's weights equal the golden model's "
              f"after {steps} steps", flush=True)
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    return 1 if bit_exact is False else 0


if __name__ == "__main__":
    sys.exit(main())
