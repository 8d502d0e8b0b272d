"""`python -m golden_model.trace`: write every integer tensor of one training step to an .npz.

    python -m golden_model.trace --seed 0 --batch 16 --step 3 -o build/trace.npz

Trains ``step`` steps on the digits data (same split, shuffling and learning
rate as eoq-train), then records step ``step``: for every op, its input and
output tensors as '<nn>_<op>/<in|out>/<name>/q' (int8) and '.../exp' (int64),
in execution order.  Testbenches compare hardware against these arrays.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .config import get_config
from .data import batches, load_digits_split
from .network import ResMLP, Trace, quantize_input
from .train import default_lr_shift


def record_step(config: str, seed: int, batch: int, step: int) -> Trace:
    cfg = get_config(config)
    if batch > cfg.max_batch:
        cfg = cfg.replace(max_batch=batch)
    data = load_digits_split()
    model = ResMLP(cfg, seed, default_lr_shift(batch))
    rng = np.random.default_rng(seed)
    order = []
    while len(order) <= step:
        order.extend(batches(len(data.train_y), batch, rng))
    for idx in order[:step]:
        model.train_step(quantize_input(data.train_x[idx], cfg), data.train_y[idx])
    trace = Trace()
    idx = order[step]
    model.train_step(quantize_input(data.train_x[idx], cfg), data.train_y[idx], trace)
    return trace


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golden_model.trace", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--step", type=int, default=0, help="index of the recorded step (0 = the first)")
    parser.add_argument("-o", "--out", default="build/trace.npz")
    args = parser.parse_args(argv)
    if args.step < 0 or args.batch < 1:
        parser.error("--step must be >= 0 and --batch >= 1")
    trace = record_step(args.config, args.seed, args.batch, args.step)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    trace.save(out)
    print(f"wrote {out}: {len(trace.records)} ops, {len(trace.arrays())} arrays")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
