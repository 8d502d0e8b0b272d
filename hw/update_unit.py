"""Weight update unit: golden ``update_weights`` on a stream of (w, g) pairs."""

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data

from golden_model.config import CoreConfig

from .laned_unit import LanedStreamUnit
from .prng import random_word
from .rounding import (WORD_BITS, ShiftDecode, data_shape, narrow_offset, narrow_shift, saturate, shift_shape,
                       signed_shift_shape)


def command_layout(cfg: CoreConfig) -> data.StructLayout:
    """Per-tensor command of :class:`UpdateUnit`."""
    return data.StructLayout({
        # w_exp + lr_shift - g_exp (any value: > max_shift flushes,
        # < -(data_bits + 1) shifts left by data_bits + 1, as in the golden model).
        "shift": signed_shift_shape(cfg),
        "stochastic": 1,
        "key": WORD_BITS,
    })


class UpdateUnit(LanedStreamUnit):
    """``w' = saturate(w - saturate(u))`` per element, ``lanes`` pairs per beat.

    ``u = round_shift(g, shift, mode)`` for shift >= 0 and
    ``u = g << min(-shift, data_bits + 1)`` for shift < 0, exactly golden
    ``update_weights``.  Per tensor: accept one ``cmd``, then stream the
    (w, g) beats on ``i`` (element i in lane ``i % lanes`` of beat
    ``i // lanes``, ``last`` on the final beat; unused lanes are don't-care);
    ``o`` carries the new weights through :data:`LATENCY` register stages
    (the generator words' rounding offset, the shifted gradient, the
    saturated update, the saturated difference), which all move when ``o`` can take a beat; the next command
    is accepted once they are empty.  Beats are accepted from the
    second cycle after the command (the shift decode is registered).  Stochastic
    rounding uses generator word ``i`` of ``cmd.key`` for element i; with
    ``counted=True`` beats carry ``count``, their number of valid elements
    (the generator advances by it, for padded rows).
    """

    #: Cycles from an accepted beat to its new weights on ``o`` (without back-pressure).
    LATENCY = 4

    def __init__(self, cfg: CoreConfig, lanes: int, counted: bool = False, *, word=random_word):
        words = data.ArrayLayout(data_shape(cfg), lanes)
        super().__init__(cfg, lanes, counted, command_layout(cfg), inputs={"w": words, "g": words},
                         outputs={"w": words, "last": 1}, word=word)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        prng = self.random_lanes(m)

        # the command's shift, decoded into registers when it is accepted (SETUP waits for them)
        shift = self.cmd.payload.shift
        negative = Signal()
        stochastic = Signal()

        right = Signal(shift_shape(cfg))                        # the amount when shift >= 0
        decoded = ShiftDecode(m, right, cfg, registered=True, lanes=self.lanes)
        max_left = cfg.data_bits + 1
        left = Signal(range(max_left + 1))                      # the amount when shift < 0

        # (1) w, g and g's rounding offset; (2) g rounded and shifted right, g shifted left; (3) u = the
        # saturated update of the shift's sign, beside w; (4) o = saturate(w - u)
        advance = ~self.o.valid | self.o.ready          # every stage moves when o can take a beat
        take = Signal()                                 # a beat enters
        valid = [Signal(name=f"s{stage}_valid") for stage in (1, 2, 3)]
        last = [Signal(name=f"s{stage}_last") for stage in (1, 2, 3)]
        w = [Signal(self.i.payload.w.shape(), name=f"s{stage}_w") for stage in (1, 2, 3)]
        s1_g = Signal(self.i.payload.g.shape())
        # g's offset as narrow_shift needs it: its low bits, whether the rest is all ones or all zeros
        low_bits = cfg.data_bits
        offsets = [narrow_offset(g, decoded, stochastic, prng.words[lane], low_bits)
                   for lane, g in enumerate(self.i.payload.g)]
        s1_low = [Signal(low_bits, name=f"s1_low{lane}") for lane in range(self.lanes)]
        s1_ones = Signal(self.lanes)
        s1_zeros = Signal(self.lanes)
        s2_down = [Signal(signed(2 + low_bits), name=f"s2_down{lane}") for lane in range(self.lanes)]
        s2_up = [Signal((s1_g[lane] << left).shape(), name=f"s2_up{lane}") for lane in range(self.lanes)]
        s3_u = Signal(self.i.payload.g.shape())
        with m.If(advance):
            m.d.sync += [valid[0].eq(take), last[0].eq(self.i.payload.last), w[0].eq(self.i.payload.w),
                         s1_g.eq(self.i.payload.g), self.o.valid.eq(valid[-1]), self.o.payload.last.eq(last[-1])]
            m.d.sync += [a.eq(b) for a, b in zip(valid[1:] + last[1:] + w[1:], valid[:-1] + last[:-1] + w[:-1])]
            for lane in range(self.lanes):
                g = s1_g[lane]
                low, ones, zeros = offsets[lane]
                m.d.sync += [s1_low[lane].eq(low), s1_ones[lane].eq(ones), s1_zeros[lane].eq(zeros),
                             s2_down[lane].eq(narrow_shift(g + s1_low[lane], s1_ones[lane], s1_zeros[lane], decoded,
                                                           lane, low_bits)),
                             s2_up[lane].eq(g << left),
                             s3_u[lane].eq(Mux(negative, saturate(s2_up[lane], cfg), saturate(s2_down[lane], cfg))),
                             self.o.payload.w[lane].eq(saturate(w[2][lane] - s3_u[lane], cfg))]
        busy = Cat(*valid, self.o.valid).any()

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(~busy)
                with m.If(self.cmd.valid & ~busy):
                    m.d.comb += prng.load.eq(1)
                    m.d.sync += [
                        negative.eq(shift < 0),
                        right.eq(Mux(shift > cfg.max_shift, cfg.max_shift + 1, shift)),
                        left.eq(Mux(shift < -max_left, max_left, -shift)),         # the compare beside the negation
                        stochastic.eq(self.cmd.payload.stochastic),
                    ]
                    m.next = "SETUP"
            with m.State("SETUP"):                              # the shift decode settles
                m.next = "UPDATE"
            with m.State("UPDATE"):
                m.d.comb += self.i.ready.eq(advance)
                with m.If(self.i.valid & self.i.ready):
                    m.d.comb += [take.eq(1), prng.advance.eq(1)]
                    with m.If(self.i.payload.last):
                        m.next = "IDLE"
        return m
