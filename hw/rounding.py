"""Shared combinational datapath: golden ``saturate(round_shift(x, s, mode))``.

Used by :class:`hw.shift_quantizer.ShiftQuantizer` and
:class:`hw.update_unit.UpdateUnit`, so both units round bit-exactly alike.
"""

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned

from golden_model.config import CoreConfig
from golden_model.prng import MASK32

from .register_copies import RegisterCopies

#: Width of one generator word (and of the stochastic-rounding random input).
WORD_BITS = MASK32.bit_length()


def shift_bits(cfg: CoreConfig) -> int:
    """Bits of an unsigned right-shift amount: enough for ``max_shift + 1`` (= flush)."""
    return (cfg.max_shift + 1).bit_length()


def shift_shape(cfg: CoreConfig):
    """Unsigned shape of a right-shift amount (0 .. 2**shift_bits - 1; above max_shift flushes)."""
    return unsigned(shift_bits(cfg))


def signed_shift_shape(cfg: CoreConfig):
    """Signed shape of an update shift w_exp + lr_shift - g_exp (left shifts are negative):
    wide enough for any difference of two cfg.exp_bits exponents plus a learning-rate shift."""
    return signed(cfg.exp_bits + 2)


def data_shape(cfg: CoreConfig):
    """Signed shape of one stored tensor element (int8)."""
    return signed(cfg.data_bits)


def acc_shape(cfg: CoreConfig):
    """Signed shape of one accumulator."""
    return signed(cfg.acc_bits)


def saturate(x: Value, cfg: CoreConfig) -> Value:
    """Clamp to [cfg.qmin, cfg.qmax] (golden ``saturate``); result is data_shape(cfg)."""
    clamped = Mux(x > cfg.qmax, cfg.qmax, Mux(x < cfg.qmin, cfg.qmin, x))
    return clamped.as_signed()[:cfg.data_bits].as_signed()


class ShiftDecode:
    """Lane-independent decode of a right-shift amount, shared by all lanes of a unit.

    ``mask`` = 2**s - 1 and ``half`` = 2**(s-1) (0 for s = 0) are built per
    bit (bit j of mask set iff j < s), so no wide variable shifter is needed;
    ``flush`` = s > cfg.max_shift.  With ``registered=True`` the decode is
    registered (it follows ``shift`` one cycle later), for units whose shift
    is fixed per tensor: the compares then leave the per-element path.
    ``lanes`` (registered only) gives each lane its own copy of the shift,
    registered like the decode, for :func:`shift_or_flush`: one register
    driving every lane's shifter was a route across the unit; and its own
    copy of ``fit_mask``, registered from the decoded one, so a cycle after
    it (the decode's compares and the route to the lanes each get a clock
    period; the 8x8 core's critical path at 60 MHz, part 19).
    ``fit_width`` adds ``fit_mask``, bit j set iff j >= s + data_bits - 1:
    the bits of a ``fit_width``-bit total that must all equal its sign for
    ``total >> s`` to fit the data width (:func:`shift_saturate_parts`).
    """

    def __init__(self, m: Module, shift: Value, cfg: CoreConfig, name: str = "rshift", registered: bool = False,
                 lanes: int = 0, fit_width: int = 0):
        if lanes and not registered:
            raise ValueError("per-lane shift copies are registered: they need registered=True")
        n = cfg.max_shift
        self.cfg = cfg
        self.shift = shift
        self.lane_shifts, self.lane_fit_masks = [], []
        if lanes:
            m.submodules[f"{name}_copies"] = copies = RegisterCopies(len(shift), copies=lanes)
            m.d.comb += copies.i.eq(shift)
            self.lane_shifts = [copies.o[lane] for lane in range(lanes)]
        self.mask = Signal(n, name=f"{name}_mask")
        self.half = Signal(n, name=f"{name}_half")
        self.flush = Signal(name=f"{name}_flush")
        domain = m.d.sync if registered else m.d.comb
        domain += [
            self.mask.eq(Cat(*(shift > j for j in range(n)))),
            self.half.eq(Cat(*(shift == j + 1 for j in range(n)))),
            self.flush.eq(shift > n),
        ]
        if fit_width:
            self.fit_mask = Signal(fit_width, name=f"{name}_fit_mask")
            fit_mask = Cat(*(shift + (cfg.data_bits - 1) <= j for j in range(fit_width)))
            domain += self.fit_mask.eq(fit_mask)
            if lanes:
                m.submodules[f"{name}_fit_copies"] = fit_copies = RegisterCopies(fit_width, copies=lanes)
                m.d.comb += fit_copies.i.eq(self.fit_mask)
                self.lane_fit_masks = [fit_copies.o[lane] for lane in range(lanes)]


