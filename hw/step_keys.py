"""StepKeys: the core's seed and step registers, and the step's part of every step key.

A step-key instruction (golden_model/isa.py ``f4``) carries a tensor's mix;
the decoder makes its key ``xs32(base ^ mix)`` with ``base`` from here,
``xs32(seed + (step + 1) * PHI)`` (golden_model.prng.step_base), so a
training program is loaded once per run and only seed and step change.

The host writes seed and step (WRITE_KEYS) while the core is idle; ``base``
follows ``LATENCY`` cycles after the write.  The host link cannot start a run
sooner: it sends the write's answer and takes a whole RUN frame first, at
most one byte per cycle.
"""

from amaranth import Array, Const, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden_model.prng import MASK32, PHI
from protocol.wire import REQUEST_OVERHEAD, RESPONSE_OVERHEAD

from .interfaces import keys_write_signature
from .prng import xs32


def nibble_product(nibble, index: int) -> Value:
    """(nibble * PHI << 4 * index) mod 2^32 of a 4-bit ``nibble``, as a table of 16 constants."""
    return Array(Const((n * PHI << (4 * index)) & MASK32, 32) for n in range(16))[nibble]


class StepKeys(wiring.Component):
    """``write`` sets seed and step, ``advance`` counts the step on (a LOOP's pass); ``base`` =
    xs32(seed + (step + 1) * PHI mod 2^32), registered, ``LATENCY`` cycles after either.

    The product is eight nibble products (step + 1's nibbles times PHI, each shifted into place,
    mod 2^32) summed in a registered tree: a nibble's product is a 16-entry table of constants, one
    LUT4 per bit, so the product takes no MULT18X18D (the 128-MAC array needs them) and no path
    holds more than a table look-up and one add.
    """

    #: cycles from a write to its ``base``: the registers, the byte products (two nibble tables' sum),
    #: their pair sums, the product, the Weyl sum, the xorshift
    LATENCY = 6
    assert LATENCY < RESPONSE_OVERHEAD + REQUEST_OVERHEAD, "a RUN could start before the new base"

    def __init__(self):
        super().__init__({"write": In(keys_write_signature()), "advance": In(1),
                          "base": Out(32), "seed": Out(32), "step": Out(32)})

    def elaborate(self, platform):
        m = Module()
        seed, step, following = self.seed, self.step, Signal(32, init=1)        # following = step + 1
        with m.If(self.write.en):
            m.d.sync += [seed.eq(self.write.seed), step.eq(self.write.step), following.eq(self.write.step + 1)]
        with m.Elif(self.advance):
            m.d.sync += [step.eq(step + 1), following.eq(following + 1)]
        nibbles = [nibble_product(following.word_select(i, 4), i) for i in range(8)]
        parts = [Signal(32, name=f"part{i}") for i in range(4)]
        m.d.sync += [part.eq(nibbles[2 * i] + nibbles[2 * i + 1]) for i, part in enumerate(parts)]
        pairs, product, weyl = [Signal(32, name=f"pair{i}") for i in range(2)], Signal(32), Signal(32)
        m.d.sync += [pairs[0].eq(parts[0] + parts[1]), pairs[1].eq(parts[2] + parts[3]),
                     product.eq(pairs[0] + pairs[1]), weyl.eq(seed + product), self.base.eq(xs32(weyl))]
        return m
