"""Arithmetic variants of the golden model: each choice where EOQ's predecessors differ, as a switch.

An :class:`Arithmetic` is passed to ResMLP / ResCNN (``arithmetic=``); its
default is the core's arithmetic, bit for bit (tests/test_arithmetic.py).  The
variants, each exact in integers (docs/eoq_arithmetic.md, "Arithmetic variants"):

  update          "sgd": U = lr * G in the weight's scale (the core).
                  "normalized": WAGE's lr * G / R(G): the gradient's int8
                  mantissas taken as a fraction of the weight range, so
                  U = SR(G.q * 2**-lr_shift) weight steps, whatever G's exponent.
  master_bits     8: int8 weights updated in place (the core).  16 (up to 24):
                  a master copy of that width at exponent e_W - (bits - 8),
                  updated with the same rounding; the forward and backward
                  passes use its int8 view, round to nearest and saturate.
  errors          "sq": one exponent per error tensor (the core); "flag":
                  WAGEUBN's flag quantization (golden_model/flag.py).
  scale           R(x) of every SQ: "up" (the core, max in [64, 127]) or
                  "nearest" (WAGE's Shift, max in [90.5, 181) clipped to 127).
  multiplier_exp  the Fixup multiplier's grid: -6 (range +-2, the core) or
                  -5 (range +-4: one more integer bit, one fraction bit less).
  loss            the output error: "float" (softmax in float64 on the host,
                  golden_model/loss.py) or "int" (the integer algorithm of
                  golden_model/int_loss.py, which the core runs itself).

The two quantizer switches (errors, scale) reach every op through the
configuration: :func:`arithmetic_config` returns an :class:`ArithmeticConfig`,
a CoreConfig whose ``error_format`` and ``scale_rounding`` follow the variant
(and whose accumulators are FLAG_EXTRA_BITS wider for flag errors).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .config import CoreConfig
from .flag import FLAG_EXTRA_BITS
from .int_loss import int_output_error
from .loss import output_error
from .quant import SCALE_ROUNDINGS, QTensor, round_shift, saturate, update_weights

UPDATES = ("sgd", "normalized")
ERROR_FORMATS = ("sq", "flag")
MULTIPLIER_EXPS = (-6, -5)
MASTER_BITS = range(8, 25)
#: loss name -> its output error: (logits, labels, cfg) -> (int8 error, mean cross-entropy)
LOSSES = {"float": output_error, "int": int_output_error}


@dataclass(frozen=True, kw_only=True)
class Arithmetic:
    """One arithmetic variant (module docstring); the default is the core's."""

    update: str = "sgd"
    master_bits: int = 8
    errors: str = "sq"
    scale: str = "up"
    multiplier_exp: int = -6
    loss: str = "float"

    def __post_init__(self):
        for name, value, allowed in (("update", self.update, UPDATES), ("errors", self.errors, ERROR_FORMATS),
                                     ("scale", self.scale, SCALE_ROUNDINGS),
                                     ("multiplier_exp", self.multiplier_exp, MULTIPLIER_EXPS),
                                     ("master_bits", self.master_bits, MASTER_BITS),
                                     ("loss", self.loss, LOSSES)):
            if value not in allowed:
                raise ValueError(f"Arithmetic.{name} must be one of {list(allowed)}, got {value!r}")

    @property
    def output_error(self):
        """The output error function of this variant's loss (LOSSES)."""
        return LOSSES[self.loss]

    @property
    def label(self) -> str:
        """Short name: "core" for the default, else the changed switches."""
        default = Arithmetic()
        changed = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != getattr(default, f.name)]
        return ",".join(changed) or "core"


CORE = Arithmetic()


@dataclass(frozen=True)
class ArithmeticConfig(CoreConfig):
    """A CoreConfig whose quantizers follow an Arithmetic variant (golden model only)."""

    arithmetic: Arithmetic = CORE

    @property
    def scale_rounding(self) -> str:
        return self.arithmetic.scale

    @property
    def error_format(self) -> str:
        return self.arithmetic.errors

    @property
    def extra_acc_bits(self) -> int:
        return FLAG_EXTRA_BITS if self.arithmetic.errors == "flag" else 0

    @property
    def acc_min(self) -> int:
        return -(2 ** (self.acc_bits + self.extra_acc_bits - 1))

    @property
    def acc_max(self) -> int:
        return 2 ** (self.acc_bits + self.extra_acc_bits - 1) - 1


def arithmetic_config(cfg: CoreConfig, arithmetic: Arithmetic) -> CoreConfig:
    """cfg itself for the core's quantizers, else an ArithmeticConfig with the variant's."""
    if arithmetic.errors == CoreConfig.error_format and arithmetic.scale == CoreConfig.scale_rounding:
        return cfg
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(CoreConfig)}
    return ArithmeticConfig(**fields, arithmetic=arithmetic)


def normalized_gradient(g: QTensor, w: QTensor) -> QTensor:
    """WAGE's G / R(G) scaled to the weight range R(W) = 2**(e_W + 7): G's mantissas at W's exponent."""
    return QTensor(g.q, w.exp)


def master_view(master: np.ndarray, bits: int, exp: int, cfg: CoreConfig) -> QTensor:
    """The int8 weights the passes use: the master (at exp - (bits - 8)) rounded to nearest onto
    the grid 2**exp and saturated."""
    return QTensor(saturate(round_shift(master, bits - cfg.data_bits, "nearest", cfg), cfg), exp)


def master_update(master: np.ndarray, w_exp: int, g: QTensor, lr_shift: int, bits: int, mode: str,
                  cfg: CoreConfig, key: int | None) -> np.ndarray:
    """M <- sat(M - sat(round(G * 2**(e_G - lr_shift - e_M)))) on the master grid e_M = w_exp - (bits - 8),
    saturating at +-(2**(bits - 1) - 1): quant.update_weights at the master's width."""
    limit = 2 ** (bits - 1) - 1
    shift = w_exp - (bits - cfg.data_bits) + lr_shift - g.exp
    if shift >= 0:
        update = round_shift(g.q, shift, mode, cfg, key)
    else:
        update = g.q.astype(np.int64) << min(-shift, bits + 1)
    return np.clip(master - np.clip(update, -limit, limit), -limit, limit)


class ParameterUpdate:
    """The weight update of one network under an Arithmetic: plain (quant.update_weights on int8
    weights) or with a master copy, with the true or the normalized gradient."""

    def __init__(self, arithmetic: Arithmetic, cfg: CoreConfig, params: dict[str, QTensor]):
        self.arithmetic, self.cfg = arithmetic, cfg
        extra = arithmetic.master_bits - cfg.data_bits
        self.master = {name: p.q.astype(np.int64) << extra for name, p in params.items()} if extra else {}

    def __call__(self, name: str, w: QTensor, g: QTensor, lr_shift: int, key: int | None) -> QTensor:
        a, cfg = self.arithmetic, self.cfg
        if a.update == "normalized":
            g = normalized_gradient(g, w)
        if not self.master:
            return update_weights(w, g, lr_shift, cfg.update_rounding, cfg, key)
        self.master[name] = master_update(self.master[name], w.exp, g, lr_shift, a.master_bits,
                                          cfg.update_rounding, cfg, key)
        return master_view(self.master[name], a.master_bits, w.exp, cfg)
