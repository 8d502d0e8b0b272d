"""Weight update unit: golden ``update_weights`` on a stream of (w, g) pairs."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data

from golden_model.config import CoreConfig

from .laned_unit import LanedStreamUnit
from .rounding import (WORD_BITS, ShiftDecode, data_shape, round_shift_saturate, saturate, shift_shape,
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
    ``o`` carries the new weights through two register stages (the rounded
    update, then the saturated difference).  Beats are accepted from the
    second cycle after the command (the shift decode is registered).  Stochastic
    rounding uses generator word ``i`` of ``cmd.key`` for element i; with
    ``counted=True`` beats carry ``count``, their number of valid elements
    (the generator advances by it, for padded rows).
    """

    def __init__(self, cfg: CoreConfig, lanes: int, counted: bool = False):
        words = data.ArrayLayout(data_shape(cfg), lanes)
        super().__init__(cfg, lanes, counted, command_layout(cfg), inputs={"w": words, "g": words},
                         outputs={"w": words, "last": 1})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        prng = self.random_lanes(m)

        # the command's shift, decoded into registers when it is accepted (SETUP waits for them)
        shift = self.cmd.payload.shift
        negative = Signal()
        stochastic = Signal()
        emit = Signal()

        right = Signal(shift_shape(cfg))                        # the amount when shift >= 0
        decoded = ShiftDecode(m, right, cfg, registered=True)
        max_left = cfg.data_bits + 1
        left = Signal(range(max_left + 1))                      # the amount when shift < 0

        # two stages: (1) u = the rounded, saturated update, registered beside w; (2) o = saturate(w - u)
        s1_valid, s1_last = Signal(), Signal()
        s1_w = Signal(self.i.payload.w.shape())
        s1_u = Signal(self.i.payload.g.shape())
        advance = ~self.o.valid | self.o.ready          # stage 2 can take stage 1's beat
        take = Signal()

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.comb += prng.load.eq(1)
                    m.d.sync += [
                        negative.eq(shift < 0),
                        right.eq(Mux(shift > cfg.max_shift, cfg.max_shift + 1, shift)),
                        left.eq(Mux(-shift > max_left, max_left, -shift)),
                        stochastic.eq(self.cmd.payload.stochastic),
                    ]
                    m.next = "SETUP"
            with m.State("SETUP"):                              # the shift decode settles
                m.next = "UPDATE"
            with m.State("UPDATE"):
                m.d.comb += self.i.ready.eq(~s1_valid | advance)
                with m.If(self.i.valid & self.i.ready):
                    m.d.comb += [take.eq(1), prng.advance.eq(1)]
                    m.d.sync += [s1_last.eq(self.i.payload.last), s1_w.eq(self.i.payload.w)]
                    for lane in range(self.lanes):
                        g = self.i.payload.g[lane]
                        down = round_shift_saturate(g, decoded, stochastic, prng.words[lane])
                        up = saturate(g << left, cfg)
                        m.d.sync += s1_u[lane].eq(Mux(negative, up, down))
                    with m.If(self.i.payload.last):
                        m.next = "IDLE"

        m.d.comb += emit.eq(s1_valid & advance)
        with m.If(take):
            m.d.sync += s1_valid.eq(1)
        with m.Elif(advance):
            m.d.sync += s1_valid.eq(0)
        with m.If(emit):
            m.d.sync += self.o.payload.last.eq(s1_last)
            for lane in range(self.lanes):
                m.d.sync += self.o.payload.w[lane].eq(saturate(s1_w[lane] - s1_u[lane], cfg))
        with m.If(emit):
            m.d.sync += self.o.valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
