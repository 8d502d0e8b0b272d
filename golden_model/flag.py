"""Flag quantization of errors (WAGEUBN's E2), the variant of the core's one-exponent SQ.

SQ gives a whole error tensor one grid, 2**(e + s) with the shift s from its
maximum (quant.sq_shift), so elements below one step round to 0 or +-1.  Flag
quantization keeps a second, finer grid for them, chosen per element by a flag
bit (WAGEUBN, yang-yk/wageubn Quantize.py ``fe2``):

    coarse step c = 2**(e + s)           (R(x) by cfg.scale_rounding, as SQ)
    |x| >= c:  x on the grid c,          int8 mantissa, saturating at +-127
    |x| <  c:  x on the grid c * 2**-7   int8 mantissa (|q| <= 128, i.e. <= one coarse step)

both with round half away from zero.  A :class:`FlagTensor` holds the values on
the fine grid: ``q`` (int16) is the fine mantissa of a flagged-small element or
128 x the coarse mantissa of the others, ``exp`` the fine exponent.  That is
exactly what the hardware multiplies: a 9-bit error (flag and int8), the
product of a coarse element shifted left by 7 into an accumulator 7 bits wider
(``FLAG_EXTRA_BITS``).  Every consumer of an error (products, ReLU mask, sums)
computes on ``q`` as on an int8 error, so the golden model's ops take either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import CoreConfig
from .quant import QTensor, round_shift, saturate, shift_quantize, sq_shift

FLAG_EXTRA_BITS = 7


@dataclass(frozen=True)
class FlagTensor(QTensor):
    """A flag-quantized error: values q * 2**exp on the fine grid, q int16 with |q| <= 128 or a
    multiple of 128 up to 127 * 128 (the coarse elements)."""

    def __post_init__(self):
        if not isinstance(self.q, np.ndarray) or self.q.dtype != np.int16:
            raise ValueError(f"FlagTensor.q must be an int16 array, got {getattr(self.q, 'dtype', type(self.q))}")
        coarse = np.abs(self.q.astype(np.int64)) > 1 << FLAG_EXTRA_BITS
        limit = 127 << FLAG_EXTRA_BITS
        if np.any(coarse & ((self.q % (1 << FLAG_EXTRA_BITS) != 0) | (np.abs(self.q.astype(np.int64)) > limit))):
            raise ValueError("FlagTensor.q holds a value that is neither fine (|q| <= 128) nor 128 x an int8 mantissa")
        object.__setattr__(self, "exp", int(self.exp))


def flag_quantize(acc, exp: int, cfg: CoreConfig) -> FlagTensor:
    """Flag quantization of the integer tensor acc * 2**exp (module docstring), round to nearest."""
    acc = np.asarray(acc, dtype=np.int64)
    shift = sq_shift(acc, cfg)
    coarse = saturate(round_shift(acc, shift, "nearest", cfg), cfg).astype(np.int64) << FLAG_EXTRA_BITS
    if shift >= FLAG_EXTRA_BITS:
        fine = round_shift(acc, shift - FLAG_EXTRA_BITS, "nearest", cfg)
    else:
        fine = acc << (FLAG_EXTRA_BITS - shift)
    small = np.abs(acc) < 1 << shift
    return FlagTensor(np.where(small, fine, coarse).astype(np.int16), exp + shift - FLAG_EXTRA_BITS)


def quantize_error(acc, exp: int, cfg: CoreConfig) -> QTensor:
    """The quantizer of a back-propagated error: SQ (cfg.err_rounding) or, where the configuration's
    error_format is "flag", flag quantization."""
    if cfg.error_format == "flag":
        return flag_quantize(acc, exp, cfg)
    return shift_quantize(acc, exp, cfg.err_rounding, cfg)
