"""Convolution and average pooling in EOQ integer arithmetic, on the core's layouts.

Images are pixel rows: B images of H x W pixels with C channels are the 2-D
tensor (B*H*W, C) (golden_model/geometry.py).  A convolution's weights are
(O, KH*KW*Cp): tap by tap, each tap's Cp = ceil(C / lanes) * lanes weights, so
every tap starts on a memory word; the padding channels' weights are 0 and,
since the padding channels of an activation are 0 too, their gradient is 0
and they stay 0.  The three products are one integer product each (implicit
GEMM: the core gathers the taps, nothing is copied):

    forward   ACC (B*Ho*Wo, O)      = im2col(X) . W^T
    error     ACC (B*H*W, C)        = col2im(E . W)     (every tap's contribution summed in the ACC)
    gradient  ACC (O, KH*KW*Cp)     = E^T . im2col(X)   (summed over the batch and the pixels)

The ``*_acc`` functions are the core's CONV, POOL and UNPOOL (golden
``Machine`` uses them); the layer functions add the quantizer of the phase,
as golden_model/ops.py does for the dense layers.  Average pooling sums each
window's int8 values and folds the division by the window's area (a power of
two) into the exponent; its error is the pooled error replicated over the
window at that exponent, exactly.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import CoreConfig
from .flag import quantize_error
from .geometry import Geometry
from .ops import MacCounter, _count
from .quant import QTensor, check_acc, shift_quantize


def padded_channels(channels: int, lanes: int) -> int:
    """Channels rounded up to whole memory words: the stride of one tap in a weight row."""
    return -(-channels // lanes) * lanes


def im2col(x: np.ndarray, g: Geometry, lanes: int) -> np.ndarray:
    """(B*Ho*Wo, taps * Cp) int64: each output pixel's taps, channels padded to words, zero in the padding."""
    padded = np.zeros((x.shape[0] + 1, padded_channels(x.shape[1], lanes)), dtype=np.int64)
    padded[:x.shape[0], :x.shape[1]] = x
    return padded[g.im2col()].reshape(g.out_rows, -1)


def conv_forward_acc(x: np.ndarray, w: np.ndarray, g: Geometry, lanes: int) -> np.ndarray:
    """The forward product: im2col(X) . W^T, (B*Ho*Wo, O)."""
    return im2col(x, g, lanes) @ w.astype(np.int64).T


def conv_error_acc(e: np.ndarray, w: np.ndarray, g: Geometry, channels: int) -> np.ndarray:
    """The error product: each output pixel's E . W sent back through its taps, (B*H*W, channels)."""
    pieces = (e.astype(np.int64) @ w.astype(np.int64)).reshape(g.out_rows, g.taps, -1)
    acc = np.zeros((g.in_rows + 1, pieces.shape[2]), dtype=np.int64)     # row in_rows takes the padding
    np.add.at(acc, g.im2col(), pieces)
    return acc[:g.in_rows, :channels]


def conv_gradient_acc(e: np.ndarray, x: np.ndarray, g: Geometry, lanes: int) -> np.ndarray:
    """The weight gradient: E^T . im2col(X), (O, taps * Cp)."""
    return e.astype(np.int64).T @ im2col(x, g, lanes)


def pool_acc(x: np.ndarray, g: Geometry) -> np.ndarray:
    """Each window's sum, (B*(H/KH)*(W/KW), C); the average's division is the exponent (pool_shift)."""
    return x.astype(np.int64)[g.pool_map().windows()].sum(axis=1)


def unpool(e: np.ndarray, g: Geometry) -> np.ndarray:
    """Each pixel takes its window's value, (B*H*W, C)."""
    return e[g.pool_map().owner()]


def pool_shift(g: Geometry) -> int:
    """log2 of the pooling window's area: the exponent decrement of the average."""
    return g.pool_map().shift


# ---- layers: one product and one quantizer, as golden_model/ops.py -------------------------------

def conv_forward(x: QTensor, w: QTensor, g: Geometry, cfg: CoreConfig, relu: bool = False,
                 macs: MacCounter | None = None) -> QTensor:
    """Y = SQ(conv(X, W)), optionally through ReLU before the quantizer (cfg.act_rounding)."""
    acc = check_acc("conv_forward", conv_forward_acc(x.q, w.q, g, cfg.lanes), cfg)
    _count(macs, "forward", g.out_rows * w.q.shape[0] * g.taps * x.q.shape[1])
    return shift_quantize(acc, x.exp + w.exp, cfg.act_rounding, cfg, relu=relu)


def conv_backward_error(e: QTensor, w: QTensor, g: Geometry, channels: int, cfg: CoreConfig,
                        macs: MacCounter | None = None) -> QTensor:
    """Ex = SQ(col2im(E . W)): every tap's contribution to an input pixel summed before the one SQ."""
    acc = check_acc("conv_backward_error", conv_error_acc(e.q, w.q, g, channels), cfg)
    _count(macs, "backward", g.out_rows * e.q.shape[1] * g.taps * channels)
    return quantize_error(acc, e.exp + w.exp, cfg)


def conv_weight_gradient(e: QTensor, x: QTensor, g: Geometry, cfg: CoreConfig, key: int | None = None,
                         macs: MacCounter | None = None) -> QTensor:
    """G = SQ(E^T . im2col(X)), (O, taps * Cp), rounded by cfg.grad_rounding."""
    acc = check_acc("conv_weight_gradient", conv_gradient_acc(e.q, x.q, g, cfg.lanes), cfg)
    _count(macs, "gradient", e.q.shape[1] * g.taps * x.q.shape[1] * g.out_rows)
    return shift_quantize(acc, e.exp + x.exp, cfg.grad_rounding, cfg, key=key)


def avgpool_forward(x: QTensor, g: Geometry, cfg: CoreConfig) -> QTensor:
    """SQ of the windows' sums at exponent x.exp - log2(area): the average (cfg.act_rounding)."""
    acc = check_acc("avgpool_forward", pool_acc(x.q, g), cfg)
    return shift_quantize(acc, x.exp - pool_shift(g), cfg.act_rounding, cfg)


def avgpool_backward_error(e: QTensor, g: Geometry) -> QTensor:
    """The pooled error replicated over each window at exponent e.exp - log2(area): exact, no quantizer."""
    return replace(e, q=unpool(e.q, g), exp=e.exp - pool_shift(g))
