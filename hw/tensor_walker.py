"""TensorWalker: the words of a row-major tensor whose rows are padded to whole words."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .interfaces import dim_shape


class TensorWalker(wiring.Component):
    """Steps through the words of a row-major tensor whose rows are padded to whole words.

    ``start`` (with ``rows``, ``cols``) goes to word 0; each ``step`` moves to
    the next word.  ``count`` is the number of valid elements (lanes) in the
    current word and ``last`` marks the tensor's final word.  Tracking the
    columns left in the row gives both without a multiplier; the engines use
    ``count`` for pad-lane masks and to advance the stochastic-rounding
    generator by the flat element index.
    """

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "start": In(1),
            "rows": In(dim_shape(cfg)),
            "cols": In(dim_shape(cfg)),
            "step": In(1),
            "count": Out(range(cfg.lanes + 1)),
            "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.cfg.lanes
        rows_left = Signal(dim_shape(self.cfg))   # rows after the current one
        cols = Signal(dim_shape(self.cfg))
        remaining = Signal(dim_shape(self.cfg))   # columns of the row from the current word on
        row_end = remaining <= lanes
        m.d.comb += [
            self.count.eq(Mux(row_end, remaining, lanes)),
            self.last.eq(row_end & (rows_left == 0)),
        ]
        with m.If(self.start):
            m.d.sync += [rows_left.eq(self.rows - 1), cols.eq(self.cols), remaining.eq(self.cols)]
        with m.Elif(self.step):
            with m.If(row_end):
                m.d.sync += [rows_left.eq(rows_left - 1), remaining.eq(cols)]
            with m.Else():
                m.d.sync += remaining.eq(remaining - lanes)
        return m
