"""`eoq-train` / `make train`: train the residual MLP or the Fixup ResNet (--arch) on a target and report.

Targets (host/device.py):
  sim                 the Verilator-simulated core behind the host link (default)
  serial:PORT[@BAUD]  a board on a serial port
  golden              the golden Machine behind the same device API
  fp32                the float32 reference (no device)

On a device target the training step runs as core programs
(host/device_target.py), and the golden network trains alongside on the same
batches: every step's logits are compared, and at the end the device's
weights are read back and compared with the golden model's; any difference
fails the run (exit code 1) naming the first differing tensor.  ``bit_exact``
in the metrics says whether they agreed.

--data FILE.npz trains on the user's own data (golden_model/data.py:
load_npz); the network's input and class count follow it.  --save FILE
writes the trained weights and the frozen inference exponents at the end;
--load FILE starts from such a file (its arch, configuration and data
format; training continues bit for bit with a run that never stopped).
eoq-predict (host/predict.py) runs inference with a saved file.

--link-faults RATE injects faults on the host link (host/faults.py; RATE per
frame); the metrics count them, the retries and the resent bytes.
--checkpoint DIR writes the run's full state to DIR/state.npz at the start,
at every epoch's end and on Ctrl-C; --resume DIR continues it (the run's
settings come from the checkpoint; ones given again must agree).  A device
reset under the trainer is reloaded from the last checkpoint
(host/session.py).  Output paths and the configuration are checked before
any work starts (host/preflight.py).

Prints per-epoch loss and accuracy under a progress bar, writes the metrics
JSON and a PNG of the curves, and prints the metrics JSON as its last line.
Train accuracy is the running accuracy over the epoch's batches; the test
set is evaluated once per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matplotlib.figure import Figure
from tqdm import tqdm

from dataclasses import asdict

from golden_model.arithmetic import LOSSES, Arithmetic
from golden_model.autonomous import plan_sets
from golden_model.config import get_config
from golden_model.train import FloatTarget, GoldenTarget, default_lr_shift

from .autonomous import train_autonomous
from .checkpoint import CheckpointError, check_run, load, load_file, save_file, state_path
from .client import DeviceError, LinkError
from .device import DeviceNotFound, is_device_target, open_device
from .device_target import DeviceTarget
from .preflight import InputError, check_writable_directory, check_writable_file, fit_configuration, load_data
from .session import Interrupted, ResetWithoutCheckpoint, Session, capture, start_from

TARGETS = ("sim", "golden", "fp32", "serial:PORT[@BAUD]")
ARCHS = ("mlp", "cnn")
#: Settings that define a run, with their defaults (lr_shift None: tuned per batch and arch).
DEFAULTS = {"target": "sim", "arch": "mlp", "epochs": 20, "batch": 16, "seed": 0, "lr_shift": None,
            "config": "default", "steps": None, "data": None, "loss": "float"}
#: Settings a --load file fixes (the network it holds).
LOADED = ("arch", "config", "seed", "data")
EXIT_INTERRUPTED = 130


def count_int_macs(arch: str, batch: int, cfg, data, seed: int = 0) -> int | None:
    """int8 MACs of one full-batch training step, counted by running one golden step (None: the
    integer network does not fit the batch, e.g. an fp32 run at a batch no core configuration holds)."""
    try:
        target = GoldenTarget(cfg.replace(max_batch=max(cfg.max_batch, batch)), seed, default_lr_shift(batch, arch),
                              arch, data.format)
    except ValueError:
        return None
    target.step(data.train_x[:batch], data.train_y[:batch])
    return target.macs.total


def make_target(name: str, arch: str, cfg, seed: int, lr_shift: int, batch: int = 16, link_faults: float = 0.0,
                fmt=None, *, loss: str = "float"):
    fmt = fmt or load_data(None).format
    if name == "fp32":
        if loss != "float":
            raise SystemExit(f"eoq-train: the fp32 target computes its loss in float; --loss {loss} is for the "
                             f"int8 targets (sim, golden, serial:PORT)")
        return FloatTarget(seed, lr_shift, arch, fmt)
    if is_device_target(name):
        options = {"link_faults": link_faults, "fault_seed": seed} if link_faults else {}
        try:
            device = open_device(name, cfg, **options)
        except (DeviceNotFound, LinkError, ValueError) as error:
            raise SystemExit(f"eoq-train: {error}")
        try:
            return DeviceTarget(device, cfg, seed, lr_shift, batch, arch, fmt, arithmetic=Arithmetic(loss=loss))
        except BaseException:
            device.close()
            raise
    raise SystemExit(f"eoq-train: unknown target {name!r}; choose one of {', '.join(TARGETS)}")


def device_metrics(target, steps: int) -> dict:
    """device_cycles, host_link_bytes and the injected faults of a device target (None elsewhere)."""
    if not isinstance(target, DeviceTarget):
        return {"device_cycles": None, "host_link_bytes": None}
    total, train = target.total_stats(), target.train_stats
    per = max(steps, 1)
    metrics = {
        "device_cycles": {"total": total.cycles, "train_steps": train.cycles, "per_step": train.cycles / per,
                          "runs": total.runs},
        "host_link_bytes": {"in": total.bytes_in, "out": total.bytes_out,
                            "per_step_in": train.bytes_in / per, "per_step_out": train.bytes_out / per,
                            "frames": total.frames, "retries": total.retries, "resent_bytes": total.resent_bytes,
                            "resyncs": total.resyncs, "flush_bytes": total.flush_bytes},
    }
    faults = getattr(target.device, "faults", None)
    if faults is not None:
        metrics["link_faults"] = {"rate": faults.rate, "per": "frame", "seed": target.device.fault_seed,
                                  **faults.counts.to_dict()}
    return metrics


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
    parser.add_argument("--target", default=None, help="sim (default) | golden | fp32 | serial:PORT[@BAUD]")
    parser.add_argument("--arch", default=None, choices=ARCHS, help="mlp (default) | cnn")
    parser.add_argument("--epochs", type=int, default=None, help="default 20")
    parser.add_argument("--batch", type=int, default=None, help="default 16")
    parser.add_argument("--seed", type=int, default=None, help="default 0")
    parser.add_argument("--lr-shift", type=int, default=None,
                        help="learning rate 2**-LR_SHIFT (default: tuned per batch size)")
    parser.add_argument("--config", default=None, help="core configuration name (default: default)")
    parser.add_argument("--metrics", default="build/metrics.json", help="metrics JSON path (PNG written beside it)")
    parser.add_argument("--steps", type=int, default=None,
                        help="at most this many training steps per epoch (smoke tests)")
    parser.add_argument("--link-faults", type=float, default=0.0, metavar="RATE",
                        help="inject host-link faults: probability per frame (sim and serial targets)")
    parser.add_argument("--checkpoint", default=None, metavar="DIR",
                        help="write the run's state to DIR/state.npz at every epoch and on Ctrl-C")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue the run checkpointed in DIR")
    parser.add_argument("--data", default=None, metavar="FILE.npz",
                        help="train on your own data: x_train, y_train, x_test, y_test (docs: README)")
    parser.add_argument("--save", default=None, metavar="FILE", help="write the trained weights to FILE at the end")
    parser.add_argument("--load", default=None, metavar="FILE", help="start from weights saved with --save")
    parser.add_argument("--loss", default=None, choices=LOSSES,
                        help="output error: float (softmax on the host, default) | int (the integer algorithm the "
                             "core runs, golden_model/int_loss.py)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--autonomous", action="store_true",
                      help="the core trains whole epochs alone: the data resident on it, one LOOP per epoch, the "
                           "integer loss (the default for the MLP on sim and serial:PORT; golden_model/autonomous.py)")
    mode.add_argument("--host-loop", action="store_true",
                      help="the host drives every step (batch, error or labels, keys over the link): for debugging, "
                           "the CNN, the float loss, checkpoints, --save/--load and --link-faults")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    for name in ("steps", "epochs", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1, got {value}")
    if args.lr_shift is not None and args.lr_shift < 0:
        parser.error(f"--lr-shift must be >= 0 (learning rate 2**-lr_shift), got {args.lr_shift}")
    if not 0.0 <= args.link_faults <= 1.0:
        parser.error(f"--link-faults is a probability per frame, in [0, 1]; got {args.link_faults}")
    if args.load is not None and args.resume is not None:
        parser.error("--load starts a new run from saved weights and --resume continues a checkpointed run; "
                     "give one of them")
    if args.autonomous:
        blockers = host_loop_options(args)
        if blockers:
            parser.error(f"--autonomous does not take {', '.join(blockers)}: train with --host-loop for those")
    return args


def host_loop_options(args) -> list[str]:
    """The options given that only the host loop serves."""
    given = [f"--{name}" for name in ("resume", "load", "checkpoint", "save") if getattr(args, name) is not None]
    given += ["--link-faults"] if args.link_faults else []
    given += ["--loss float"] if args.loss == "float" else []
    return given


def choose_mode(args, run, cfg=None) -> str:
    """autonomous or host-loop: autonomous for the MLP on sim and serial:PORT unless --host-loop or an option
    only the host loop serves or a data set larger than the core's data memory says otherwise (said on the
    console); --autonomous anywhere it can run."""
    if args.host_loop:
        return "host-loop"
    fits = run["arch"] == "mlp" and run["target"] != "fp32"
    if args.autonomous:
        if not fits:
            raise InputError(f"--autonomous trains the MLP on a device target (sim, golden, serial:PORT); got arch "
                             f"{run['arch']} on {run['target']}")
        return "autonomous"
    if not (fits and (run["target"] == "sim" or run["target"].startswith("serial:"))):
        return "host-loop"
    blockers = host_loop_options(args)
    if blockers:
        print(f"eoq-train: {', '.join(blockers)}: training with the host loop (autonomous training does not take "
              f"{'it' if len(blockers) == 1 else 'them'})", flush=True)
        return "host-loop"
    problem = resident_problem(run, cfg)
    if problem:
        print(f"eoq-train: {problem}. Training with the host loop, which sends every batch over the link",
              flush=True)
        return "host-loop"
    return "autonomous"


def resident_problem(run, cfg) -> str | None:
    """Why the run's data set cannot be resident on the core (golden_model.autonomous.plan_sets), or None."""
    data = run.get("dataset")
    if data is None or cfg is None:
        return None
    try:
        plan_sets(cfg, data.train_x[0].size, len(data.train_x), len(data.test_x))
    except ValueError as error:
        return str(error)
    return None


