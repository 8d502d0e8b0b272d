"""Softmax cross-entropy error in integers: the loss the core computes itself.

From int8 logits ``q`` (exponent ``e``), labels ``y`` and the batch size
``B``, the error ``(softmax(q * 2**e) - onehot(y)) / B`` on the fixed grid
``2**loss_fixed_exp`` with shifts, two small tables and integer adds only,
in the base-2 log domain (docs/eoq_arithmetic.md, "Output error on the
device").  Per row of the batch:

    d[c]  = max(q) - q[c]                                   0..255
    z[c]  = d[c] * LOG2E * 2**e                             log2 of 1/(unnormalized p), Q16
    x[c]  = 2**(-z[c])                                      Q24, EXP2 table
    ls    = log2(sum x)                                     Q16, LOG2 table
    a[c]  = z[c] + ls + log2(B) - (24 + grid bits)          Q16
    g[c]  = 2**(-a[c])  on the grid, for every c but the top  = p[c] / B * 2**-loss_fixed_exp
    w     = 2**(grid bits - log2(B))                        p = 1 on the grid
    g[top] = w - sum of the other g                         top = argmax(q), first of ties
    err[c] = g[c] - w * (c == y)

The tables see only the classes below the top, whose probabilities they
give to a relative 2**-16 or so; the top's probability and the label's
``p[y] - 1`` come from them by subtraction, so neither overshoots 1 nor
loses the small remainder (a confident prediction, right or wrong, puts
``|err|`` next to ``w``, a power of two for a power-of-two batch, where a
relative error would flip the SQ exponent). The int32 grid tensor then goes through the core's own SQ
(``flag.quantize_error``), as the float error on the host does
(golden_model/loss.py). Both tables hold 256 entries of (value, difference to
the next) and are read with a linear interpolation on the low 8 bits.
"""

from __future__ import annotations

import math

import numpy as np

from .config import CoreConfig
from .flag import quantize_error
from .loss import check_labels
from .quant import QTensor

LOG_FRAC = 16                       # log2-domain values are in units of 2**-16
TABLE_BITS = 8                      # a table is indexed by the top 8 bits of a Q16 fraction
INTERP_BITS = LOG_FRAC - TABLE_BITS
EXP_BITS = 24                       # EXP2 table: 2**-(i/256) in Q24
LOG2E = round(math.log2(math.e) * 2**LOG_FRAC)      # 94548: nats to Q16 bits
#: z beyond this many whole bits makes 2**-z flush to zero in Q24 (with rounding)
Z_LIMIT = (EXP_BITS + 2) << LOG_FRAC


def _table(values) -> np.ndarray:
    """(value, next - value) pairs of a 257-point table, as the hardware ROM stores them."""
    v = np.array(values, dtype=np.int64)
    return np.stack([v[:-1], v[1:] - v[:-1]], axis=1)


#: 2**(-i/256) in Q24, i = 0..255, with the difference to the next point
EXP2_TABLE = _table([round(2**EXP_BITS * 2 ** (-i / 2**TABLE_BITS)) for i in range(2**TABLE_BITS + 1)])
#: log2(1 + i/256) in Q16, i = 0..255, with the difference to the next point
LOG2_TABLE = _table([round(2**LOG_FRAC * math.log2(1 + i / 2**TABLE_BITS)) for i in range(2**TABLE_BITS + 1)])


def interpolate(table: np.ndarray, frac) -> np.ndarray:
    """Table value at a Q16 fraction: entry of the top 8 bits plus (difference * low 8 bits) / 256,
    rounded half up (an arithmetic shift)."""
    frac = np.asarray(frac, dtype=np.int64)
    hi, lo = frac >> INTERP_BITS, frac & ((1 << INTERP_BITS) - 1)
    return table[hi, 0] + ((table[hi, 1] * lo + (1 << (INTERP_BITS - 1))) >> INTERP_BITS)


def round_right_shift(x, s) -> np.ndarray:
    """x >> s rounded half up, for x >= 0 and s >= 0 (s = 0 leaves x)."""
    x, s = np.asarray(x, dtype=np.int64), np.asarray(s, dtype=np.int64)
    half = np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)
    return (x + half) >> s


