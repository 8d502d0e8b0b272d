"""QUANT engine: ACC (AMEM) -> int8 tensor (TMEM), golden ``Machine._quant``."""

from amaranth import Module, Signal
from amaranth.lib import wiring

from golden_model.config import CoreConfig

from .acc_quantizer import forward_read, front_for, front_user_members
from .interfaces import EngineSignature, tmem_addr_shape
from .word_parts import WordAssembler


class QuantEngine(wiring.Component):
    """Executes QUANT: dst = saturate(round_shift(relu?(ACC), sq_shift, mode)), masked by B > 0 with f2.

    The SQ shift comes with the command (the sequencer takes it from the ACC
    peaks: hw.sq_shift.SqShift), so no max pass over AMEM is needed.  An
    :class:`AccQuantizer` streams the ACC words (masked by slot B read on
    ``tmem_a`` with f2) in parts, a :class:`WordAssembler` puts each quantized
    word together, and the engine writes it to dst, from dst.base on.  The last
    word is written in the done cycle (it lands at that cycle's closing edge).
    Latency: rows * acc_stride * unit_beats + 4 + ShiftQuantizer.LATENCY cycles
    from command to done.

    ``shared_front``: the AccQuantizer is outside, behind the ``front`` port
    (the core shares one with the UPDATE engine); the engine takes its parts
    and asks for its reads only between its command and its ``done``.
    """

    def __init__(self, cfg: CoreConfig, *, shared_front: bool = False):
        self.cfg = cfg
        self.shared_front = shared_front
        super().__init__(front_user_members(cfg, EngineSignature(cfg).members, shared_front))

    def elaborate(self, platform):
        m = Module()
        cmd = self.cmd.payload
        front = front_for(m, self, self.cfg)
        m.submodules.words = words = WordAssembler(self.cfg)
        active = Signal()                               # between the command and done
        forward_read(m, front.amem, self.amem_r, when=active)
        forward_read(m, front.mask, self.tmem_a, when=active)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += active.eq(1)
        with m.Elif(self.done):
            m.d.sync += active.eq(0)
        write_addr = Signal(tmem_addr_shape(self.cfg))
        m.d.comb += [
            front.cmd.valid.eq(self.cmd.valid), self.cmd.ready.eq(front.cmd.ready),
            front.cmd.payload.rows.eq(cmd.acc_rows), front.cmd.payload.cols.eq(cmd.acc_cols),
            front.cmd.payload.relu.eq(cmd.f0), front.cmd.payload.stochastic.eq(cmd.f1),
            front.cmd.payload.shift.eq(cmd.sq_shift), front.cmd.payload.key.eq(cmd.key),
            front.cmd.payload.masked.eq(cmd.f2), front.cmd.payload.mask_base.eq(cmd.b.base),
            words.clear.eq(self.cmd.valid & self.cmd.ready),
            words.i.valid.eq(front.o.valid & active), words.i.data.eq(front.o.payload.data),
            self.tmem_w.en.eq(words.o.valid), self.tmem_w.addr.eq(write_addr), self.tmem_w.data.eq(words.o.data),
            self.done.eq(front.o.valid & front.o.payload.last & active),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += write_addr.eq(cmd.dst.base)
        with m.Elif(words.o.valid):
            m.d.sync += write_addr.eq(write_addr + 1)
        return m