def rounding_offset(x: Value, dec: ShiftDecode, stochastic: Value, r: Value) -> Value:
    """What golden ``round_shift`` adds to x before shifting: nearest ``2**(s-1) - [x<0]`` (``mask >> 1``
    = 2**(s-1) - 1 for x < 0, so no subtraction), stochastic ``r & (2**s - 1)`` (r: this element's
    generator word); nothing for s = 0."""
    nearest_off = Mux(x < 0, dec.mask >> 1, dec.half)
    stochastic_off = r[:dec.cfg.max_shift] & dec.mask             # unsigned, zero-extended by Mux
    return Mux(stochastic, stochastic_off, nearest_off)


def rounding_addend(negative: Value, dec: ShiftDecode, stochastic: Value, r: Value) -> tuple[Value, Value]:
    """:func:`rounding_offset` as an addend that does not depend on x and a carry that depends on its sign
    only: nearest ``2**(s-1) - [x<0]`` is ``(mask >> 1) + [x >= 0 and s > 0]`` (``mask[0]`` is s > 0),
    stochastic ``r & mask`` with no carry.  Each addend bit is then a function of r's bit and the tensor's
    registers (one LUT4), and x's sign reaches one carry per lane instead of every offset bit."""
    addend = Mux(stochastic, r[:dec.cfg.max_shift] & dec.mask, dec.mask >> 1)
    return addend, ~stochastic & dec.mask[0] & ~negative


def add_carry(a: Value, b: Value, carry: Value) -> Value:
    """``a + b + carry`` (carry one bit) as one adder: the carry enters below both operands' bit 0 (``2a+1 +
    2b+carry`` carries exactly ``carry`` into bit 1), so yosys maps one carry chain, not two adders."""
    def below(bit, value):
        joined = Cat(bit, value)
        return joined.as_signed() if value.shape().signed else joined
    wide = below(Const(1, 1), a) + below(carry, b)
    return wide[1:].as_signed() if wide.shape().signed else wide[1:]


def shift_or_flush(total: Value, dec: ShiftDecode, lane: int = None) -> Value:
    """``total >> s``, or 0 when s > cfg.max_shift (flush); with ``lane``, s is that lane's copy."""
    return Mux(dec.flush, 0, total >> (dec.shift if lane is None else dec.lane_shifts[lane]))


def shift_saturate_parts(total: Value, dec: ShiftDecode, lane: int) -> tuple[Value, Value, Value]:
    """``saturate(total >> s)`` (0 on flush) as the parts :func:`join_saturated` joins a register stage
    later: the shifted value's low data bits, whether it fits the data width (``total``'s bits from
    s + data_bits - 1 up all equal its sign: the lane's copy of ``dec.fit_mask``), and its sign.  An
    8-bit shifter and a masked reduction in place of a shifter and compares as wide as the total."""
    cfg = dec.cfg
    if len(dec.fit_mask) != len(total):
        raise ValueError(f"the decode's fit_mask has {len(dec.fit_mask)} bits for a {len(total)}-bit total")
    sign = total[-1]
    low = (total >> dec.lane_shifts[lane])[:cfg.data_bits]
    fits = ~((total ^ sign.replicate(len(total))) & dec.lane_fit_masks[lane]).any()
    return Mux(dec.flush, 0, low), fits | dec.flush, sign & ~dec.flush


