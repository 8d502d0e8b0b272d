"""The tensor table: slot -> (base, rows, cols, exponent), in memory with synchronous reads.

The host writes whole entries; the sequencer reads three entries at once
(dst, a, b of the current instruction) and writes exponents back (QUANT and
MASK results).  Every read port answers one cycle after it is given a slot,
so the table maps to RAM (block or distributed) instead of 2048 flip-flops
feeding four 32-to-1 multiplexers, which crowded the FPGA's routing.  The
shape fields and the exponent are two memories, because only the exponent
is written back by the core.
"""

from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .interfaces import exp_shape, slot_shape, table_entry_layout


class TableReadSignature(wiring.Signature):
    """Reader side: drive slot, get its entry in the next cycle."""

    def __init__(self, cfg: CoreConfig):
        super().__init__({"slot": Out(slot_shape(cfg)), "entry": In(table_entry_layout(cfg))})


class TableWriteSignature(wiring.Signature):
    def __init__(self, cfg: CoreConfig):
        super().__init__({"en": Out(1), "slot": Out(slot_shape(cfg)), "entry": Out(table_entry_layout(cfg))})


class ExpWriteSignature(wiring.Signature):
    def __init__(self, cfg: CoreConfig):
        super().__init__({"en": Out(1), "slot": Out(slot_shape(cfg)), "exp": Out(exp_shape(cfg))})


class TensorTable(wiring.Component):
    """Host write/read ports, three sequencer read ports, one exponent write port.

    Reads are synchronous and not transparent: an entry written in cycle t is
    seen by a read issued in cycle t+1 (data in t+2).  A host write and an
    exponent write never meet: the host link only writes while the core is idle.
    """

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "host_w": In(TableWriteSignature(cfg)),
            "host_r": In(TableReadSignature(cfg)),
            "rd_dst": In(TableReadSignature(cfg)),
            "rd_a": In(TableReadSignature(cfg)),
            "rd_b": In(TableReadSignature(cfg)),
            "exp_w": In(ExpWriteSignature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        layout = table_entry_layout(cfg)
        shape_bits = layout.size - exp_shape(cfg).width
        assert layout["exp"].offset == shape_bits, "the exponent must be the entry's last field"
        m.submodules.shapes = shapes = Memory(shape=shape_bits, depth=cfg.tensor_slots, init=[])
        m.submodules.exps = exps = Memory(shape=exp_shape(cfg), depth=cfg.tensor_slots, init=[])
        shapes_w = shapes.write_port()
        m.d.comb += [shapes_w.en.eq(self.host_w.en), shapes_w.addr.eq(self.host_w.slot),
                     shapes_w.data.eq(self.host_w.entry.as_value()[:shape_bits])]
        exps_w = exps.write_port()
        with m.If(self.host_w.en):
            m.d.comb += [exps_w.en.eq(1), exps_w.addr.eq(self.host_w.slot), exps_w.data.eq(self.host_w.entry.exp)]
        with m.Elif(self.exp_w.en):
            m.d.comb += [exps_w.en.eq(1), exps_w.addr.eq(self.exp_w.slot), exps_w.data.eq(self.exp_w.exp)]

        for port in (self.host_r, self.rd_dst, self.rd_a, self.rd_b):
            shape_r = shapes.read_port()
            exp_r = exps.read_port()
            m.d.comb += [shape_r.addr.eq(port.slot), exp_r.addr.eq(port.slot),
                         port.entry.as_value().eq(Cat(shape_r.data, exp_r.data))]
        return m
