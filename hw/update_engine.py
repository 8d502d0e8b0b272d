"""UPDATE and QUPDATE engine: W -= lr * G in TMEM, golden ``Machine._update`` / ``Machine._qupdate``
(``quant.update_weights``, for QUPDATE after ``shift_quantize`` of the ACC gradient)."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring

from golden_model.config import CoreConfig
from golden_model.isa import Op
from golden_model.prng import UPDATE_KEY_SALT

from .acc_quantizer import forward_read, front_for, front_user_members
from .interfaces import EngineSignature, command_layout, tmem_addr_shape
from .tensor_walker import TensorWalker
from .update_unit import UpdateUnit
from .word_parts import WordAssembler, word_part


class UpdateEngine(wiring.Component):
    """Executes UPDATE and the fused QUPDATE in place on W (dst), word by word.

    The units are ``unit_width`` lanes wide (hw/word_parts.py): a word is
    read once per part and goes through in ``unit_beats`` parts, and a
    :class:`WordAssembler` puts the new W word together for its write.

    UPDATE: each cycle reads word k of W on ``tmem_a`` and of G (a, same
    shape) on ``tmem_b``; the pair's part is registered and goes through an
    :class:`UpdateUnit` (command ``shift`` = e_w + lr - e_g from the
    sequencer, rounding ``f1``, ``key``), and the new W word is written back
    2 + UpdateUnit.LATENCY cycles after its last part's read.  Latency:
    rows * stride * unit_beats + 2 + UpdateUnit.LATENCY cycles from command to done.

    QUPDATE: the gradient is the ACC tensor (W's shape), streamed by an
    :class:`AccQuantizer` with the command's SQ shift (rounding ``f0`` with
    ``key``); W word k is read on ``tmem_a`` when the quantizer announces a
    part of gradient word k (``early``), so both arrive together; the registered pair
    goes through the UpdateUnit (command ``shift`` = e_w + lr - (e_acc +
    sq_shift), rounding ``f1`` with ``key ^ UPDATE_KEY_SALT`` = golden
    ``prng.update_key``).  Latency: rows * stride * unit_beats + 5 +
    ShiftQuantizer.LATENCY + UpdateUnit.LATENCY cycles.

    In both, a W word is read before it is rewritten; pad lanes are masked to
    0 on the way in, so they stay 0; both generators advance by each part's
    valid lanes, giving the flat element index r * cols + c.  The last W word
    is written in the done cycle (it lands at that cycle's closing edge).

    ``shared_front``: the AccQuantizer is outside, behind the ``front`` port
    (the core shares one with the QUANT engine); the engine takes its parts
    and asks for its ACC reads only during a QUPDATE.
    """

    def __init__(self, cfg: CoreConfig, *, shared_front: bool = False):
        self.cfg = cfg
        self.shared_front = shared_front
        super().__init__(front_user_members(cfg, EngineSignature(cfg).members, shared_front))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        cmd = Signal(command_layout(cfg))               # the command, latched when accepted
        m.submodules.walk = walk = TensorWalker(cfg)
        m.submodules.unit = unit = UpdateUnit(cfg, cfg.unit_width, counted=True)
        front = front_for(m, self, cfg)
        m.submodules.words = words = WordAssembler(cfg)
        fused = Signal()                                # a QUPDATE, from its command to its done
        forward_read(m, front.amem, self.amem_r, when=fused)

        w_addr, g_addr, write_addr = (Signal(tmem_addr_shape(cfg), name=name) for name in ("w_addr", "g_addr",
                                                                                          "write_addr"))
        # UPDATE: the words read this cycle arrive next cycle, with the part to take
        pending, pending_count, pending_last = Signal(), Signal.like(walk.count), Signal()
        pending_part = Signal.like(walk.part)
        # the (w, g) pair is registered before the update unit
        unit_in = Signal(unit.i.payload.shape())
        unit_in_valid = Signal()

        m.d.comb += [
            walk.rows.eq(self.cmd.payload.dst.rows), walk.cols.eq(self.cmd.payload.dst.cols),
            front.cmd.payload.rows.eq(cmd.dst.rows), front.cmd.payload.cols.eq(cmd.dst.cols),
            front.cmd.payload.stochastic.eq(cmd.f0), front.cmd.payload.shift.eq(cmd.sq_shift),
            front.cmd.payload.key.eq(cmd.key),
            unit.cmd.payload.shift.eq(cmd.shift), unit.cmd.payload.stochastic.eq(cmd.f1),
            unit.cmd.payload.key.eq(Mux(cmd.op == Op.QUPDATE, cmd.key ^ UPDATE_KEY_SALT, cmd.key)),
            self.tmem_a.addr.eq(w_addr), self.tmem_b.addr.eq(g_addr),
            unit.i.valid.eq(unit_in_valid), unit.i.payload.eq(unit_in), unit.o.ready.eq(1),
            words.clear.eq(self.cmd.valid & self.cmd.ready),
            words.i.valid.eq(unit.o.valid), words.i.data.eq(unit.o.payload.w),
            self.tmem_w.en.eq(words.o.valid), self.tmem_w.addr.eq(write_addr), self.tmem_w.data.eq(words.o.data),
            self.done.eq(unit.o.valid & unit.o.payload.last),
        ]
        with m.If(fused):                               # W word k arrives with each part of gradient word k
            m.d.comb += self.tmem_a.en.eq(front.early)
            with m.If(front.early & (front.early_part == cfg.unit_beats - 1)):
                m.d.sync += w_addr.eq(w_addr + 1)
            m.d.sync += [unit_in_valid.eq(front.o.valid), unit_in.count.eq(front.o.payload.count),
                         unit_in.last.eq(front.o.payload.last)]
            w_part = word_part(cfg, self.tmem_a.data, front.o.payload.part)
            for lane in range(cfg.unit_width):
                m.d.sync += [unit_in.w[lane].eq(Mux(lane < front.o.payload.count, w_part[lane], 0)),
                             unit_in.g[lane].eq(front.o.payload.data[lane])]
        with m.Else():
            m.d.sync += [unit_in_valid.eq(pending), unit_in.count.eq(pending_count), unit_in.last.eq(pending_last)]
            w_part, g_part = word_part(cfg, self.tmem_a.data, pending_part), word_part(cfg, self.tmem_b.data,
                                                                                      pending_part)
            for lane in range(cfg.unit_width):
                valid = lane < pending_count
                m.d.sync += [unit_in.w[lane].eq(Mux(valid, w_part[lane], 0)),
                             unit_in.g[lane].eq(Mux(valid, g_part[lane], 0))]
        with m.If(words.o.valid):
            m.d.sync += write_addr.eq(write_addr + 1)

        def read_pair():
            """UPDATE: read W and G at the walker's word for its current part; move on, or stop after the
            last part."""
            m.d.comb += [self.tmem_a.en.eq(1), self.tmem_b.en.eq(1), walk.step.eq(1)]
            m.d.sync += [pending.eq(1), pending_part.eq(walk.part), pending_count.eq(walk.count),
                         pending_last.eq(walk.last)]
            with m.If(walk.word_end):
                m.d.sync += [w_addr.eq(w_addr + 1), g_addr.eq(g_addr + 1)]
            with m.If(walk.last):
                m.next = "DRAIN"

        m.d.sync += pending.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.comb += walk.start.eq(1)
                    new = self.cmd.payload
                    m.d.sync += [cmd.eq(new), fused.eq(new.op == Op.QUPDATE), w_addr.eq(new.dst.base),
                                 g_addr.eq(new.a.base), write_addr.eq(new.dst.base)]
                    m.next = "START"
            with m.State("START"):                      # the units are idle: their commands are accepted now
                m.d.comb += [unit.cmd.valid.eq(1), front.cmd.valid.eq(fused)]
                with m.If(fused):
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "READ"
                    read_pair()
            with m.State("READ"):                       # UPDATE: W and G word k per cycle
                read_pair()
            with m.State("DRAIN"):
                with m.If(self.done):
                    m.d.sync += fused.eq(0)
                    m.next = "IDLE"
        return m
