"""QUANT engine: ACC (AMEM) -> int8 tensor (TMEM), golden ``Machine.execute(Op.QUANT)``."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .interfaces import EngineSignature, amem_addr_shape, dim_shape, tmem_addr_shape
from .rounding import shift_shape
from .shift_quantizer import ShiftQuantizer


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


def bit_length(m: Module, x, name: str) -> Signal:
    """bit_length of the unsigned value x (golden ``quant.bit_length``): a leading-one detector."""
    length = Signal(range(len(x) + 1), name=name)
    found = 0
    for j in range(len(x)):
        found = Mux(x[j], j + 1, found)
    m.d.comb += length.eq(found)
    return length


class QuantEngine(wiring.Component):
    """Executes QUANT: dst = saturate(round_shift(relu?(ACC), shift, mode)), masked by B > 0 with f2.

    The shift comes from the ACC maxima in the command (``maxpos`` with ReLU,
    else ``maxabs``): max(0, bit_length - (data_bits - 1)), so no max pass
    over AMEM is needed; it is reported in ``result.shift`` (the sequencer
    adds it to the exponent).  The ACC words stream from AMEM word 0, one per
    cycle, through a :class:`ShiftQuantizer` in explicit-shift mode into the
    dst words; pad lanes are masked to 0 on the way in, so they are written
    as 0.  Stochastic rounding uses the flat index of valid elements (the
    quantizer's generator advances by each word's valid lanes).
    The ACC word (masked) is registered once before the quantizer, so no path
    runs from a block-RAM output through the rounding logic in one cycle.
    The last dst word is written in the done cycle (it lands at that cycle's
    closing edge).  Latency: rows * acc_stride + 3 cycles from command to done.
    """

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__(EngineSignature(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        cmd = self.cmd.payload
        m.submodules.walk = walk = TensorWalker(cfg)
        m.submodules.sq = sq = ShiftQuantizer(cfg, cfg.lanes, counted=True)

        relu = Signal()
        stochastic = Signal()
        key = Signal.like(cmd.key)
        peak = Signal(cfg.acc_bits)                  # max |x| after the optional ReLU
        shift = Signal(shift_shape(cfg))
        excess = bit_length(m, peak, "peak_bits") - (cfg.data_bits - 1)
        m.d.comb += shift.eq(Mux(excess > 0, excess, 0))

        masked = Signal()
        read_addr = Signal(amem_addr_shape(cfg))
        mask_addr = Signal(tmem_addr_shape(cfg))
        write_addr = Signal(tmem_addr_shape(cfg))
        # The word read this cycle reaches the quantizer next cycle (sync read).
        pending = Signal()
        pending_count = Signal.like(walk.count)
        pending_last = Signal()

        # ... and is registered once more before it enters the quantizer
        staged = Signal()
        staged_count = Signal.like(walk.count)
        staged_last = Signal()
        staged_data = Signal(sq.i.payload.data.shape())

        m.d.comb += [
            walk.rows.eq(cmd.acc_rows),
            walk.cols.eq(cmd.acc_cols),
            sq.cmd.payload.relu.eq(relu),
            sq.cmd.payload.stochastic.eq(stochastic),
            sq.cmd.payload.explicit.eq(1),
            sq.cmd.payload.shift.eq(shift),
            sq.cmd.payload.key.eq(key),
            self.amem_r.addr.eq(read_addr),
            self.tmem_a.addr.eq(mask_addr),
            sq.i.valid.eq(staged),
            sq.i.payload.count.eq(staged_count),
            sq.i.payload.last.eq(staged_last),
            sq.i.payload.data.eq(staged_data),
            sq.o.ready.eq(1),
            self.tmem_w.en.eq(sq.o.valid),
            self.tmem_w.addr.eq(write_addr),
            self.tmem_w.data.eq(sq.o.payload.data),
            self.done.eq(sq.o.valid & sq.o.payload.last),
            self.result.shift.eq(shift),
        ]
        for lane in range(cfg.lanes):
            keep = (lane < pending_count) & (~masked | (self.tmem_a.data[lane] > 0))
            m.d.sync += staged_data[lane].eq(Mux(keep, self.amem_r.data[lane], 0))
        m.d.sync += [staged.eq(pending), staged_count.eq(pending_count), staged_last.eq(pending_last)]
        with m.If(sq.o.valid):
            m.d.sync += write_addr.eq(write_addr + 1)

        def issue_read():
            """Read the walker's current word; move on, or stop after the last one."""
            m.d.comb += [self.amem_r.en.eq(1), self.tmem_a.en.eq(masked), walk.step.eq(1)]
            m.d.sync += [read_addr.eq(read_addr + 1), mask_addr.eq(mask_addr + 1), pending.eq(1),
                         pending_count.eq(walk.count), pending_last.eq(walk.last)]
            with m.If(walk.last):
                m.next = "DRAIN"

        m.d.sync += pending.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.comb += walk.start.eq(1)
                    m.d.sync += [
                        relu.eq(cmd.f0),
                        stochastic.eq(cmd.f1),
                        key.eq(cmd.key),
                        peak.eq(Mux(cmd.f0, cmd.maxpos, cmd.maxabs)),
                        masked.eq(cmd.f2),
                        read_addr.eq(0),
                        mask_addr.eq(cmd.b.base),
                        write_addr.eq(cmd.dst.base),
                    ]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += sq.cmd.valid.eq(1)       # the quantizer is idle: accepted now
                m.next = "READ"
                issue_read()
            with m.State("READ"):
                issue_read()
            with m.State("DRAIN"):
                with m.If(self.done):
                    m.next = "IDLE"
        return m
