"""EOQ convolution and pooling operations on QTensors (NCHW layout), via im2col.

Every convolution is lowered to the same integer product as the dense layers
in ops.py, so the arithmetic is identical: int8 x int8 products summed into
int64 accumulators, checked against cfg.acc_bits by quant.check_acc, then one
shift-quantizer (quant.shift_quantize) per output tensor with the rounding of
the phase (cfg.act_rounding / err_rounding / grad_rounding, stochastic keys
from prng.tensor_key supplied by the caller).

Layouts (stride 1, zero padding ``pad`` on every side, odd square kernels):

    x     (B, C, H, W)                 input activations
    w     (O, C, K, K)                 weights; as a matrix W2 = w.reshape(O, C*K*K)
    cols  (B*Ho*Wo, C*K*K)             im2col(x): one row per output pixel,
                                       columns in (c, kh, kw) order = W2's columns
    y     (B, O, Ho, Wo)

    forward          Y     = SQ(cols . W2^T)                 as ops.linear_forward
    error            Ecols = Ey_mat . W2 ; Ex = SQ(col2im(Ecols))
    weight gradient  G     = SQ(Ey_mat^T . cols)             as ops.linear_weight_gradient

with Ey_mat = Ey transposed to (B, Ho, Wo, O) and reshaped to (B*Ho*Wo, O).
Every quantizer sees its accumulator in the tensor's natural layout (NCHW for
activations and errors, (O, C, K, K) for gradients), so the flat index that
selects the stochastic-rounding word is the row-major index of that layout.

MAC counts include the products with padding zeros (the array multiplies the
whole im2col row), i.e. B*Ho*Wo * O * C*K*K per phase.
"""

from __future__ import annotations

import math

import numpy as np

from .config import CoreConfig
from .ops import MacCounter, _count
from .quant import QTensor, check_acc, shift_quantize


def _check_conv(op: str, x_name: str, x: QTensor, w: QTensor, pad: int) -> None:
    """Shape checks shared by the conv ops; every error names the offending tensor."""
    if w.q.ndim != 4 or w.q.shape[2] != w.q.shape[3] or w.q.shape[2] % 2 != 1:
        raise ValueError(f"{op}: weight w must be (O, C, K, K) with odd K, got {w.q.shape}")
    if x.q.ndim != 4:
        raise ValueError(f"{op}: {x_name} must be (B, C, H, W), got {x.q.shape}")
    if pad < 0:
        raise ValueError(f"{op}: pad must be >= 0, got {pad}")
    k = w.q.shape[2]
    if x.q.shape[2] + 2 * pad < k or x.q.shape[3] + 2 * pad < k:
        raise ValueError(f"{op}: {x_name} {x.q.shape} is smaller than the {k}x{k} kernel with pad {pad}")


def conv_output_size(h: int, w: int, k: int, pad: int) -> tuple[int, int]:
    return h + 2 * pad - k + 1, w + 2 * pad - k + 1


