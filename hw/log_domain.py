"""Exp2, Log2 and Log2eScale: the base-2 pipelines of the integer loss (golden_model/int_loss.py).

Each is fully pipelined (one operand per cycle, ``LATENCY`` cycles to its
result, no back-pressure: a ``valid`` bit and a ``tag`` travel with the
operand).  Exp2 and Log2 read their 256-entry (value, difference) tables,
the golden model's ``EXP2_TABLE`` / ``LOG2_TABLE``, from a ROM with a linear
interpolation on the low 8 fraction bits.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.int_loss import EXP2_TABLE, EXP_BITS, INTERP_BITS, LOG2E, LOG2_TABLE, LOG_FRAC, Z_LIMIT

from .delay import delayed
from .multiplier import RegisteredMultiplier
from .sq_shift import bit_length

#: a shift beyond this many bits leaves 0 of a Q24 mantissa (golden exp2_neg's cap)
FLUSH_SHIFT = EXP_BITS + 1


def table_rom(m: Module, name: str, table) -> tuple:
    """A synchronous-read ROM of (value, diff) pairs; returns (read port, value, diff)."""
    value_bits = int(table[:, 0].max()).bit_length()
    diff_bits = int(abs(table[:, 1]).max()).bit_length() + 1
    layout = data.StructLayout({"value": unsigned(value_bits), "diff": signed(diff_bits)})
    rom = Memory(shape=layout, depth=len(table),
                 init=[{"value": int(v), "diff": int(d)} for v, d in table])
    m.submodules[name] = rom
    port = rom.read_port()
    return port, port.data.value, port.data.diff


#: Cycles from a table entry on the ROM's port to its interpolated value: the product's registers, the sum.
INTERPOLATE_LATENCY = RegisteredMultiplier.LATENCY + 1


def interpolated(m: Module, value, diff, low, *, name: str) -> Signal:
    """Golden ``int_loss.interpolate`` on a table entry, ``INTERPOLATE_LATENCY`` cycles later:
    value + (diff * low + half) >> 8 (arithmetic), the product in a registered multiplier."""
    m.submodules[f"{name}_product"] = product = RegisteredMultiplier(a_bits=len(diff), b_bits=INTERP_BITS + 1)
    m.d.comb += [product.a.eq(diff), product.b.eq(low)]
    held = delayed(m, value, RegisteredMultiplier.LATENCY, name=f"{name}_value")
    expression = held + ((product.p + (1 << (INTERP_BITS - 1))) >> INTERP_BITS)
    result = Signal.like(expression, name=name)
    m.d.sync += result.eq(expression)
    return result


class Exp2(wiring.Component):
    """Golden ``exp2_neg(z, scale_bits=24 - offset)``: round(2**(-z / 2**16) * 2**(24 - offset)).

    ``z`` signed Q16; ``offset`` (0..24) adds to the right shift.  The caller
    keeps ``(z >> 16) + offset >= 0`` (the golden model raises otherwise).
    """

    #: the table read, the interpolation, the rounding right shift in two stages
    LATENCY = 1 + INTERPOLATE_LATENCY + 2

    def __init__(self, z_bits: int, tag_bits: int = 1):
        self.z_bits = z_bits
        super().__init__({
            "valid": In(1), "z": In(signed(z_bits)), "offset": In(range(EXP_BITS + 1)), "tag": In(tag_bits),
            "out_valid": Out(1), "out": Out(EXP_BITS + 1), "out_tag": Out(tag_bits),
        })

    def elaborate(self, platform):
        m = Module()
        port, value, diff = table_rom(m, "rom", EXP2_TABLE)
        m.d.comb += [port.addr.eq(self.z[INTERP_BITS:LOG_FRAC]), port.en.eq(1)]
        low, shift = Signal(INTERP_BITS), Signal(signed(self.z_bits - LOG_FRAC + 2))
        m.d.sync += [low.eq(self.z[:INTERP_BITS]), shift.eq((self.z >> LOG_FRAC) + self.offset)]
        mantissa = interpolated(m, value, diff, low, name="mantissa")
        mantissa_shift = delayed(m, shift, INTERPOLATE_LATENCY, name="shift")
        # (mantissa + 2**(s-1)) >> s = ((mantissa >> (s-1)) + 1) >> 1 for s >= 1, and the same form with
        # mantissa << 1 takes s = 0 too: one variable shift, registered, then the add (no adder per shift)
        halved = Signal(EXP_BITS + 2)
        in_range = (mantissa_shift >= 0) & (mantissa_shift <= FLUSH_SHIFT)
        amount = mantissa_shift.as_unsigned()[:FLUSH_SHIFT.bit_length()]
        m.d.sync += [halved.eq(Mux(in_range, (mantissa << 1) >> amount, 0)), self.out.eq((halved + 1) >> 1)]
        m.d.comb += [self.out_valid.eq(delayed(m, self.valid, self.LATENCY, name="valid")),
                     self.out_tag.eq(delayed(m, self.tag, self.LATENCY, name="tag"))]
        return m


class Log2(wiring.Component):
    """log2(v) in Q16 for unsigned v >= 1: golden ``log2_q16`` (leading one, the 16 bits below it, table)."""

    #: the operand, the leading one, the table read, the interpolation
    LATENCY = 1 + 1 + 1 + INTERPOLATE_LATENCY

    def __init__(self, v_bits: int, tag_bits: int = 1):
        if v_bits > 2**(LOG_FRAC - 1):
            raise ValueError(f"Log2 takes at most {2**(LOG_FRAC - 1)} bits, got {v_bits}")
        self.v_bits = v_bits
        super().__init__({
            "valid": In(1), "v": In(v_bits), "tag": In(tag_bits),
            "out_valid": Out(1), "out": Out(unsigned(v_bits.bit_length() + LOG_FRAC)), "out_tag": Out(tag_bits),
        })

    def elaborate(self, platform):
        m = Module()
        port, value, diff = table_rom(m, "rom", LOG2_TABLE)
        given, whole, v = Signal(self.v_bits), Signal(range(self.v_bits)), Signal(self.v_bits)
        # the operand registered; its leading one; the 16 bits below it address the table; the
        # interpolation of the entry
        m.d.sync += given.eq(self.v)
        m.d.sync += [whole.eq(bit_length(m, given) - 1), v.eq(given)]
        below = Signal(LOG_FRAC + 1)
        m.d.comb += below.eq((v << LOG_FRAC) >> whole)
        m.d.comb += [port.addr.eq(below[INTERP_BITS:LOG_FRAC]), port.en.eq(1)]
        low, entry_whole = Signal(INTERP_BITS), Signal.like(whole)
        m.d.sync += [low.eq(below[:INTERP_BITS]), entry_whole.eq(whole)]
        m.d.comb += [self.out.eq(interpolated(m, (entry_whole << LOG_FRAC) + value, diff, low, name="log")),
                     self.out_valid.eq(delayed(m, self.valid, self.LATENCY, name="valid")),
                     self.out_tag.eq(delayed(m, self.tag, self.LATENCY, name="tag"))]
        return m


class Log2eScale(wiring.Component):
    """Golden ``int_loss.log2e_scaled``: z = min((top - q) * LOG2E shifted by the exponent, Z_LIMIT), Q16.

    ``left``/``right`` are the exponent's shift (one of them 0), clamped so that
    nothing changes (golden_model/int_loss.py).  Pipelined: the product, the shift, the clamp.
    """

    LATENCY = 3

    def __init__(self, *, data_bits: int, left_most: int, right_most: int, tag_bits: int):
        super().__init__({
            "valid": In(1), "q": In(signed(data_bits)), "top": In(signed(data_bits)), "tag": In(tag_bits),
            "left": In(range(left_most + 1)), "right": In(range(right_most + 1)),
            "out_valid": Out(1), "z": Out(range(Z_LIMIT + 1)), "out_tag": Out(tag_bits),
        })

    def elaborate(self, platform):
        m = Module()
        product = Signal(unsigned(2 * len(self.q) + LOG2E.bit_length()))
        m.d.sync += product.eq((self.top - self.q).as_unsigned()[:len(self.q) + 1] * LOG2E)
        scaled = (product << self.left) >> self.right
        shifted = Signal.like(scaled)
        m.d.sync += [shifted.eq(scaled), self.z.eq(Mux(shifted > Z_LIMIT, Z_LIMIT, shifted))]
        m.d.comb += [self.out_valid.eq(delayed(m, self.valid, self.LATENCY, name="valid")),
                     self.out_tag.eq(delayed(m, self.tag, self.LATENCY, name="tag"))]
        return m
