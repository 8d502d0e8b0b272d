"""SqShift: the SQ shift rule in gateware, golden ``quant.sq_shift``.

    shift = max(0, bit_length(peak) - (data_bits - 1))

where ``peak`` is the tensor's largest magnitude (or the OR of all
magnitudes: its bit length is the same).  A leading-one detector and a
subtraction (in two register stages for the sequencer); the one place the
rule is written in hardware (the sequencer uses it for QUANT's exponent and
the consumers' command, the ShiftQuantizer for its own max pass).
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .rounding import shift_shape


def bit_length(m: Module, x, name: str = "bit_length") -> Signal:
    """bit_length of the unsigned value x (golden ``quant.bit_length``): a leading-one detector."""
    length = Signal(range(len(x) + 1), name=name)
    found = 0
    for j in range(len(x)):
        found = Mux(x[j], j + 1, found)
    m.d.comb += length.eq(found)
    return length


class SqShift(wiring.Component):
    """``peak`` (unsigned, acc_bits) -> ``shift``, combinational; or with ``pipelined``, ``LATENCY``
    cycles later: the bit lengths of the peak's two halves (two short leading-one chains) are
    registered, then the rule."""

    #: cycles from ``peak`` to ``shift`` when pipelined
    LATENCY = 2

    def __init__(self, cfg: CoreConfig, *, pipelined: bool = False):
        self.cfg, self.pipelined = cfg, pipelined
        super().__init__({"peak": In(cfg.acc_bits), "shift": Out(shift_shape(cfg))})

    def elaborate(self, platform):
        m = Module()
        domain = m.d.sync if self.pipelined else m.d.comb
        half = len(self.peak) // 2
        low, high = Signal(range(half + 1)), Signal(range(len(self.peak) - half + 1))
        domain += [low.eq(bit_length(m, self.peak[:half], "low_bits")),
                   high.eq(bit_length(m, self.peak[half:], "high_bits"))]
        excess = Mux(high != 0, high + half, low) - (self.cfg.data_bits - 1)
        domain += self.shift.eq(Mux(excess > 0, excess, 0))
        return m
