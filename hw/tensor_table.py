"""The tensor table: slot -> (base, rows, cols, exponent), in registers.

The host writes whole entries; the sequencer reads three entries at once
(dst, a, b of the current instruction) and writes exponents back (QUANT and
MASK results).  Registers rather than block RAM: cfg.tensor_slots entries of
64 bits are few, and three combinational read ports come for free.
"""

from amaranth import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .interfaces import exp_shape, slot_shape, table_entry_layout


class TableReadSignature(wiring.Signature):
    """Reader side: drive slot, get the entry in the same cycle."""

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

    A host write and an exponent write never meet: the host link only writes
    while the core is idle.
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
        layout = table_entry_layout(self.cfg)
        entries = Array(Signal(layout, name=f"slot{i}") for i in range(self.cfg.tensor_slots))
        for port in (self.host_r, self.rd_dst, self.rd_a, self.rd_b):
            m.d.comb += port.entry.eq(entries[port.slot])
        with m.If(self.host_w.en):
            m.d.sync += entries[self.host_w.slot].eq(self.host_w.entry)
        with m.Elif(self.exp_w.en):
            m.d.sync += entries[self.exp_w.slot].exp.eq(self.exp_w.exp)
        return m
