"""Shift quantizer (SQ): int32 accumulators to int8, golden ``shift_quantize``."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data

from golden_model.config import CoreConfig

from .laned_unit import LanedStreamUnit
from .prng import random_word
from .rounding import (WORD_BITS, ShiftDecode, acc_shape, add_carry, data_shape, join_saturated, rounding_addend,
                       shift_saturate_parts, shift_shape)
from .sq_shift import SqShift


def command_layout(cfg: CoreConfig) -> data.StructLayout:
    """Per-tensor command of :class:`ShiftQuantizer`."""
    return data.StructLayout({
        "relu": 1,                  # zero negative values first
        "stochastic": 1,            # 0: round to nearest, 1: stochastic (generator ``key``)
        "explicit": 1,              # 1: use ``shift`` below, skip the max pass
        "shift": shift_shape(cfg),  # explicit shift; values > cfg.max_shift flush to 0
        "key": WORD_BITS,
    })


class ShiftQuantizer(LanedStreamUnit):
    """Requantizes a stream of signed accumulators to int8, ``lanes`` per beat.

    Element i of a tensor is lane ``i % lanes`` of beat ``i // lanes``; the
    beat holding the final element has ``last`` set and unused lanes of that
    beat must be 0 (they are output as 0 and do not change the shift).

    Per tensor: accept one ``cmd``, then
      pass 1 (unless ``cmd.explicit``): the tensor streams in on ``i``; the unit
        ORs the magnitudes |x| (after ReLU) -- bit_length(OR) equals
        bit_length(max|x|), so no comparator is needed -- and one cycle after
        ``last`` sets shift = max(0, bit_length - (data_bits-1)) (golden ``sq_shift``);
      pass 2: the same tensor streams in again on ``i`` and ``o`` carries
        ``q = saturate(round_shift(relu(x), shift, mode))`` per lane, with
        ``o.payload.shift`` = the shift (the exponent increase) on every beat.
    With ``cmd.explicit`` only pass 2 runs, with ``cmd.shift``: the plain
    round-shift-saturate requantizer.  Stochastic rounding uses generator
    word ``i`` of ``cmd.key`` for element i.
    Pass 2 is a pipeline of :data:`LATENCY` register stages, so that no
    clock period holds more than one of: the generator words and the
    rounding addend (x-independent, with a carry from x's sign:
    :func:`~hw.rounding.rounding_addend`), the 32-bit sum, the variable shift, the saturation
    (``o`` is the last stage).  All stages move together when ``o`` can
    take a beat (``o.ready`` or ``o`` empty); the next command is accepted
    once the pipeline is empty.  Pass 2 starts one cycle after the shift is
    known (from the second cycle after an explicit command): the shift
    decode is registered.
    With ``max_pass=False`` the unit has no pass 1 (every command is treated
    as explicit): for users that always know the shift, such as the engines'
    :class:`~hw.acc_quantizer.AccQuantizer`, which then carry no magnitude
    logic.  With ``counted=True`` beats carry ``count``, their number of valid
    elements (the generator advances by it, for padded rows; invalid lanes
    must still be 0).
    """

    #: Cycles from an accepted pass-2 beat to its result on ``o`` (without back-pressure).
    LATENCY = 4

    def __init__(self, cfg: CoreConfig, lanes: int, counted: bool = False, *, max_pass: bool = True,
                 word=random_word):
        self.max_pass = max_pass
        super().__init__(cfg, lanes, counted, command_layout(cfg),
                         inputs={"data": data.ArrayLayout(acc_shape(cfg), lanes)},
                         outputs={"data": data.ArrayLayout(data_shape(cfg), lanes), "last": 1,
                                  "shift": shift_shape(cfg)}, word=word)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        prng = self.random_lanes(m)

        relu = Signal()
        stochastic = Signal()
        shift = Signal(shift_shape(cfg))
        magnitudes = Signal(cfg.acc_bits)    # OR of |x| over the tensor
        # the sum of pass 2 is one bit wider than an accumulator
        decoded = ShiftDecode(m, shift, cfg, registered=True, lanes=self.lanes, fit_width=cfg.acc_bits + 1)

        values = [Mux(relu & (x < 0), 0, x) for x in self.i.payload.data]

        if self.max_pass:
            # bit_length of the OR of magnitudes equals bit_length(max |x|): the SQ shift rule takes either
            m.submodules.sq_shift = sq_shift = SqShift(cfg)
            m.d.comb += sq_shift.peak.eq(magnitudes)

        # pass 2's stages before ``o``: (x, rounding addend and carry), their sum, the shifted sum; each with
        # valid and last
        advance = ~self.o.valid | self.o.ready
        emit = Signal()                      # a pass-2 beat enters the pipeline
        addends = [rounding_addend(x < 0, decoded, stochastic, prng.words[lane]) for lane, x in enumerate(values)]
        x1 = [Signal.like(x, name=f"x1_{lane}") for lane, x in enumerate(values)]
        off1 = [Signal(offset.shape(), name=f"offset1_{lane}") for lane, (offset, _) in enumerate(addends)]
        carry1 = [Signal(name=f"carry1_{lane}") for lane in range(self.lanes)]
        sum2 = [Signal((x + o).shape(), name=f"sum2_{lane}") for lane, (x, o) in enumerate(zip(x1, off1))]
        low3 = [Signal(cfg.data_bits, name=f"low3_{lane}") for lane in range(self.lanes)]
        fits3 = Signal(self.lanes)
        negative3 = Signal(self.lanes)
        valid = [Signal(name=f"valid{stage}") for stage in range(1, 4)]
        last = [Signal(name=f"last{stage}") for stage in range(1, 4)]
        with m.If(advance):
            m.d.sync += [valid[0].eq(emit), last[0].eq(self.i.payload.last)]
            m.d.sync += [a.eq(b) for a, b in zip(valid[1:] + last[1:], valid[:-1] + last[:-1])]
            for lane in range(self.lanes):
                m.d.sync += [x1[lane].eq(values[lane]), Cat(off1[lane], carry1[lane]).eq(Cat(*addends[lane])),
                             sum2[lane].eq(add_carry(x1[lane], off1[lane], carry1[lane])),
                             Cat(low3[lane], fits3[lane], negative3[lane]).eq(
                                 Cat(*shift_saturate_parts(sum2[lane], decoded, lane))),
                             self.o.payload.data[lane].eq(join_saturated(low3[lane], fits3[lane], negative3[lane],
                                                                         cfg))]
            m.d.sync += [self.o.valid.eq(valid[-1]), self.o.payload.last.eq(last[-1]),
                         self.o.payload.shift.eq(shift)]
        busy = Cat(*valid, self.o.valid).any()

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(~busy)
                with m.If(self.cmd.valid & ~busy):
                    m.d.comb += prng.load.eq(1)
                    m.d.sync += [
                        relu.eq(self.cmd.payload.relu),
                        stochastic.eq(self.cmd.payload.stochastic),
                        shift.eq(self.cmd.payload.shift),
                        magnitudes.eq(0),
                    ]
                    if self.max_pass:
                        with m.If(self.cmd.payload.explicit):
                            m.next = "SETUP"
                        with m.Else():
                            m.next = "MAXIMUM"
                    else:
                        m.next = "SETUP"
            if self.max_pass:
                with m.State("MAXIMUM"):
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(self.i.valid):
                        seen = magnitudes
                        for v in values:
                            seen = seen | Mux(v < 0, -v, v)[:cfg.acc_bits]
                        m.d.sync += magnitudes.eq(seen)
                        with m.If(self.i.payload.last):
                            m.next = "SHIFT"
                with m.State("SHIFT"):
                    m.d.sync += shift.eq(sq_shift.shift)
                    m.next = "SETUP"
            # the registered shift decode follows the shift (SETUP); the lanes' copies of its fit mask
            # come a cycle later, in time for the first beat's third stage (low3 / fits3)
            with m.State("SETUP"):
                m.next = "QUANTIZE"
            with m.State("QUANTIZE"):
                m.d.comb += self.i.ready.eq(advance)
                with m.If(self.i.valid & self.i.ready):
                    m.d.comb += [emit.eq(1), prng.advance.eq(1)]
                    with m.If(self.i.payload.last):
                        m.next = "IDLE"
        return m
