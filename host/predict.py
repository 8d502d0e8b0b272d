"""`eoq-predict` / `make predict`: classify with weights saved by ``eoq-train --save``.

  eoq-predict --weights FILE [--target sim|golden|serial:PORT[@BAUD]|fp32]
              [--data FILE.npz] [--split test|train] [--out FILE.npy|FILE.csv]

An int8 network runs frozen-exponent inference (golden_model/inference.py:
the exponents calibrated on the training set when the file was saved) on the
target, by default the Verilator-simulated core; on a device target the
golden Machine runs the same program alongside and every logit must agree
(``bit_exact``; exit code 1 otherwise).  A float32 file runs on fp32 only.
The data default to what the network was trained on; another .npz must have
the same sample shape and classes.  Prints the accuracy on the split and, as
its last line, a JSON summary; ``--out`` writes the predicted classes (.npy,
or .csv with index,label,prediction).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from golden_model.config import CoreConfig, get_config

from .checkpoint import CheckpointError, load_file
from .device_target import DeviceTarget
from .preflight import InputError, check_writable_file, load_data
from .session import start_from
from .train import make_target

SPLITS = ("test", "train")
OUT_SUFFIXES = (".npy", ".csv")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="eoq-predict", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, metavar="FILE", help="a file written by eoq-train --save")
    parser.add_argument("--target", default=None,
                        help="sim (default for int8) | golden | serial:PORT[@BAUD] | fp32 (float32 files)")
    parser.add_argument("--data", default=None, metavar="FILE.npz", help="default: the data it was trained on")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--out", default=None, metavar="FILE", help="write the predictions (.npy or .csv)")
    return parser.parse_args(argv)


def prepare(args):
    """(saved weights, run, configuration, dataset, target name): every check before work starts."""
    saved = load_file(args.weights)
    run = saved.run
    model = run["model"]
    target = args.target or ("fp32" if model == "fp32" else "sim")
    if (target == "fp32") != (model == "fp32"):
        raise InputError(f"{args.weights} holds {model} weights; target {target} runs "
                         f"{'float32' if target == 'fp32' else 'int8'} ones "
                         f"(use --target {'fp32' if model == 'fp32' else 'sim, golden or serial:PORT'})")
    dataset = load_data(args.data if args.data is not None else run.get("data"))
    trained = run.get("format")
    if trained is not None:
        fmt = asdict(dataset.format)
        shape = ("channels", "height", "width", "classes")
        if any(fmt[key] != trained[key] for key in shape):
            raise InputError(
                f"the data are {fmt['channels']}x{fmt['height']}x{fmt['width']} samples in {fmt['classes']} "
                f"classes; {args.weights} was trained on {trained['channels']}x{trained['height']}x"
                f"{trained['width']} in {trained['classes']}: give data of that shape")
    if args.out is not None:
        out = Path(args.out)
        if out.suffix not in OUT_SUFFIXES:
            raise InputError(f"--out {out}: write .npy or .csv (got {out.suffix or 'no suffix'!r})")
        check_writable_file(out, "predictions")
    # the hardware of the named configuration; the golden model and fp32 take the one trained with
    cfg = (CoreConfig.from_dict(json.loads(run["config_json"])) if target in ("golden", "fp32")
           else get_config(run["config"]))
    return saved, run, cfg, dataset, target


def write_predictions(path: Path, labels: np.ndarray, predictions: np.ndarray) -> None:
    if path.suffix == ".npy":
        np.save(path, predictions)
    else:
        rows = np.stack([np.arange(len(labels)), labels, predictions], axis=1)
        np.savetxt(path, rows, fmt="%d", delimiter=",", header="index,label,prediction", comments="")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        saved, run, cfg, dataset, name = prepare(args)
    except (InputError, CheckpointError) as error:
        raise SystemExit(f"eoq-predict: {error}")
    pixels, labels = ((dataset.test_x, dataset.test_y) if args.split == "test"
                      else (dataset.train_x, dataset.train_y))
    # batch 1 to build the target; inference runs in chunks of the largest batch the core holds
    target = make_target(name, run["arch"], cfg, run["seed"], run["lr_shift"], 1, fmt=dataset.format)
    try:
        start_from(target, saved)
        bit_exact = None
        if isinstance(target, DeviceTarget):
            logits = target.logits(pixels)
            golden = target.reference.logits(pixels)
            bit_exact = bool(np.array_equal(logits, golden))
            predictions = np.argmax(logits, axis=1)
        else:
            predictions = target.predict(pixels)
    finally:
        if isinstance(target, DeviceTarget):
            target.device.close()
    accuracy = float(np.mean(predictions == labels))
    print(f"eoq-predict: {run['arch']} on {name}: {args.split} accuracy {accuracy:.4f} "
          f"({int(np.sum(predictions == labels))}/{len(labels)})", flush=True)
    if args.out is not None:
        write_predictions(Path(args.out), labels, predictions)
        print(f"eoq-predict: wrote {args.out}", flush=True)
    if bit_exact is False:
        print(f"eoq-predict: BIT-EXACT CHECK FAILED: the {name} device's logits differ from the golden model's",
              file=sys.stderr, flush=True)
    print(json.dumps({"target": name, "arch": run["arch"], "split": args.split, "samples": len(labels),
                      "accuracy": accuracy, "frozen_exponents": saved.inference is not None,
                      "bit_exact": bit_exact}))
    return 1 if bit_exact is False else 0


if __name__ == "__main__":
    sys.exit(main())