def exp2_neg(z, scale_bits: int = EXP_BITS) -> np.ndarray:
    """round(2**(-z / 2**16) * 2**scale_bits): the EXP2 table, then a right shift by the whole bits of
    z plus 24 - scale_bits (rounded half up; beyond 25 bits the result is 0).

    z may be negative down to -(24 - scale_bits) whole bits.
    """
    z = np.asarray(z, dtype=np.int64)
    shift = (z >> LOG_FRAC) + (EXP_BITS - scale_bits)
    if np.any(shift < 0):
        raise ValueError(f"exp2_neg: z = {int(z.min())} is below -{EXP_BITS - scale_bits} whole bits")
    mantissa = interpolate(EXP2_TABLE, z & ((1 << LOG_FRAC) - 1))
    return np.where(shift > EXP_BITS + 1, 0, round_right_shift(mantissa, np.minimum(shift, EXP_BITS + 1)))


def log2_q16(x) -> np.ndarray:
    """log2(x) in Q16 for integers x >= 1: the leading one's position and the LOG2 table on the
    16 bits below it (floor)."""
    x = np.asarray(x, dtype=np.int64)
    if np.any(x < 1):
        raise ValueError("log2_q16 takes integers >= 1")
    whole = np.frexp(x.astype(np.float64))[1].astype(np.int64) - 1     # exact below 2**53
    below = np.where(whole >= LOG_FRAC, x >> np.maximum(whole - LOG_FRAC, 0),
                     x << np.maximum(LOG_FRAC - whole, 0))
    return (whole << LOG_FRAC) + interpolate(LOG2_TABLE, below - (1 << LOG_FRAC))


def log2e_scaled(d, exp: int) -> np.ndarray:
    """d * LOG2E * 2**exp in Q16, floor, capped at Z_LIMIT (where 2**-z is zero anyway)."""
    prod = np.asarray(d, dtype=np.int64) * LOG2E
    z = prod << min(exp, 8) if exp >= 0 else prod >> min(-exp, 40)     # beyond either, z saturates or is 0
    return np.minimum(z, Z_LIMIT)


def check_grid(cfg: CoreConfig) -> int:
    """Grid bits G = -loss_fixed_exp; the table's Q24 must reach the grid (G <= 24)."""
    bits = -cfg.loss_fixed_exp
    if not 0 <= bits <= EXP_BITS:
        raise ValueError(f"the integer loss needs loss_fixed_exp in [-{EXP_BITS}, 0], got {cfg.loss_fixed_exp}")
    return bits


def int_softmax_grid(logits: QTensor, labels, cfg: CoreConfig) -> tuple[np.ndarray, np.ndarray]:
    """The error on the grid 2**loss_fixed_exp (int64, |err| <= 2**-loss_fixed_exp) and each sample's
    cross-entropy in Q16 bits (-log2 p[y] * 2**16); labels must be classes."""
    batch, classes = logits.q.shape
    return softmax_grid(logits, check_labels(labels, batch, classes), cfg)


def softmax_grid(logits: QTensor, labels, cfg: CoreConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`int_softmax_grid` as the core's LOSS runs it: a row whose label is not a class (outside
    [0, classes), e.g. a padding row) gets no one-hot term and a loss of 0."""
    batch, classes = logits.q.shape
    labels = np.asarray(labels, dtype=np.int64).reshape(batch)
    grid_bits = check_grid(cfg)
    q = logits.q.astype(np.int64)
    z = log2e_scaled(q.max(axis=1, keepdims=True) - q, logits.exp)
    ls = log2_q16(exp2_neg(z).sum(axis=1, keepdims=True))
    lb = log2_q16(np.array(batch))[()]
    a = z + ls + lb - ((EXP_BITS + grid_bits) << LOG_FRAC)
    whole = exp2_neg(lb, scale_bits=grid_bits)[()]              # 2**grid_bits / B: p = 1 on the grid
    g = exp2_neg(a, scale_bits=0)
    rows, top = np.arange(batch), np.argmax(q, axis=1)
    g[rows, top] = 0
    g[rows, top] = whole - g.sum(axis=1)
    valid = (labels >= 0) & (labels < classes)
    g[rows[valid], labels[valid]] -= whole
    bits = np.zeros(batch, dtype=np.int64)
    bits[valid] = z[rows[valid], labels[valid]] + ls[valid, 0] - (EXP_BITS << LOG_FRAC)
    return g, bits


def int_output_error(logits: QTensor, labels, cfg: CoreConfig) -> tuple[QTensor, float]:
    """Integer twin of :func:`golden_model.loss.output_error`: int8 SQ error and the mean loss (nats)."""
    grid, bits = int_softmax_grid(logits, labels, cfg)
    error = quantize_error(grid, cfg.loss_fixed_exp, cfg)
    return error, float(bits.mean()) * math.log(2) / 2**LOG_FRAC
