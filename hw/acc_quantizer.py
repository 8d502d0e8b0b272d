"""AccQuantizer: the ACC tensor in AMEM as a stream of shift-quantized int8 words.

The front end QUANT and QUPDATE share: walk the ACC words from AMEM word 0
(a :class:`TensorWalker` over its rows and columns), register the ACC and
mask words as they leave the block RAMs (a read's data crosses the chip
before it meets any logic), zero the pad lanes (and, when ``masked``, the
lanes whose mask word is <= 0), register the word again (no path runs from a
block-RAM output into the rounding logic in one cycle) and requantize it in
a :class:`ShiftQuantizer` with the command's SQ shift.  The quantizer is
``unit_width`` lanes wide (hw/word_parts.py): each ACC word is read
``unit_beats`` times, once per part, and its parts go through one after the
other.  Output ``o`` carries one int8 part per cycle with its valid lane
count, its ``part`` index and ``last`` (on the final part); there is no
back-pressure.  ``early`` is high the cycle before a part appears on ``o``,
so a consumer can read a partner word (the weights of QUPDATE) to arrive
with it; ``early_part`` is that part's index.  Latency: the first part
appears 4 + ShiftQuantizer.LATENCY cycles after the command; one part per
cycle after that.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .delay import delayed
from .interfaces import (ReadPortSignature, amem_addr_shape, amem_word_layout, dim_shape, tmem_addr_shape,
                         tmem_word_layout)
from .rounding import WORD_BITS, data_shape, shift_shape
from .shift_quantizer import ShiftQuantizer
from .tensor_walker import TensorWalker
from .word_parts import part_shape, word_part


def acc_quantizer_command(cfg: CoreConfig) -> data.StructLayout:
    return data.StructLayout({
        "rows": dim_shape(cfg), "cols": dim_shape(cfg),
        "relu": 1, "stochastic": 1, "shift": shift_shape(cfg), "key": WORD_BITS,
        "masked": 1, "mask_base": tmem_addr_shape(cfg),     # keep lanes where the mask tensor is > 0
    })


def quantized_part_layout(cfg: CoreConfig) -> data.StructLayout:
    return data.StructLayout({"data": data.ArrayLayout(data_shape(cfg), cfg.unit_width),
                              "count": range(cfg.unit_width + 1), "part": part_shape(cfg), "last": 1})


def acc_quantizer_signature(cfg: CoreConfig) -> wiring.Signature:
    """The front end's ports, its own side (an engine that uses a shared one has them flipped)."""
    return wiring.Signature({
        "cmd": In(stream.Signature(acc_quantizer_command(cfg))),
        "amem": Out(ReadPortSignature(amem_addr_shape(cfg), amem_word_layout(cfg))),
        "mask": Out(ReadPortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
        "early": Out(1), "early_part": Out(part_shape(cfg)),
        "o": Out(wiring.Signature({"valid": Out(1), "payload": Out(quantized_part_layout(cfg))})),
    })


def front_user_members(cfg: CoreConfig, members: dict, shared_front: bool) -> dict:
    """An engine's ports with, when ``shared_front``, the ``front`` port to the core's AccQuantizer."""
    return {**members, "front": In(acc_quantizer_signature(cfg))} if shared_front else dict(members)


def front_for(m: Module, engine: wiring.Component, cfg: CoreConfig):
    """The AccQuantizer an engine drives: its own (a submodule) or, with ``engine.shared_front``, the
    one behind its ``front`` port (the core's, shared by QUANT and UPDATE, which never run at once:
    both hold TMEM port C and the TMEM write port)."""
    if engine.shared_front:
        return engine.front
    m.submodules.front = front = AccQuantizer(cfg)
    return front


def forward_read(m: Module, request, port, *, when=1):
    """The front's read ``request`` on an engine's read ``port`` (enabled only ``when``), its word back."""
    m.d.comb += [port.addr.eq(request.addr), port.en.eq(request.en & when), request.data.eq(port.data)]


class AccQuantizer(wiring.Component):
    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__(acc_quantizer_signature(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.walk = walk = TensorWalker(cfg)
        m.submodules.sq = sq = ShiftQuantizer(cfg, cfg.unit_width, counted=True, max_pass=False)
        command = Signal(acc_quantizer_command(cfg))

        # the words read this cycle arrive next cycle (``pending``, with the part to take), are
        # registered as they are (``arrived``) and their part once more, masked (``staged``)
        read_addr = Signal(amem_addr_shape(cfg))
        mask_addr = Signal(tmem_addr_shape(cfg))
        pending, pending_count, pending_last = Signal(), Signal.like(walk.count), Signal()
        arrived, arrived_count, arrived_last = Signal(), Signal.like(walk.count), Signal()
        pending_part, arrived_part = Signal.like(walk.part), Signal.like(walk.part)
        arrived_acc, arrived_mask = Signal.like(self.amem.data), Signal.like(self.mask.data)
        staged, staged_count, staged_last = Signal(), Signal.like(pending_count), Signal()
        staged_data = Signal(sq.i.payload.data.shape())

        m.d.comb += [
            walk.rows.eq(self.cmd.payload.rows), walk.cols.eq(self.cmd.payload.cols),
            sq.cmd.payload.relu.eq(command.relu), sq.cmd.payload.stochastic.eq(command.stochastic),
            sq.cmd.payload.explicit.eq(1), sq.cmd.payload.shift.eq(command.shift), sq.cmd.payload.key.eq(command.key),
            self.amem.addr.eq(read_addr), self.mask.addr.eq(mask_addr),
            sq.i.valid.eq(staged), sq.i.payload.count.eq(staged_count), sq.i.payload.last.eq(staged_last),
            sq.i.payload.data.eq(staged_data), sq.o.ready.eq(1),
            self.o.valid.eq(sq.o.valid), self.o.payload.data.eq(sq.o.payload.data),
            self.o.payload.last.eq(sq.o.payload.last),
        ]
        m.d.sync += [arrived.eq(pending), arrived_count.eq(pending_count), arrived_last.eq(pending_last),
                     arrived_part.eq(pending_part), arrived_acc.eq(self.amem.data), arrived_mask.eq(self.mask.data)]
        acc_part, mask_part = word_part(cfg, arrived_acc, arrived_part), word_part(cfg, arrived_mask, arrived_part)
        for lane in range(cfg.unit_width):
            keep = (lane < arrived_count) & (~command.masked | (mask_part[lane] > 0))
            m.d.sync += staged_data[lane].eq(Mux(keep, acc_part[lane], 0))
        m.d.sync += [staged.eq(arrived), staged_count.eq(arrived_count), staged_last.eq(arrived_last)]
        # ``early``: a part entered the quantizer LATENCY - 1 cycles ago (``o`` is always ready); its
        # valid lane count and index reach ``o`` with it, LATENCY cycles after
        m.d.comb += [
            self.early.eq(delayed(m, staged, ShiftQuantizer.LATENCY - 1, name="entered")),
            self.o.payload.count.eq(delayed(m, staged_count, ShiftQuantizer.LATENCY, name="count")),
            self.early_part.eq(delayed(m, arrived_part, ShiftQuantizer.LATENCY, name="early_part")),
            self.o.payload.part.eq(delayed(m, self.early_part, 1, name="part")),
        ]

        def issue_read():
            """Read the walker's current word for its current part; move on, or stop after the last part."""
            m.d.comb += [self.amem.en.eq(1), self.mask.en.eq(command.masked), walk.step.eq(1)]
            m.d.sync += [pending.eq(1), pending_part.eq(walk.part), pending_count.eq(walk.count),
                         pending_last.eq(walk.last)]
            with m.If(walk.word_end):
                m.d.sync += [read_addr.eq(read_addr + 1), mask_addr.eq(mask_addr + 1)]
            with m.If(walk.last):
                m.next = "DRAIN"

        m.d.sync += pending.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.comb += walk.start.eq(1)
                    m.d.sync += [command.eq(self.cmd.payload), read_addr.eq(0),
                                 mask_addr.eq(self.cmd.payload.mask_base)]
                    m.next = "START"
            with m.State("START"):
                m.d.comb += sq.cmd.valid.eq(1)       # the quantizer is idle: accepted now
                m.next = "READ"
                issue_read()
            with m.State("READ"):
                issue_read()
            with m.State("DRAIN"):
                with m.If(sq.o.valid & sq.o.payload.last):
                    m.next = "IDLE"
        return m
