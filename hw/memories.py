"""The core's data memories.

:class:`DataMemories` holds TMEM (int8 words) and AMEM (int32 words) as
amaranth.lib.memory.Memory instances (block RAM on ECP5) with two TMEM read
ports, one TMEM write port, one AMEM read and one AMEM write port: the
:class:`~hw.interfaces.EngineSignature` port set.  A third TMEM read port, a
second AMEM read port and muxes on both write ports serve the host.
"""

from __future__ import annotations

from amaranth import Module, Mux, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from golden_model.config import CoreConfig

from .interfaces import (ReadPortSignature, WritePortSignature, amem_addr_shape, amem_word_layout, tmem_addr_shape,
                         tmem_word_layout)


def host_ports(cfg: CoreConfig) -> dict:
    """Backdoor ports of the memories, host side (reads are synchronous)."""
    return {
        "host_tmem_r": In(ReadPortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
        "host_tmem_w": In(WritePortSignature(tmem_addr_shape(cfg), tmem_word_layout(cfg))),
        "host_amem_r": In(ReadPortSignature(amem_addr_shape(cfg), amem_word_layout(cfg))),
        "host_amem_w": In(WritePortSignature(amem_addr_shape(cfg), amem_word_layout(cfg))),
    }


class DataMemories(wiring.Component):
    """TMEM and AMEM with the physical engine ports and host ports.

    TMEM has three engine read ports (A, B, C) and one write port; the host
    reads through port C where the engine port's ``en`` is low (the core
    holds it high while busy and the host reads only while it is not, so the
    two never meet, and the port's address is selected by the core's
    register, not by the host's enable).  AMEM holds ``banks`` ACC tensors (the core uses two, so a
    QUANT can read one while a product fills the other): its engine
    addresses carry the bank number above the word address.  A host write
    wins over an engine's in the same cycle; the core only lets the host
    write while no instruction runs.
    """

    def __init__(self, cfg: CoreConfig, banks: int = 1):
        if banks < 1 or banks & (banks - 1):
            raise ValueError(f"banks must be a power of two, got {banks}")
        self.cfg, self.banks = cfg, banks
        bank_bits = banks.bit_length() - 1
        amem_addr = unsigned(amem_addr_shape(cfg).width + bank_bits)
        tword, taddr = tmem_word_layout(cfg), tmem_addr_shape(cfg)
        super().__init__({
            "tmem_a": In(ReadPortSignature(taddr, tword)),
            "tmem_b": In(ReadPortSignature(taddr, tword)),
            "tmem_c": In(ReadPortSignature(taddr, tword)),
            "tmem_w": In(WritePortSignature(taddr, tword)),
            "amem_r": In(ReadPortSignature(amem_addr, amem_word_layout(cfg))),
            "amem_w": In(WritePortSignature(amem_addr, amem_word_layout(cfg))),
            **host_ports(cfg),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.tmem = tmem = Memory(shape=tmem_word_layout(cfg), depth=cfg.tmem_words, init=[])
        m.submodules.amem = amem = Memory(shape=amem_word_layout(cfg), depth=cfg.acc_words * self.banks, init=[])
        for port, mem in ((self.tmem_a, tmem), (self.tmem_b, tmem), (self.amem_r, amem), (self.host_amem_r, amem)):
            read = mem.read_port()
            m.d.comb += [read.addr.eq(port.addr), read.en.eq(port.en), port.data.eq(read.data)]
        shared = tmem.read_port()
        m.d.comb += [self.tmem_c.data.eq(shared.data), self.host_tmem_r.data.eq(shared.data)]
        m.d.comb += [shared.addr.eq(Mux(self.tmem_c.en, self.tmem_c.addr, self.host_tmem_r.addr)),
                     shared.en.eq(self.tmem_c.en | self.host_tmem_r.en)]
        twrite = tmem.write_port()
        with m.If(self.host_tmem_w.en):
            m.d.comb += [twrite.addr.eq(self.host_tmem_w.addr), twrite.data.eq(self.host_tmem_w.data),
                         twrite.en.eq(1)]
        with m.Else():
            m.d.comb += [twrite.addr.eq(self.tmem_w.addr), twrite.data.eq(self.tmem_w.data),
                         twrite.en.eq(self.tmem_w.en)]
        awrite = amem.write_port()
        with m.If(self.host_amem_w.en):
            m.d.comb += [awrite.addr.eq(self.host_amem_w.addr), awrite.data.eq(self.host_amem_w.data),
                         awrite.en.eq(1)]
        with m.Else():
            m.d.comb += [awrite.addr.eq(self.amem_w.addr), awrite.data.eq(self.amem_w.data),
                         awrite.en.eq(self.amem_w.en)]
        return m