def resolve_run(args, checkpoint, loaded=None) -> dict:
    """The run's settings: the command line's, else the checkpoint's (or the loaded file's network),
    else the defaults."""
    run = {}
    for key, default in DEFAULTS.items():
        given = getattr(args, key)
        if loaded is not None and key in LOADED:
            saved = loaded.run.get(key)
            if given is not None and given != saved:
                raise InputError(f"--{key} {given} conflicts with {args.load}, which holds a network trained with "
                                 f"{key} {saved!r}; drop --{key} or load another file")
            run[key] = saved
            continue
        run[key] = given if given is not None else (checkpoint.run.get(key, default) if checkpoint else default)
    if checkpoint and args.target is None:
        run["target"] = checkpoint.run["target"]
    if run["lr_shift"] is None:
        run["lr_shift"] = default_lr_shift(run["batch"], run["arch"])
    run["model"] = "fp32" if run["target"] == "fp32" else "int8"
    return run


def prepare(args) -> tuple[dict, object, object, Path | None]:
    """Everything checked before work starts: (run, configuration, checkpoint to resume, checkpoint dir)."""
    checkpoint = loaded = None
    if args.resume is not None:
        checkpoint = load(args.resume)
    if args.load is not None:
        loaded = load_file(args.load)
    run = resolve_run(args, checkpoint, loaded)
    if loaded is not None and loaded.run["model"] != run["model"]:
        raise InputError(f"{args.load} holds {loaded.run['model']} weights; target {run['target']} trains "
                         f"{run['model']} (load it on {'fp32' if loaded.run['model'] == 'fp32' else 'sim or golden'})")
    run["dataset"] = load_data(run["data"])
    if run["target"] not in ("golden", "fp32") and not is_device_target(run["target"]):
        raise InputError(f"unknown target {run['target']!r}; choose one of {', '.join(TARGETS)}")
    try:
        cfg = get_config(run["config"])
    except ValueError as error:
        raise InputError(str(error)) from None
    fmt = run["dataset"].format
    cfg = fit_configuration(cfg, target=run["target"], arch=run["arch"], batch=run["batch"], fmt=fmt)
    run["format"] = asdict(fmt)
    run["config_json"] = cfg.to_json()
    if checkpoint is not None:
        check_run(checkpoint, run, args.resume)
    if args.link_faults and run["target"] in ("golden", "fp32"):
        raise InputError(f"--link-faults needs a target with a host link (sim or serial:PORT); "
                         f"{run['target']} has none")
    metrics = Path(args.metrics)
    check_writable_file(metrics, "metrics JSON")
    check_writable_file(metrics.with_suffix(".png"), "plot")
    if args.save is not None:
        check_writable_file(Path(args.save), "saved weights")
    directory = args.checkpoint or args.resume
    if directory is not None:
        directory = Path(directory)
        check_writable_directory(directory, "checkpoint")
        resuming_here = checkpoint is not None and directory.resolve() == Path(args.resume).resolve()
        if state_path(directory).exists() and not resuming_here:
            raise InputError(f"{state_path(directory)} already holds a checkpoint; continue it with --resume "
                             f"{directory} or choose another --checkpoint directory (nothing was overwritten)")
    run["link_faults"] = args.link_faults
    run["loaded"] = loaded
    args.mode = choose_mode(args, run, cfg)
    if args.mode == "autonomous":
        run["loss"] = "int"
    return run, cfg, checkpoint, directory