def im2col(q: np.ndarray, k: int, pad: int) -> np.ndarray:
    """(B, C, H, W) integers -> (B*Ho*Wo, C*k*k) rows, columns in (c, kh, kw) order.

    Pure data movement (the padding is zeros), dtype preserved.
    """
    b, c, h, w = q.shape
    ho, wo = conv_output_size(h, w, k, pad)
    qp = np.pad(q, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    patches = np.empty((b, ho, wo, c, k, k), dtype=q.dtype)
    for kh in range(k):
        for kw in range(k):
            patches[:, :, :, :, kh, kw] = qp[:, :, kh:kh + ho, kw:kw + wo].transpose(0, 2, 3, 1)
    return patches.reshape(b * ho * wo, c * k * k)


def col2im(cols: np.ndarray, shape: tuple[int, int, int, int], k: int, pad: int) -> np.ndarray:
    """Adjoint of im2col: scatter-add (B*Ho*Wo, C*k*k) rows back to (B, C, H, W).

    Overlapping contributions to one input pixel are summed in the dtype of
    ``cols`` (int64 accumulators on the integer path); the padding ring is
    discarded.
    """
    b, c, h, w = shape
    ho, wo = conv_output_size(h, w, k, pad)
    patches = np.asarray(cols).reshape(b, ho, wo, c, k, k)
    out = np.zeros((b, c, h + 2 * pad, w + 2 * pad), dtype=patches.dtype)
    for kh in range(k):
        for kw in range(k):
            out[:, :, kh:kh + ho, kw:kw + wo] += patches[:, :, :, :, kh, kw].transpose(0, 3, 1, 2)
    return out[:, :, pad:pad + h, pad:pad + w]


def _to_rows(q: np.ndarray) -> np.ndarray:
    """(B, O, Ho, Wo) -> (B*Ho*Wo, O): one row per output pixel, as im2col's rows."""
    b, o, ho, wo = q.shape
    return q.transpose(0, 2, 3, 1).reshape(b * ho * wo, o)


def conv2d_forward_acc(x: QTensor, w: QTensor, pad: int) -> np.ndarray:
    """The forward accumulator (B, O, Ho, Wo) in int64, before any check or SQ."""
    _check_conv("conv2d_forward", "input x", x, w, pad)
    if x.q.shape[1] != w.q.shape[1]:
        raise ValueError(f"conv2d_forward: input x has {x.q.shape[1]} channels, weight w {w.q.shape} expects {w.q.shape[1]}")
    b, _, h, wd = x.q.shape
    o, _, k, _ = w.q.shape
    ho, wo = conv_output_size(h, wd, k, pad)
    acc = im2col(x.q, k, pad).astype(np.int64) @ w.q.reshape(o, -1).T.astype(np.int64)
    return acc.reshape(b, ho, wo, o).transpose(0, 3, 1, 2)


def conv2d_forward(x: QTensor, w: QTensor, cfg: CoreConfig, pad: int = 1, relu: bool = False,
                   macs: MacCounter | None = None) -> QTensor:
    """Y = SQ(conv(X, W)), optionally through ReLU before the quantizer (cfg.act_rounding)."""
    acc = check_acc("conv2d_forward", conv2d_forward_acc(x, w, pad), cfg)
    _count(macs, "forward", acc.size * int(np.prod(w.q.shape[1:])))
    return shift_quantize(acc, x.exp + w.exp, cfg.act_rounding, cfg, relu=relu)


def conv2d_backward_error_acc(e: QTensor, w: QTensor, input_shape: tuple[int, int, int, int],
                              pad: int) -> np.ndarray:
    """The error accumulator (B, C, H, W) in int64: col2im(Ey_mat . W2), before any check or SQ."""
    _check_conv("conv2d_backward_error", "error e", e, w, pad)
    if len(input_shape) != 4:
        raise ValueError(f"conv2d_backward_error: input_shape must be (B, C, H, W), got {input_shape}")
    b, c, h, wd = input_shape
    o, _, k, _ = w.q.shape
    expected = (b, o) + conv_output_size(h, wd, k, pad)
    if e.q.shape != expected or c != w.q.shape[1]:
        raise ValueError(f"conv2d_backward_error: error e {e.q.shape} does not match weight {w.q.shape} "
                         f"and input {tuple(input_shape)} (expected {expected})")
    cols = _to_rows(e.q).astype(np.int64) @ w.q.reshape(o, -1).astype(np.int64)
    return col2im(cols, tuple(input_shape), k, pad)


def conv2d_backward_error(e: QTensor, w: QTensor, input_shape: tuple[int, int, int, int], cfg: CoreConfig,
                          pad: int = 1, macs: MacCounter | None = None) -> QTensor:
    """Ex = SQ(col2im(Ey_mat . W2)): the error propagated to the layer input (cfg.err_rounding).

    The overlapping contributions of the K*K kernel taps to one input pixel
    are summed in the int64 accumulator domain BEFORE the single SQ, never
    quantized separately: the hardware accumulates all O*K*K products that
    reach one input pixel into that pixel's one int32 accumulator, so the
    accumulator check (quant.check_acc) and the SQ see the complete sum,
    exactly as for ops.linear_backward_error's dot products.
    """
    acc = check_acc("conv2d_backward_error", conv2d_backward_error_acc(e, w, input_shape, pad), cfg)
    _count(macs, "backward", e.q.size * int(np.prod(w.q.shape[1:])))
    return shift_quantize(acc, e.exp + w.exp, cfg.err_rounding, cfg)


def conv2d_weight_gradient_acc(e: QTensor, x: QTensor, k: int, pad: int) -> np.ndarray:
    """The gradient accumulator (O, C, K, K) in int64: Ey_mat^T . im2col(X), summed over batch and pixels."""
    if e.q.ndim != 4 or x.q.ndim != 4:
        raise ValueError(f"conv2d_weight_gradient: error e {e.q.shape} and input x {x.q.shape} must both be (B, C, H, W)")
    b, c, h, wd = x.q.shape
    if e.q.shape[0] != b or e.q.shape[2:] != conv_output_size(h, wd, k, pad):
        raise ValueError(f"conv2d_weight_gradient: error e {e.q.shape} does not match input x {x.q.shape} "
                         f"for a {k}x{k} kernel with pad {pad}")
    acc = _to_rows(e.q).T.astype(np.int64) @ im2col(x.q, k, pad).astype(np.int64)
    return acc.reshape(e.q.shape[1], c, k, k)


def conv2d_weight_gradient(e: QTensor, x: QTensor, k: int, cfg: CoreConfig, key: int | None = None,
                           pad: int = 1, macs: MacCounter | None = None) -> QTensor:
    """G = SQ(Ey_mat^T . im2col(X)) of shape (O, C, K, K), rounded by cfg.grad_rounding."""
    acc = check_acc("conv2d_weight_gradient", conv2d_weight_gradient_acc(e, x, k, pad), cfg)
    _count(macs, "gradient", acc.size * e.q.shape[0] * e.q.shape[2] * e.q.shape[3])
    return shift_quantize(acc, e.exp + x.exp, cfg.grad_rounding, cfg, key=key)


def _pool_log2(pool: int) -> int:
    log2 = int(math.log2(pool)) if pool >= 1 else -1
    if pool < 1 or 2 ** log2 != pool:
        raise ValueError(f"pool size must be a power of two (the average is a shift), got {pool}")
    return 2 * log2


def avgpool_forward(x: QTensor, cfg: CoreConfig, pool: int = 2) -> QTensor:
    """Average pooling over pool x pool windows as an integer sum, then one SQ.

    The pool*pool int8 values of a window are summed in an accumulator; the
    division by pool*pool (a power of two) is folded into the exponent, so
    the result is SQ(sum) at exponent x.exp - log2(pool*pool) (cfg.act_rounding).
    Additions only, no MACs.
    """
    shift = _pool_log2(pool)
    if x.q.ndim != 4 or x.q.shape[2] % pool or x.q.shape[3] % pool:
        raise ValueError(f"avgpool_forward: input x must be (B, C, H, W) with H, W multiples of {pool}, got {x.q.shape}")
    b, c, h, w = x.q.shape
    acc = x.q.astype(np.int64).reshape(b, c, h // pool, pool, w // pool, pool).sum(axis=(3, 5))
    return shift_quantize(check_acc("avgpool_forward", acc, cfg), x.exp - shift, cfg.act_rounding, cfg)


def avgpool_backward_error(e: QTensor, pool: int = 2) -> QTensor:
    """Error through average pooling: each input pixel of a window gets e / pool**2.

    Exact, no quantizer: the int8 error is replicated over the window and the
    division is the exponent decrement log2(pool*pool).
    """
    shift = _pool_log2(pool)
    if e.q.ndim != 4:
        raise ValueError(f"avgpool_backward_error: error e must be (B, C, H, W), got {e.q.shape}")
    q = np.repeat(np.repeat(e.q, pool, axis=2), pool, axis=3)
    return QTensor(q, e.exp - shift)
