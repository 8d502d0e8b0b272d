"""The golden arithmetic as Amaranth expressions: the specification the checks prove the units against.

Each function transliterates one golden_model function line by line, with
wide signed intermediates and plain variable shifts, so it shares no code and
no structure with the gateware it specifies (hw/rounding.py decodes the shift
bit by bit; this module shifts).  tests/test_formal.py checks these
expressions against golden_model on sampled inputs, so the chain is
gateware == spec (proven) and spec == golden (sampled, every edge case).
"""

from amaranth import Const, Mux, Value, signed

from golden_model.config import CoreConfig
from golden_model.prng import MASK32, XS32_SHIFTS, masked_shift_word

WORD_BITS = MASK32.bit_length()


def wide(cfg: CoreConfig):
    """A signed shape that holds every intermediate value without overflow."""
    return signed(cfg.acc_bits + cfg.max_shift + 4)


def saturate(x: Value, cfg: CoreConfig) -> Value:
    """golden ``quant.saturate`` of one element: clip to [qmin, qmax]."""
    return Mux(x > cfg.qmax, cfg.qmax, Mux(x < cfg.qmin, cfg.qmin, x))


def round_shift(x: Value, s: Value, stochastic: Value, r: Value, cfg: CoreConfig) -> Value:
    """golden ``quant.round_shift`` of one element; s is unsigned, r this element's random word."""
    x = x.as_signed()
    one = Const(1, wide(cfg))
    nearest = (x + ((one << s) >> 1) - (x < 0)) >> s
    random = (x + (r & ((one << s) - 1))) >> s
    return Mux(s == 0, x, Mux(s > cfg.max_shift, 0, Mux(stochastic, random, nearest)))


def bit_length(m: Value, cfg: CoreConfig) -> Value:
    """golden ``quant.bit_length`` of a non-negative value: how many powers of two it reaches."""
    return sum((m >= (1 << j)) for j in range(cfg.acc_bits + 1))


def sq_shift(x: Value, cfg: CoreConfig) -> Value:
    """golden ``quant.sq_shift`` of a one-element tensor: max(0, bit_length(|x|) - (data_bits - 1))."""
    x = x.as_signed()
    excess = bit_length(Mux(x < 0, -x, x), cfg) - (cfg.data_bits - 1)
    return Mux(excess > 0, excess, 0).as_unsigned()      # never negative


def xs32(x: Value) -> Value:
    """golden ``prng.xs32``: one xorshift32 step."""
    left1, right, left2 = XS32_SHIFTS
    x = (x ^ (x << left1))[:WORD_BITS]
    x = x ^ (x >> right)
    return (x ^ (x << left2))[:WORD_BITS]


def first_word(key: Value) -> Value:
    """golden ``prng.random_words(key, 1)[0]``: the word of element 0 (counter = key), as golden
    ``prng.masked_shift_word`` (test_prng checks them against xs32(xs32(x)); written out nested
    against the hardware's, the solver has to prove two XOR networks equal and takes minutes)."""
    return masked_shift_word(key)[:WORD_BITS]


def shift_quantize(x: Value, shift: Value, stochastic: Value, r: Value, cfg: CoreConfig) -> Value:
    """``saturate(round_shift(x, shift, mode))``: golden ``shift_quantize`` once the shift is chosen."""
    return saturate(round_shift(x, shift, stochastic, r, cfg), cfg)


def update_weight(w: Value, g: Value, shift: Value, stochastic: Value, r: Value, cfg: CoreConfig) -> Value:
    """golden ``quant.update_weights`` of one element; shift = w.exp + lr_shift - g.exp (signed, any value)."""
    shift = shift.as_signed()
    right = shift[:(cfg.max_shift + 1).bit_length()]          # the shift itself when 0 <= shift <= max_shift
    down = Mux(shift > cfg.max_shift, 0, round_shift(g, right, stochastic, r, cfg))
    limit = cfg.data_bits + 1
    left = Mux(-shift > limit, limit, -shift)[:limit.bit_length()]
    up = g.as_signed() << left
    update = saturate(Mux(shift >= 0, down, up), cfg)
    return saturate(w.as_signed() - update, cfg)


__all__ = ["WORD_BITS", "saturate", "round_shift", "bit_length", "sq_shift", "xs32", "first_word",
           "shift_quantize", "update_weight"]