def train(args, run, cfg, checkpoint, directory) -> tuple:
    """Build the target and train; returns (target, history, seconds, bit_exact, difference)."""
    dataset, loaded = run["dataset"], run["loaded"]
    target = make_target(run["target"], run["arch"], cfg, run["seed"], run["lr_shift"], run["batch"],
                         args.link_faults, dataset.format, loss=run["loss"])
    settings = {k: v for k, v in run.items() if k not in ("dataset", "loaded")}
    try:
        log = tqdm.write if not args.no_progress else (lambda message: print(message, flush=True))
        session = Session(target, settings, directory=directory, data=dataset,
                          progress=not args.no_progress, log=log)
        if checkpoint is not None:
            session.resume(checkpoint)
        if loaded is not None:
            session.position = start_from(target, loaded)
        history, seconds = session.train()
        if args.save is not None:
            path = save_file(args.save, capture(target, settings, session.position))
            log(f"eoq-train: saved the weights to {path}")
        bit_exact, difference = None, ""
        if isinstance(target, DeviceTarget):
            bit_exact, difference = target.compare_weights()
            if bit_exact and target.first_divergence is not None:
                bit_exact = False
                difference = f"logits or loss differed from step {target.first_divergence} on"
    except (LinkError, DeviceError, ResetWithoutCheckpoint) as error:
        raise SystemExit(f"eoq-train: the {run['target']} device failed: {error}")
    except CheckpointError as error:
        raise SystemExit(f"eoq-train: {error}")
    finally:
        if isinstance(target, DeviceTarget):
            target.device.close()
    return target, history, seconds, bit_exact, difference


