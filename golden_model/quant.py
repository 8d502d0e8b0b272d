"""EOQ quantizers on integers: every function here is what a hardware unit computes.

A tensor is a :class:`QTensor`: int8 mantissas ``q`` and one integer exponent
``exp`` (value = q * 2**exp).  Re-scaling is an arithmetic shift, rounding is
one addition before the shift, saturation is a clamp to [-127, 127].  See
docs/eoq_arithmetic.md for the choices made where the paper is silent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ROUNDING_MODES, CoreConfig
from .prng import random_words


@dataclass(frozen=True)
class QTensor:
    """int8 mantissas with a per-tensor power-of-two scale: value = q * 2**exp."""

    q: np.ndarray
    exp: int

    def __post_init__(self):
        check_int8("QTensor.q", self.q)
        if not isinstance(self.exp, (int, np.integer)) or isinstance(self.exp, bool):
            raise ValueError(f"QTensor.exp must be an int, got {type(self.exp).__name__}")
        object.__setattr__(self, "exp", int(self.exp))

    @property
    def shape(self):
        return self.q.shape

    def to_float(self) -> np.ndarray:
        return self.q.astype(np.float64) * 2.0 ** self.exp


def check_int8(name: str, q) -> None:
    """Raise ValueError unless q is an int8 ndarray (values are then in [-128, 127])."""
    if not isinstance(q, np.ndarray):
        raise ValueError(f"{name} must be a numpy int8 array, got {type(q).__name__}")
    if q.dtype != np.int8:
        raise ValueError(f"{name} must have dtype int8, got {q.dtype}; convert with to_int8() after range-checking")


def to_int8(name: str, values) -> np.ndarray:
    """Convert integer values to int8, raising ValueError if any is outside [-128, 127]."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < -128 or arr.max() > 127):
        raise ValueError(f"{name} has values in [{arr.min()}, {arr.max()}], outside int8 [-128, 127]")
    return arr.astype(np.int8)


def check_acc(name: str, acc: np.ndarray, cfg: CoreConfig) -> np.ndarray:
    """Return acc as int64, raising OverflowError if it does not fit the accumulator width."""
    acc = np.asarray(acc, dtype=np.int64)
    if acc.size and (acc.min() < cfg.acc_min or acc.max() > cfg.acc_max):
        raise OverflowError(
            f"{name} needs more than {cfg.acc_bits}-bit accumulators "
            f"(range [{acc.min()}, {acc.max()}]); reduce the layer or batch size")
    return acc


def bit_length(m: int) -> int:
    """Bits needed for the non-negative integer m (0 for 0): acc_bits minus the leading-zero count."""
    if m < 0:
        raise ValueError(f"bit_length takes a non-negative magnitude, got {m}")
    return int(m).bit_length()


def round_shift(x, shift: int, mode: str, cfg: CoreConfig, key: int | None = None) -> np.ndarray:
    """Arithmetic right shift of integers by ``shift`` bits with rounding.

    nearest:    (x + 2**(s-1) - [x < 0]) >> s, i.e. round half away from zero.
    stochastic: (x + (r & (2**s - 1))) >> s with r the generator's word for
                each element (flat index order), i.e. floor(x / 2**s + u),
                u uniform in [0, 1): unbiased.
    Shifts above cfg.max_shift flush to zero.
    """
    x = _as_int64("round_shift input", x)
    if mode not in ROUNDING_MODES:
        raise ValueError(f"rounding mode must be 'nearest' or 'stochastic', got {mode!r}")
    if mode == "stochastic" and key is None:
        raise ValueError("stochastic rounding needs a generator key")
    if shift < 0:
        raise ValueError(f"round_shift takes a non-negative shift, got {shift}")
    if shift == 0:
        return x.copy()
    if shift > cfg.max_shift:
        return np.zeros_like(x)
    if mode == "nearest":
        return (x + (1 << (shift - 1)) - (x < 0)) >> shift
    r = random_words(key, x.size).astype(np.int64).reshape(x.shape)
    return (x + (r & ((1 << shift) - 1))) >> shift


