"""TensorWalker: the word parts of a row-major tensor whose rows are padded to whole words."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .interfaces import dim_shape
from .word_parts import part_count, part_counter, part_shape


class TensorWalker(wiring.Component):
    """Steps through the words of a row-major tensor whose rows are padded to whole words, a word in
    ``unit_beats`` parts of ``unit_width`` lanes (hw/word_parts.py).

    ``start`` (with ``rows``, ``cols``) goes to part 0 of word 0; each ``step``
    moves to the next part.  ``part`` is the current part's index, ``count`` its
    number of valid elements (lanes), ``word_end`` marks a word's last part (the
    engine's word address moves on after it) and ``last`` the tensor's final
    part.  Tracking the columns left in the row gives all of them without a
    multiplier; the engines use ``count`` for pad-lane masks and to advance the
    stochastic-rounding generator by the flat element index.
    """

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "start": In(1),
            "rows": In(dim_shape(cfg)),
            "cols": In(dim_shape(cfg)),
            "step": In(1),
            "part": Out(part_shape(cfg)),
            "count": Out(range(cfg.unit_width + 1)),
            "word_end": Out(1),
            "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        lanes = cfg.lanes
        rows_left = Signal(dim_shape(cfg))   # rows after the current one
        cols = Signal(dim_shape(cfg))
        remaining = Signal(dim_shape(cfg))   # columns of the row from the current word on
        row_end = remaining <= lanes
        part, word_end = part_counter(m, cfg, restart=self.start, advance=self.step)
        m.d.comb += [
            self.part.eq(part), self.word_end.eq(word_end),
            self.count.eq(part_count(cfg, Mux(row_end, remaining, lanes), self.part)),
            self.last.eq(self.word_end & row_end & (rows_left == 0)),
        ]
        with m.If(self.start):
            m.d.sync += [rows_left.eq(self.rows - 1), cols.eq(self.cols), remaining.eq(self.cols)]
        with m.Elif(self.step & word_end):
            with m.If(row_end):
                m.d.sync += [rows_left.eq(rows_left - 1), remaining.eq(cols)]
            with m.Else():
                m.d.sync += remaining.eq(remaining - lanes)
        return m
