"""Bench section ``int_loss``: the integer softmax error against the float one.

Draws random int8 logit tensors (``VECTORS`` rows in batches of ``BATCH``):
mantissas uniform in [-127, 127], one exponent per tensor uniform in
``EXPONENTS`` (logit ranges from +-0.25 to +-16), labels uniform, and a
``CONFIDENT`` share of rows where the label's (or a random wrong class's)
logit is pushed to +127: the confident predictions of a trained network,
where the error sits next to a power of two.  Each tensor's error is
computed twice, by golden_model/int_loss.py and by the float host loss
(golden_model/loss.py), both SQ-quantized by the core's integer SQ, and
compared element by element: the share that differs by more than one step
of the float error's grid (the issue's goal: under 0.1 %), the share off by
exactly one step, and the share of tensors whose exponents differ.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from golden_model.config import get_config
from golden_model.int_loss import int_output_error
from golden_model.loss import output_error
from golden_model.quant import QTensor

VECTORS = 100_000
BATCH = 16
CLASSES = 10
EXPONENTS = range(-9, -2)
CONFIDENT = 0.25


def draw(rng: np.random.Generator, batch: int, classes: int) -> tuple[QTensor, np.ndarray]:
    q = rng.integers(-127, 128, (batch, classes))
    labels = rng.integers(0, classes, batch)
    confident = np.flatnonzero(rng.random(batch) < CONFIDENT)
    wrong = (labels[confident] + rng.integers(1, classes, confident.size)) % classes
    top = np.where(rng.random(confident.size) < 0.5, labels[confident], wrong)
    q[confident, top] = 127
    return QTensor(q.astype(np.int8), int(rng.choice(EXPONENTS))), labels


def compare(vectors: int, batch: int, seed: int = 0, config: str = "default") -> dict:
    cfg = get_config(config)
    rng = np.random.default_rng(seed)
    tensors = -(-vectors // batch)
    off_one = off_more = exp_differs = 0
    worst = 0.0
    for _ in range(tensors):
        logits, labels = draw(rng, batch, CLASSES)
        got, _ = int_output_error(logits, labels, cfg)
        want, _ = output_error(logits, labels, cfg)
        exp_differs += got.exp != want.exp
        steps = np.abs(got.q * 2.0 ** (got.exp - want.exp) - want.q)
        off_one += int(np.count_nonzero((steps > 0) & (steps <= 1)))
        off_more += int(np.count_nonzero(steps > 1))
        worst = max(worst, float(steps.max()))
    elements = tensors * batch * CLASSES
    return {
        "vectors": tensors * batch, "batch": batch, "classes": CLASSES, "seed": seed,
        "exponents": [min(EXPONENTS), max(EXPONENTS)], "confident_share": CONFIDENT,
        "elements": elements,
        "share_off_by_more_than_one_step": off_more / elements,
        "share_off_by_one_step": off_one / elements,
        "share_of_tensors_with_another_exponent": exp_differs / tensors,
        "worst_difference_steps": worst,
    }


def run(quick: bool = False) -> dict:
    vectors = VECTORS // 20 if quick else VECTORS
    return {f"batch{b}": compare(vectors, b) for b in (BATCH, 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=VECTORS)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(compare(args.vectors, args.batch, args.seed), indent=2))


if __name__ == "__main__":
    main()
