"""EOQ layer operations, forward and backward, on QTensors.

Each function is one instruction's worth of work for the core: an integer
product or element-wise op into wide accumulators, then one quantizer from
quant.py.  Layouts: activations and errors are (batch, features); weights are
(out, in), as in the paper's W . X.

    forward          Y  = X . W^T             (B, out)
    error            Ex = Ey . W              (B, in)     = (W^T . E)^T
    weight gradient  G  = Ey^T . X            (out, in)   = E . X^T

A :class:`MacCounter` passed to any op counts the int8 multiply-accumulates.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import CoreConfig
from .flag import quantize_error
from .quant import QTensor, align_add, check_acc, shift_quantize, shift_to_exp


class MacCounter:
    """Counts int8 x int8 multiply-accumulates, by phase."""

    def __init__(self):
        self.by_phase: dict[str, int] = {}

    def add(self, phase: str, count: int) -> None:
        self.by_phase[phase] = self.by_phase.get(phase, 0) + int(count)

    @property
    def total(self) -> int:
        return sum(self.by_phase.values())


def _count(counter: MacCounter | None, phase: str, count: int) -> None:
    if counter is not None:
        counter.add(phase, count)


def _matmul(name: str, a: np.ndarray, b: np.ndarray, cfg: CoreConfig) -> np.ndarray:
    """int8 (M, K) @ int8 (K, N) into accumulators, checked against acc_bits."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"{name}: cannot multiply shapes {a.shape} and {b.shape}")
    return check_acc(name, a.astype(np.int64) @ b.astype(np.int64), cfg)


def linear_forward(x: QTensor, w: QTensor, cfg: CoreConfig, relu: bool = False,
                   macs: MacCounter | None = None) -> QTensor:
    """Y = SQ(X . W^T), optionally through ReLU before the quantizer."""
    if x.q.ndim != 2 or x.q.shape[1] != w.q.shape[1]:
        raise ValueError(f"linear_forward: input {x.q.shape} does not match weight {w.q.shape} (expected (B, {w.q.shape[1]}))")
    acc = _matmul("linear_forward", x.q, w.q.T, cfg)
    _count(macs, "forward", acc.size * x.q.shape[1])
    return shift_quantize(acc, x.exp + w.exp, cfg.act_rounding, cfg, relu=relu)


def linear_backward_error(e: QTensor, w: QTensor, cfg: CoreConfig,
                          macs: MacCounter | None = None) -> QTensor:
    """Ex = SQ(Ey . W): the error propagated to the layer input."""
    if e.q.ndim != 2 or e.q.shape[1] != w.q.shape[0]:
        raise ValueError(f"linear_backward_error: error {e.q.shape} does not match weight {w.q.shape} (expected (B, {w.q.shape[0]}))")
    acc = _matmul("linear_backward_error", e.q, w.q, cfg)
    _count(macs, "backward", acc.size * e.q.shape[1])
    return quantize_error(acc, e.exp + w.exp, cfg)


def linear_weight_gradient(e: QTensor, x: QTensor, cfg: CoreConfig, key: int | None = None,
                           macs: MacCounter | None = None) -> QTensor:
    """G = SQ(Ey^T . X), summed over the batch, rounded by cfg.grad_rounding."""
    if e.q.ndim != 2 or x.q.ndim != 2 or e.q.shape[0] != x.q.shape[0]:
        raise ValueError(f"linear_weight_gradient: error {e.q.shape} and input {x.q.shape} need the same batch")
    acc = _matmul("linear_weight_gradient", e.q.T, x.q, cfg)
    _count(macs, "gradient", acc.size * e.q.shape[0])
    return shift_quantize(acc, e.exp + x.exp, cfg.grad_rounding, cfg, key=key)


def relu_backward(e: QTensor, a: QTensor) -> QTensor:
    """ReLU derivative: pass the error where the stored (quantized) ReLU output is > 0."""
    if e.q.shape != a.q.shape:
        raise ValueError(f"relu_backward: error {e.q.shape} and activation {a.q.shape} differ in shape")
    return replace(e, q=np.where(a.q > 0, e.q, 0).astype(e.q.dtype))


def _check_scalar(name: str, t: QTensor) -> None:
    if t.q.shape != (1,):
        raise ValueError(f"{name} must be a scalar QTensor of shape (1,), got {t.q.shape}")


def scale_forward(x: QTensor, m: QTensor, cfg: CoreConfig, macs: MacCounter | None = None) -> QTensor:
    """Fixup scalar multiplier: SQ(m * X)."""
    _check_scalar("scale_forward multiplier", m)
    _count(macs, "forward", x.q.size)
    return shift_quantize(x.q.astype(np.int64) * int(m.q[0]), x.exp + m.exp, cfg.act_rounding, cfg)


def scale_backward_error(e: QTensor, m: QTensor, cfg: CoreConfig, macs: MacCounter | None = None) -> QTensor:
    """Error through the scalar multiplier: SQ(m * E)."""
    _check_scalar("scale_backward_error multiplier", m)
    _count(macs, "backward", e.q.size)
    return quantize_error(e.q.astype(np.int64) * int(m.q[0]), e.exp + m.exp, cfg)


def scale_gradient(e: QTensor, x: QTensor, cfg: CoreConfig, key: int | None = None,
                   macs: MacCounter | None = None) -> QTensor:
    """Gradient of the scalar multiplier: SQ(sum(E * X)) as a (1,) tensor."""
    if e.q.shape != x.q.shape:
        raise ValueError(f"scale_gradient: error {e.q.shape} and input {x.q.shape} differ in shape")
    _count(macs, "gradient", e.q.size)
    total = check_acc("scale_gradient", np.array([np.sum(e.q.astype(np.int64) * x.q)]), cfg)
    return shift_quantize(total, e.exp + x.exp, cfg.grad_rounding, cfg, key=key)


def bias_forward(x: QTensor, b: QTensor, cfg: CoreConfig, relu: bool = False) -> QTensor:
    """Fixup scalar bias: X + b, aligned to the coarser scale (align_add)."""
    _check_scalar("bias_forward bias", b)
    return align_add(x, b, cfg, relu=relu)


def bias_gradient(e: QTensor, cfg: CoreConfig, key: int | None = None) -> QTensor:
    """Gradient of a scalar bias: SQ(sum(E)) as a (1,) tensor."""
    total = check_acc("bias_gradient", np.array([np.sum(e.q.astype(np.int64))]), cfg)
    return shift_quantize(total, e.exp, cfg.grad_rounding, cfg, key=key)


def residual_add(a: QTensor, b: QTensor, cfg: CoreConfig, relu: bool = False) -> QTensor:
    """Residual join a + b of two int8 tensors with different scales (align_add)."""
    if a.q.shape != b.q.shape:
        raise ValueError(f"residual_add: shapes {a.q.shape} and {b.q.shape} differ")
    return align_add(a, b, cfg, relu=relu)


def error_add(a: QTensor, b: QTensor, cfg: CoreConfig) -> QTensor:
    """Errors of the two paths meeting at a residual join's input: align-add (as residual_add), then
    the error quantizer (flag.quantize_error; SQ nearest, i.e. residual_add's result, by default)."""
    if a.q.shape != b.q.shape:
        raise ValueError(f"error_add: shapes {a.q.shape} and {b.q.shape} differ")
    exp = max(a.exp, b.exp)
    return quantize_error(shift_to_exp(a, exp, cfg) + shift_to_exp(b, exp, cfg), exp, cfg)