def _as_int64(name: str, x) -> np.ndarray:
    """x as an int64 array; integer tensors only (no silent truncation of floats)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def saturate(x, cfg: CoreConfig) -> np.ndarray:
    """Clamp to the symmetric int8 range [-127, 127] (never wraps)."""
    return np.asarray(np.clip(_as_int64("saturate input", x), cfg.qmin, cfg.qmax).astype(np.int8))


def sq_shift(acc: np.ndarray, cfg: CoreConfig) -> int:
    """Shift of SQ from max|acc| by cfg.scale_rounding, at least 0.

    "up" (the core): bit_length(max|acc|) - 7, so the maximum lands in [64, 127].
    "nearest" (WAGE's Shift): round(log2 max|acc|) - 7, so the maximum lands
    in [90.5, 181) and saturates above 127 (WAGE's clip).
    """
    acc = _as_int64("sq_shift input", acc)
    peak = int(np.abs(acc).max()) if acc.size else 0
    return max(0, scale_exponent(peak, cfg.scale_rounding) - (cfg.data_bits - 1))


SCALE_ROUNDINGS = ("up", "nearest")


def scale_exponent(peak: int, rounding: str) -> int:
    """The exponent of R(x) for max|x| = peak >= 0, as an exact integer rule.

    up:      bit_length(peak), i.e. ceil(log2(peak + 1)); 0 for 0.
    nearest: round(log2 peak), ties (never exact for an integer) up: with
             b = bit_length(peak), b - 1 plus 1 when peak**2 >= 2**(2b - 1);
             in hardware a comparison of peak with ceil(2**(b - 1/2)), one
             constant per bit length.  0 for 0.
    """
    if rounding not in SCALE_ROUNDINGS:
        raise ValueError(f"scale rounding must be one of {SCALE_ROUNDINGS}, got {rounding!r}")
    b = bit_length(peak)
    if rounding == "up" or peak == 0:
        return b
    return b - 1 + int(peak * peak >= 1 << (2 * b - 1))


def shift_quantize(acc, exp: int, mode: str, cfg: CoreConfig, key: int | None = None,
                   relu: bool = False) -> QTensor:
    """SQ: requantize an integer tensor (value = acc * 2**exp) to int8.

    The shift comes from the tensor's own max|x| (a leading-zero count in
    hardware), so the largest magnitude lands in [64, 127]; values are then
    rounded and saturated (rounding 127.5 up gives 128, which saturates).
    With relu=True negative values are zeroed first.
    """
    acc = _as_int64("shift_quantize input", acc)
    if relu:
        acc = np.maximum(acc, 0)
    shift = sq_shift(acc, cfg)
    q = saturate(round_shift(acc, shift, mode, cfg, key), cfg)
    return QTensor(q, exp + shift)


def shift_to_exp(t: QTensor, exp: int, cfg: CoreConfig) -> np.ndarray:
    """Re-express t at a coarser-or-equal exponent (round to nearest); int64 result."""
    if exp < t.exp:
        raise ValueError(f"shift_to_exp only coarsens: target exponent {exp} < tensor exponent {t.exp}")
    return round_shift(t.q, exp - t.exp, "nearest", cfg)


def align_add(a: QTensor, b: QTensor, cfg: CoreConfig, relu: bool = False) -> QTensor:
    """a + b (b may be a scalar tensor, broadcast): align both to the larger
    exponent with round-to-nearest, add as 9-bit integers, then SQ (nearest)."""
    exp = max(a.exp, b.exp)
    total = shift_to_exp(a, exp, cfg) + shift_to_exp(b, exp, cfg)
    return shift_quantize(total, exp, "nearest", cfg, relu=relu)


def fixed_point(x, exp: int) -> np.ndarray:
    """Direct quantization of floats onto the grid 2**exp, round half away from zero.

    int64 result; magnitudes beyond 2**62 clamp there (every caller saturates
    further to int8); NaN or infinity raises ValueError.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("fixed_point input holds NaN or infinity")
    scaled = np.clip(x * 2.0 ** (-exp), -FIXED_POINT_LIMIT, FIXED_POINT_LIMIT)
    magnitude = np.abs(scaled)
    whole = np.floor(magnitude)
    rounded = whole + (magnitude - whole >= 0.5)
    return (np.sign(scaled) * rounded).astype(np.int64)


FIXED_POINT_LIMIT = 2.0 ** 62


def direct_quantize(x, exp: int, cfg: CoreConfig) -> QTensor:
    """Q(x): floats to int8 on the fixed grid 2**exp, saturating to [-127, 127]."""
    return QTensor(saturate(fixed_point(x, exp), cfg), exp)


def update_weights(w: QTensor, g: QTensor, lr_shift: int, mode: str, cfg: CoreConfig,
                   key: int | None = None) -> QTensor:
    """The 8-bit integer weight update, in the weight's own fixed scale:

        U = round(g * 2**(g.exp - lr_shift - w.exp))   (lr = 2**-lr_shift)
        W <- saturate(W - U)

    U is rounded by ``mode`` (stochastic by default, so updates below one
    weight LSB still happen with the right probability) and saturated to
    int8 like every stored tensor; W saturates at +-127 and never wraps.
    """
    if w.q.shape != g.q.shape:
        raise ValueError(f"gradient shape {g.q.shape} does not match weight shape {w.q.shape}")
    if mode not in ROUNDING_MODES:
        raise ValueError(f"rounding mode must be 'nearest' or 'stochastic', got {mode!r}")
    if not isinstance(lr_shift, (int, np.integer)) or lr_shift < 0:
        raise ValueError(f"learning rate must be 2**-lr_shift with lr_shift >= 0, got lr_shift={lr_shift}")
    shift = w.exp + lr_shift - g.exp
    if shift >= 0:
        update = round_shift(g.q, shift, mode, cfg, key)
    else:
        update = g.q.astype(np.int64) << min(-shift, cfg.data_bits + 1)
    update = saturate(update, cfg).astype(np.int64)
    return QTensor(saturate(w.q.astype(np.int64) - update, cfg), w.exp)