def report(args, run, cfg, checkpoint, outcome) -> int:
    """Write the metrics JSON and the PNG, print the verdict and the summary; returns the exit code."""
    target, history, seconds, bit_exact, difference = outcome
    steps = getattr(target, "steps", None)
    metrics_path = Path(args.metrics)
    plot_path = metrics_path.with_suffix(".png")
    plot_history(history, plot_path, f"{run['target']} {run['arch']} batch {run['batch']} seed {run['seed']}")
    metrics = {
        "target": run["target"], "arch": run["arch"], "epochs": run["epochs"], "batch": run["batch"],
        "seed": run["seed"], "lr_shift": run["lr_shift"], "config": cfg.name, "data": run["data"] or "digits",
        "loss": run["loss"], "mode": "host-loop",
        "test_accuracy": history[-1].test_accuracy,
        "train_accuracy": history[-1].train_accuracy,
        "final_loss": history[-1].loss,
        "train_seconds": round(seconds, 3),
        "int_macs_per_step": count_int_macs(run["arch"], run["batch"], cfg, run["dataset"]),
        "train_accuracy_mode": "running",
        "steps": steps,
        **device_metrics(target, steps or 0),
        "bit_exact": bit_exact,
        "history": [vars(r) for r in history],
        "plot": str(plot_path),
    }
    if checkpoint is not None:
        metrics["resumed_from"] = {"epoch": checkpoint.position.epoch, "step": checkpoint.position.step}
    if isinstance(target, DeviceTarget) and getattr(target.device, "harness_stats", None):
        hs = target.device.harness_stats
        metrics["sim_board"] = {"cycles": hs.get("cycles"), "wall_seconds": hs.get("wall_seconds"),
                                "cycles_per_second": hs.get("cycles_per_second"), "resets": hs.get("resets")}
    if steps:
        metrics["samples_per_second"] = round(target.samples / max(seconds, 1e-9), 2)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"eoq-train: wrote {metrics_path} and {plot_path}", flush=True)
    if bit_exact is False:
        print(f"eoq-train: BIT-EXACT CHECK FAILED on target {run['target']}: the device's weights differ from the "
              f"golden model's for seed {run['seed']}; first difference: {difference}", file=sys.stderr, flush=True)
    elif bit_exact:
        print(f"eoq-train: bit-exact: the {run['target']} device's weights equal the golden model's "
              f"after {steps} steps", flush=True)
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    return 1 if bit_exact is False else 0


