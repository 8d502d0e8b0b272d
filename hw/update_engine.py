"""UPDATE engine: W -= lr * G in TMEM, golden ``Machine.execute(Op.UPDATE)`` (``quant.update_weights``)."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring

from golden_model.config import CoreConfig

from .interfaces import EngineSignature, tmem_addr_shape
from .quant_engine import TensorWalker
from .update_unit import UpdateUnit


class UpdateEngine(wiring.Component):
    """Executes UPDATE in place: W (dst) and G (a, same shape) word by word.

    Each cycle reads word k of W on ``tmem_a`` and of G on ``tmem_b``; the
    pair goes through an :class:`UpdateUnit` (command ``shift`` = e_w + lr -
    e_g from the sequencer, rounding ``f1``, ``key``) and the new W word is
    written back two cycles after its read, so a word is always read before
    it is rewritten.  Pad lanes are masked to 0 on the way in, so they stay
    0; the unit's generator advances by each word's valid lanes, giving the
    flat element index r * cols + c.
    The last W word is written in the done cycle (it lands at that cycle's
    closing edge).  Latency: rows * stride + 2 cycles from command to done.
    """

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__(EngineSignature(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        cmd = self.cmd.payload
        m.submodules.walk = walk = TensorWalker(cfg)
        m.submodules.unit = unit = UpdateUnit(cfg, cfg.lanes, counted=True)

        shift = Signal.like(cmd.shift)
        stochastic = Signal()
        key = Signal.like(cmd.key)
        w_addr = Signal(tmem_addr_shape(cfg))
        g_addr = Signal(tmem_addr_shape(cfg))
        write_addr = Signal(tmem_addr_shape(cfg))
        # The words read this cycle reach the unit next cycle (sync read).
        pending = Signal()
        pending_count = Signal.like(walk.count)
        pending_last = Signal()

        m.d.comb += [
            walk.rows.eq(cmd.dst.rows),
            walk.cols.eq(cmd.dst.cols),
            unit.cmd.payload.shift.eq(shift),
            unit.cmd.payload.stochastic.eq(stochastic),
            unit.cmd.payload.key.eq(key),
            self.tmem_a.addr.eq(w_addr),
            self.tmem_b.addr.eq(g_addr),
            unit.i.valid.eq(pending),
            unit.i.payload.count.eq(pending_count),
            unit.i.payload.last.eq(pending_last),
            unit.o.ready.eq(1),
            self.tmem_w.en.eq(unit.o.valid),
            self.tmem_w.addr.eq(write_addr),
            self.tmem_w.data.eq(unit.o.payload.w),
            self.done.eq(unit.o.valid & unit.o.payload.last),
        ]
        for lane in range(cfg.lanes):
            valid = lane < pending_count
            m.d.comb += [unit.i.payload.w[lane].eq(Mux(valid, self.tmem_a.data[lane], 0)),
                         unit.i.payload.g[lane].eq(Mux(valid, self.tmem_b.data[lane], 0))]
        with m.If(unit.o.valid):
            m.d.sync += write_addr.eq(write_addr + 1)

        def issue_read():
            """Read the walker's current W and G words; move on, or stop after the last pair."""
            m.d.comb += [self.tmem_a.en.eq(1), self.tmem_b.en.eq(1), walk.step.eq(1)]
            m.d.sync += [w_addr.eq(w_addr + 1), g_addr.eq(g_addr + 1), pending.eq(1),
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
                        shift.eq(cmd.shift),
                        stochastic.eq(cmd.f1),
                        key.eq(cmd.key),
                        w_addr.eq(cmd.dst.base),
                        g_addr.eq(cmd.a.base),
                        write_addr.eq(cmd.dst.base),
                    ]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += unit.cmd.valid.eq(1)     # the unit is idle: accepted now
                m.next = "READ"
                issue_read()
            with m.State("READ"):
                issue_read()
            with m.State("DRAIN"):
                with m.If(self.done):
                    m.next = "IDLE"
        return m
