"""Softmax cross-entropy at the output: the one step that stays on the host.

The device sends the int8 logits (with their exponent) to the host; the host
computes softmax in float64, forms the error (p - onehot) / B, writes it on
the fixed grid 2**cfg.loss_fixed_exp (round half away from zero) and
shift-quantizes it with the same integer SQ as the device.  What goes back to
the device is therefore an int8 tensor with a power-of-two scale, as the spec
requires.  See docs/eoq_arithmetic.md.
"""

from __future__ import annotations

import numpy as np

from .config import CoreConfig
from .flag import quantize_error
from .quant import QTensor, fixed_point


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    ez = np.exp(z)
    return ez / ez.sum(axis=1, keepdims=True)


def check_labels(labels, batch: int, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (batch,) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array of shape ({batch},), got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must be in [0, {classes}), got [{labels.min()}, {labels.max()}]")
    return labels


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.maximum(probs[np.arange(labels.size), labels], 1e-30))))


def output_error(logits: QTensor, labels, cfg: CoreConfig) -> tuple[QTensor, float]:
    """Error at the logits, (softmax(z) - onehot) / B as int8 SQ, and the mean loss."""
    batch, classes = logits.q.shape
    labels = check_labels(labels, batch, classes)
    probs = softmax(logits.to_float())
    grad = probs.copy()
    grad[np.arange(batch), labels] -= 1.0
    grad /= batch
    error = quantize_error(fixed_point(grad, cfg.loss_fixed_exp), cfg.loss_fixed_exp, cfg)
    return error, cross_entropy(probs, labels)
