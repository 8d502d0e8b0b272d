"""UPDATE and QUPDATE engine: W -= lr * G in TMEM, golden ``Machine.execute(Op.UPDATE / Op.QUPDATE)``
(``quant.update_weights``, for QUPDATE after ``shift_quantize`` of the ACC gradient)."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring

from golden_model.config import CoreConfig
from golden_model.isa import Op
from golden_model.prng import UPDATE_KEY_SALT

from .interfaces import EngineSignature, amem_addr_shape, tmem_addr_shape
from .quant_engine import TensorWalker, bit_length
from .rounding import shift_shape
from .shift_quantizer import ShiftQuantizer
from .update_unit import UpdateUnit


class UpdateEngine(wiring.Component):
    """Executes UPDATE and the fused QUPDATE in place on W (dst), word by word.

    UPDATE: each cycle reads word k of W on ``tmem_a`` and of G (a, same
    shape) on ``tmem_b``; the pair is registered, goes through an
    :class:`UpdateUnit` (command ``shift`` = e_w + lr - e_g from the
    sequencer, rounding ``f1``, ``key``; two stages) and the new W word is
    written back four cycles after its read.  Latency: rows * stride + 4
    cycles from command to done.

    QUPDATE: the gradient is the ACC tensor (W's shape).  Each cycle reads
    ACC word k on ``amem_r``; it is registered and goes through a
    :class:`ShiftQuantizer` in explicit-shift mode (the SQ shift from the
    command's max |ACC|, as QUANT; rounding ``f0`` with ``key``), whose
    registered int8 output is paired with W word k, read on ``tmem_a`` two
    cycles after the ACC word; the registered pair goes through the
    :class:`UpdateUnit` (command ``shift`` = e_w + lr - (e_acc + SQ shift),
    rounding ``f1`` with ``key ^ UPDATE_KEY_SALT`` = golden
    ``prng.update_key``).  Latency: rows * stride + 6 cycles.

    Every block-RAM output is registered before the rounding logic, so no
    path runs from a RAM through a quantizer or update unit in one cycle.

    In both, a W word is read before it is rewritten; pad lanes are masked to
    0 on the way in, so they stay 0; both generators advance by each word's
    valid lanes, giving the flat element index r * cols + c.  The last W word
    is written in the done cycle (it lands at that cycle's closing edge).
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
        m.submodules.sq = sq = ShiftQuantizer(cfg, cfg.lanes, counted=True)

        fused = Signal()                                # QUPDATE
        shift = Signal.like(cmd.shift)
        grad_stochastic = Signal()
        stochastic = Signal()
        key = Signal.like(cmd.key)
        peak = Signal(cfg.acc_bits)                     # max |ACC| (QUPDATE)
        grad_shift = Signal(shift_shape(cfg))
        excess = bit_length(m, peak, "peak_bits") - (cfg.data_bits - 1)
        m.d.comb += grad_shift.eq(Mux(excess > 0, excess, 0))

        w_addr = Signal(tmem_addr_shape(cfg))
        g_addr = Signal(tmem_addr_shape(cfg))
        acc_addr = Signal(amem_addr_shape(cfg))
        write_addr = Signal(tmem_addr_shape(cfg))
        # The words read this cycle arrive next cycle (sync read).
        pending = Signal()
        pending_count = Signal.like(walk.count)
        pending_last = Signal()
        # QUPDATE: the ACC word is registered before the quantizer ...
        staged = Signal()
        staged_count = Signal.like(walk.count)
        staged_last = Signal()
        staged_acc = Signal(sq.i.payload.data.shape())
        # ... and the quantized gradient word leaves the quantizer's register one cycle later.
        quantized_count = Signal.like(walk.count)
        # the (w, g) pair is registered before the update unit
        unit_in = Signal(unit.i.payload.shape())
        unit_in_valid = Signal()

        m.d.comb += [
            walk.rows.eq(cmd.dst.rows),
            walk.cols.eq(cmd.dst.cols),
            sq.cmd.payload.relu.eq(0),
            sq.cmd.payload.stochastic.eq(grad_stochastic),
            sq.cmd.payload.explicit.eq(1),
            sq.cmd.payload.shift.eq(grad_shift),
            sq.cmd.payload.key.eq(key),
            sq.o.ready.eq(1),
            unit.cmd.payload.shift.eq(shift),
            unit.cmd.payload.stochastic.eq(stochastic),
            unit.cmd.payload.key.eq(Mux(fused, key ^ UPDATE_KEY_SALT, key)),
            self.tmem_a.addr.eq(w_addr),
            self.tmem_b.addr.eq(g_addr),
            self.amem_r.addr.eq(acc_addr),
            unit.o.ready.eq(1),
            unit.i.valid.eq(unit_in_valid),
            unit.i.payload.eq(unit_in),
            self.tmem_w.en.eq(unit.o.valid),
            self.tmem_w.addr.eq(write_addr),
            self.tmem_w.data.eq(unit.o.payload.w),
            self.done.eq(unit.o.valid & unit.o.payload.last),
        ]
        m.d.sync += [staged.eq(pending), staged_count.eq(pending_count), staged_last.eq(pending_last)]
        for lane in range(cfg.lanes):
            m.d.sync += staged_acc[lane].eq(Mux(lane < pending_count, self.amem_r.data[lane], 0))
        with m.If(fused):
            m.d.comb += [
                sq.i.valid.eq(staged),
                sq.i.payload.count.eq(staged_count),
                sq.i.payload.last.eq(staged_last),
                sq.i.payload.data.eq(staged_acc),
                self.tmem_a.en.eq(staged),              # W word k, two cycles after ACC word k
            ]
            with m.If(staged):
                m.d.sync += [w_addr.eq(w_addr + 1), quantized_count.eq(staged_count)]
            m.d.sync += [
                unit_in_valid.eq(sq.o.valid),
                unit_in.count.eq(quantized_count),
                unit_in.last.eq(sq.o.payload.last),
            ]
            for lane in range(cfg.lanes):
                m.d.sync += [
                    unit_in.w[lane].eq(Mux(lane < quantized_count, self.tmem_a.data[lane], 0)),
                    unit_in.g[lane].eq(sq.o.payload.data[lane]),
                ]
        with m.Else():
            m.d.sync += [
                unit_in_valid.eq(pending),
                unit_in.count.eq(pending_count),
                unit_in.last.eq(pending_last),
            ]
            for lane in range(cfg.lanes):
                valid = lane < pending_count
                m.d.sync += [unit_in.w[lane].eq(Mux(valid, self.tmem_a.data[lane], 0)),
                             unit_in.g[lane].eq(Mux(valid, self.tmem_b.data[lane], 0))]
        with m.If(unit.o.valid):
            m.d.sync += write_addr.eq(write_addr + 1)

        def issue_read():
            """Read the walker's current words (W and G, or ACC); move on, or stop after the last."""
            m.d.comb += walk.step.eq(1)
            with m.If(fused):
                m.d.comb += self.amem_r.en.eq(1)
                m.d.sync += acc_addr.eq(acc_addr + 1)
            with m.Else():
                m.d.comb += [self.tmem_a.en.eq(1), self.tmem_b.en.eq(1)]
                m.d.sync += [w_addr.eq(w_addr + 1), g_addr.eq(g_addr + 1)]
            m.d.sync += [pending.eq(1), pending_count.eq(walk.count), pending_last.eq(walk.last)]
            with m.If(walk.last):
                m.next = "DRAIN"

        m.d.sync += pending.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.comb += walk.start.eq(1)
                    m.d.sync += [
                        fused.eq(cmd.op == Op.QUPDATE),
                        shift.eq(cmd.shift),
                        grad_stochastic.eq(cmd.f0),
                        stochastic.eq(cmd.f1),
                        key.eq(cmd.key),
                        peak.eq(cmd.maxabs),
                        w_addr.eq(cmd.dst.base),
                        g_addr.eq(cmd.a.base),
                        acc_addr.eq(0),
                        write_addr.eq(cmd.dst.base),
                    ]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [unit.cmd.valid.eq(1),     # the units are idle: accepted now
                             sq.cmd.valid.eq(fused)]
                m.next = "READ"
                issue_read()
            with m.State("READ"):
                issue_read()
            with m.State("DRAIN"):
                with m.If(self.done):
                    m.next = "IDLE"
        return m
