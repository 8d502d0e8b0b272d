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

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden_model.prng import MASK32, PHI
from protocol.wire import REQUEST_OVERHEAD, RESPONSE_OVERHEAD

from .interfaces import keys_write_signature
from .prng import xs32


class StepKeys(wiring.Component):
    """``write`` sets seed and step, ``advance`` counts the step on (a LOOP's pass); ``base`` =
    xs32(seed + (step + 1) * PHI mod 2^32), registered, ``LATENCY`` cycles after either."""

    #: cycles from a write to its ``base``: the registers, the Weyl sum, the xorshift
    LATENCY = 3
    assert LATENCY < RESPONSE_OVERHEAD + REQUEST_OVERHEAD, "a RUN could start before the new base"

    def __init__(self):
        super().__init__({"write": In(keys_write_signature()), "advance": In(1),
                          "base": Out(32), "seed": Out(32), "step": Out(32)})

    def elaborate(self, platform):
        m = Module()
        seed, step, weyl = self.seed, self.step, Signal(32)
        with m.If(self.write.en):
            m.d.sync += [seed.eq(self.write.seed), step.eq(self.write.step)]
        with m.Elif(self.advance):
            m.d.sync += step.eq(step + 1)
        m.d.sync += [weyl.eq((seed + (step + 1) * PHI) & MASK32), self.base.eq(xs32(weyl))]
        return m