def join_saturated(low: Value, fits: Value, negative: Value, cfg: CoreConfig) -> Value:
    """The saturated value from :func:`shift_saturate_parts`' parts (data_shape; a value that fits the data
    width is still clamped into the symmetric range)."""
    joined = Mux(fits, saturate(low.as_signed(), cfg), Mux(negative, cfg.qmin, cfg.qmax))
    return joined.as_signed()[:cfg.data_bits].as_signed()


def narrow_offset(x: Value, dec: ShiftDecode, stochastic: Value, r: Value,
                  low_bits: int) -> tuple[Value, Value, Value]:
    """:func:`rounding_offset` ``o`` (0 <= o < 2**s) as :func:`narrow_shift` needs it: its ``low_bits``
    low bits, whether its bits ``low_bits .. s-1`` are all ones, and whether they are all zeros.

    Stochastic, those bits are r's under the mask.  Nearest, ``o = 2**(s-1) - [x<0]`` has high bits only
    for s > low_bits, where ``x + o`` lies in [0, 2**s) for any x of ``low_bits`` signed bits: both flags
    are 0 and the result is 0, so no wide subtraction is needed.
    """
    high_r, high_mask = r[low_bits:dec.cfg.max_shift], dec.mask[low_bits:]
    low = rounding_offset(x, dec, stochastic, r)
    ones = stochastic & (high_r | ~high_mask).all()
    zeros = stochastic & ~(high_r & high_mask).any()
    return low[:low_bits], ones, zeros


def narrow_shift(low_sum: Value, ones: Value, zeros: Value, dec: ShiftDecode, lane: int, low_bits: int) -> Value:
    """``(x + o) >> s`` (0 on flush) for an x of at most ``low_bits`` signed bits, from ``low_sum`` =
    x + (o's low bits) (signed, ``low_bits + 2`` bits) and :func:`narrow_offset`'s flags, with s that
    lane's copy.

    For s <= low_bits, o has no high bits and the result is ``low_sum >> s``.  Above, ``c = low_sum >>
    low_bits`` is -1, 0 or 1 and ``(x + o) >> s = (o_high + c) >> (s - low_bits)`` with o_high below
    ``2**(s - low_bits)``: 1 when c = 1 and o_high is all ones, -1 when c = -1 and o_high is zero, else 0.
    A narrow adder and shifter and two reductions in place of an ``s``-bit adder and shifter (the update
    unit's gradients are int8 and its shifts reach 31).
    """
    s = dec.lane_shifts[lane]
    negative, carry = low_sum[-1], low_sum[low_bits] & ~low_sum[-1]
    high = Mux(carry & ones, 1, 0) - (negative & zeros)
    low = low_sum >> s[:low_bits.bit_length()]
    return Mux(dec.flush, 0, Mux(s > low_bits, high, low))


def round_shift(x: Value, dec: ShiftDecode, stochastic: Value, r: Value) -> Value:
    """Golden ``round_shift(x, s, mode)`` for one element as a signed expression.

    x: signed integer, dec: the decoded shift s, stochastic: 1 selects
    stochastic rounding, r: this element's generator word.  nearest adds
    ``2**(s-1) - [x<0]``, stochastic adds ``r & (2**s - 1)``; s = 0 adds
    nothing; s > cfg.max_shift flushes to 0.  Pipelined units register
    between :func:`rounding_offset`, the sum and :func:`shift_or_flush`.
    """
    return shift_or_flush(x + rounding_offset(x, dec, stochastic, r), dec)


def round_shift_saturate(x: Value, dec: ShiftDecode, stochastic: Value, r: Value) -> Value:
    """``saturate(round_shift(x, s, mode))``: the requantizer of every unit."""
    return saturate(round_shift(x, dec, stochastic, r), dec.cfg)


__all__ = ["WORD_BITS", "shift_bits", "shift_shape", "signed_shift_shape", "data_shape", "acc_shape",
           "saturate", "ShiftDecode", "rounding_offset", "rounding_addend", "add_carry", "shift_or_flush",
           "narrow_offset", "narrow_shift", "shift_saturate_parts", "join_saturated", "round_shift",
           "round_shift_saturate"]
