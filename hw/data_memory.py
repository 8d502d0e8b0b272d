"""DataMemory: the resident data set, sample features (DMEM) and labels (LMEM), for the LOAD engine.

DMEM holds ``cfg.data_words`` words of ``lanes`` int8 (sample s of a set
whose rows take S words is words s*S .. s*S + S - 1), LMEM
``cfg.data_samples`` int8 labels.  The host writes both through the host
link (WRITE_DATA, WRITE_LABELS) while the core is idle; the LOAD engine
reads them through one synchronous read port each.  One physical copy each:
a single read port maps to one block RAM array on ECP5.
"""

from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from golden_model.config import CoreConfig

from .interfaces import ReadPortSignature, WritePortSignature, data_addr_shape, label_addr_shape, tmem_word_layout


def data_ports(cfg: CoreConfig) -> dict:
    """The memories' ports, memory side: engine reads and host writes of DMEM and LMEM."""
    dword, daddr, laddr = tmem_word_layout(cfg), data_addr_shape(cfg), label_addr_shape(cfg)
    return {
        "data_r": In(ReadPortSignature(daddr, dword)), "data_w": In(WritePortSignature(daddr, dword)),
        "labels_r": In(ReadPortSignature(laddr, signed(8))), "labels_w": In(WritePortSignature(laddr, signed(8))),
    }


class DataMemory(wiring.Component):
    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__(data_ports(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.dmem = dmem = Memory(shape=tmem_word_layout(cfg), depth=cfg.data_words, init=[])
        m.submodules.lmem = lmem = Memory(shape=signed(8), depth=cfg.data_samples, init=[])
        for mem, read, write in ((dmem, self.data_r, self.data_w), (lmem, self.labels_r, self.labels_w)):
            r, w = mem.read_port(), mem.write_port()
            m.d.comb += [r.addr.eq(read.addr), r.en.eq(read.en), read.data.eq(r.data),
                         w.addr.eq(write.addr), w.en.eq(write.en), w.data.eq(write.data)]
        return m
