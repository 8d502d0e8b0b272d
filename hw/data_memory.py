"""DataMemory: the resident data set, sample features (DMEM) and labels (LMEM), for the LOAD engine.

DMEM holds ``cfg.data_words`` words of ``lanes`` int8 (sample s of a set
whose rows take S words is words s*S .. s*S + S - 1), LMEM
``cfg.data_samples`` int8 labels.  The host writes both through the host
link (WRITE_DATA, WRITE_LABELS) while the core is idle; the LOAD engine
reads them through one read port each, pipelined (:class:`~hw.banked_memory.BankedMemory`:
a word arrives :data:`DataMemory.READ_LATENCY` cycles after its read).  One
physical copy each, in banks one DP16KD deep at its narrowest, 2048 x 9:
DMEM's words (8 lanes, 64 bits) eight DP16KD wide, a lane in each, LMEM's
labels one.  At 512 x 36 (two DP16KD per 64-bit word) the same block RAMs
made 29 banks whose 29 x 64 registered read bits all met at the bank
multiplexers, and DMEM held the largest share of the board router's
overuse; at 2048 words per bank they are 8 banks (the last, partial one at
512 x 36) and 512 bits (docs/fpga.md, part 14).
"""

from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from golden_model.config import CoreConfig

from .banked_memory import BankedMemory
from .interfaces import ReadPortSignature, WritePortSignature, data_addr_shape, label_addr_shape, tmem_word_layout


def data_ports(cfg: CoreConfig) -> dict:
    """The memories' ports, memory side: engine reads and host writes of DMEM and LMEM."""
    dword, daddr, laddr = tmem_word_layout(cfg), data_addr_shape(cfg), label_addr_shape(cfg)
    return {
        "data_r": In(ReadPortSignature(daddr, dword)), "data_w": In(WritePortSignature(daddr, dword)),
        "labels_r": In(ReadPortSignature(laddr, signed(8))), "labels_w": In(WritePortSignature(laddr, signed(8))),
    }


class DataMemory(wiring.Component):
    #: Cycles from a read's ``en`` to its word (on both ports; the word is not held after).
    READ_LATENCY = BankedMemory.READ_LATENCY
    #: Words per bank: a DP16KD's depth at 9 bits wide (2048 x 9), for DMEM (a lane per block RAM) and LMEM.
    DATA_BANK_WORDS, LABEL_BANK_WORDS = 2048, 2048

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__(data_ports(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.dmem = dmem = BankedMemory(shape=tmem_word_layout(cfg), depth=cfg.data_words,
                                                bank_depth=self.DATA_BANK_WORDS)
        m.submodules.lmem = lmem = BankedMemory(shape=signed(8), depth=cfg.data_samples,
                                                bank_depth=self.LABEL_BANK_WORDS)
        for mem, read, write in ((dmem, self.data_r, self.data_w), (lmem, self.labels_r, self.labels_w)):
            m.d.comb += [mem.r.addr.eq(read.addr), mem.r.en.eq(read.en), read.data.eq(mem.r.data),
                         mem.w.addr.eq(write.addr), mem.w.en.eq(write.en), mem.w.data.eq(write.data)]
        return m