def report_autonomous(args, run, cfg) -> int:
    """Train autonomously (host/autonomous.py), write the metrics and the plot; the exit code."""
    try:
        outcome = train_autonomous(run, cfg, log=lambda message: print(message, flush=True))
    except (ValueError, DeviceNotFound) as error:
        raise SystemExit(f"eoq-train: {error}")
    except (LinkError, DeviceError) as error:
        raise SystemExit(f"eoq-train: the {run['target']} device failed: {error}")
    history, steps, train = outcome.history, outcome.steps, outcome.train
    metrics_path = Path(args.metrics)
    plot_history(history, metrics_path.with_suffix(".png"),
                 f"{run['target']} autonomous mlp batch {run['batch']} seed {run['seed']}")
    last = history[-1] if history else None
    metrics = {
        "target": run["target"], "arch": "mlp", "mode": "autonomous", "epochs": run["epochs"], "batch": run["batch"],
        "seed": run["seed"], "lr_shift": run["lr_shift"], "config": cfg.name, "data": run["data"] or "digits",
        "loss": "int", "test_accuracy": last and last.test_accuracy, "train_accuracy": last and last.train_accuracy,
        "final_loss": last and last.loss, "train_seconds": round(outcome.seconds, 3), "steps": steps,
        "train_accuracy_mode": "running", "bit_exact": outcome.bit_exact,
        "device_cycles": {"train_steps": train.cycles, "per_step": train.cycles / max(steps, 1)},
        "host_link_bytes": {"upload": outcome.upload.bytes_in + outcome.upload.bytes_out,
                            "per_step": (train.bytes_in + train.bytes_out) / max(steps, 1),
                            "status_polls": train.poll_bytes,
                            "total": outcome.total.bytes_in + outcome.total.bytes_out,
                            "frames": outcome.total.frames, "retries": outcome.total.retries},
        "history": [vars(r) for r in history], "plot": str(metrics_path.with_suffix(".png")),
    }
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"eoq-train: wrote {metrics_path} and {metrics_path.with_suffix('.png')}", flush=True)
    if outcome.bit_exact is False:
        print(f"eoq-train: BIT-EXACT CHECK FAILED on target {run['target']}: {outcome.difference}", file=sys.stderr,
              flush=True)
    else:
        print(f"eoq-train: bit-exact: the {run['target']} device's weights, loss counters and progress equal the "
              f"golden machine's after {steps} autonomous steps", flush=True)
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    return 1 if outcome.bit_exact is False else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run, cfg, checkpoint, directory = prepare(args)
    except (InputError, CheckpointError) as error:
        raise SystemExit(f"eoq-train: {error}")
    print(f"eoq-train: target={run['target']} arch={run['arch']} epochs={run['epochs']} batch={run['batch']} "
          f"seed={run['seed']} lr=2^-{run['lr_shift']} config={cfg.name} loss={run['loss']} mode={args.mode}"
          + (f" link_faults={args.link_faults}/frame" if args.link_faults else "")
          + (f" resuming {checkpoint.where}" if checkpoint else ""), flush=True)
    if args.mode == "autonomous":
        return report_autonomous(args, run, cfg)
    try:
        outcome = train(args, run, cfg, checkpoint, directory)
    except Interrupted as stop:
        saved = (f"the state is in {stop.path}: continue with --resume {directory}" if stop.path
                 else "nothing was saved (no --checkpoint)")
        print(f"eoq-train: {stop}; {saved}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return report(args, run, cfg, checkpoint, outcome)


if __name__ == "__main__":
    sys.exit(main())
