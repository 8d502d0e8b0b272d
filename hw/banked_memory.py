"""BankedMemory: a memory deeper than one block RAM, its read pipelined from the address to the data."""

from amaranth import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from .delay import delayed
from .interfaces import ReadPortSignature, WritePortSignature


class BankedMemory(wiring.Component):
    """``depth`` words of ``shape`` in banks of ``bank_depth`` words, one read and one write port.

    A read's word is on ``r.data`` :data:`READ_LATENCY` cycles after a cycle
    with ``r.en`` (and only then: it is not held; ``r.en`` only marks the
    read, the banks read every cycle).  A write lands one cycle
    after the cycle its ``w.en`` is high.

    An inferred memory deeper than a block RAM is read through a multiplexer
    on the address' high bits right behind the block RAMs' outputs, and its
    block RAMs spread over the chip: DMEM's read was the board's critical
    path (docs/fpga.md: a DP16KD's clock-to-out, a route across the chip,
    the depth multiplexer).  Here every stage has its register: the address
    and the write (fanned out to every bank), the banks (``bank_depth`` words
    each: one block RAM deep, ``Memory`` per bank), each bank's read data
    beside its block RAMs, a multiplexer per group of :data:`GROUP` banks,
    and the multiplexer of the groups.
    """

    #: Banks per first-level multiplexer.
    GROUP = 8
    #: Cycles from a read's ``en`` to its word: address, block RAM, bank register, two multiplexers.
    READ_LATENCY = 5

    def __init__(self, *, shape, depth: int, bank_depth: int):
        if bank_depth < 1 or bank_depth & (bank_depth - 1):
            raise ValueError(f"bank_depth must be a power of two, got {bank_depth}")
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.shape, self.depth, self.bank_depth = shape, depth, bank_depth
        addr = range(depth)
        super().__init__({"r": In(ReadPortSignature(addr, shape)), "w": In(WritePortSignature(addr, shape))})

    def elaborate(self, platform):
        m = Module()
        low = self.bank_depth.bit_length() - 1
        sizes = [min(self.bank_depth, self.depth - start) for start in range(0, self.depth, self.bank_depth)]
        r_addr = Signal.like(self.r.addr)
        w_addr, w_en, w_data = Signal.like(self.w.addr), Signal(), Signal.like(self.w.data)
        m.d.sync += [r_addr.eq(self.r.addr), w_addr.eq(self.w.addr), w_en.eq(self.w.en), w_data.eq(self.w.data)]
        r_bank = Signal(max(1, (len(sizes) - 1).bit_length()))       # one bit at least: no empty registers
        w_bank = Signal.like(r_bank)
        m.d.comb += [r_bank.eq(r_addr[low:]), w_bank.eq(w_addr[low:])]

        # each bank's word, registered beside it; every bank reads every cycle (a read enable would cost
        # a hold register and multiplexer per bank in the fabric: yosys' DP16KD mapping does not hold)
        read = []
        for bank, size in enumerate(sizes):
            m.submodules[f"bank{bank}"] = mem = Memory(shape=self.shape, depth=size, init=[])
            rp, wp = mem.read_port(), mem.write_port()
            word = Signal.like(self.r.data, name=f"read{bank}")
            m.d.comb += [rp.addr.eq(r_addr[:low]),
                         wp.addr.eq(w_addr[:low]), wp.en.eq(w_en & (w_bank == bank)), wp.data.eq(w_data)]
            m.d.sync += word.eq(rp.data)
            read.append(word)

        # the read's bank number beside its word: at the group multiplexers, then at the last one
        bank_at_groups = delayed(m, r_bank, 2, name="bank_at_groups")
        bank_at_last = delayed(m, bank_at_groups, 1, name="bank_at_last")
        group_bits = self.GROUP.bit_length() - 1
        groups = []
        for first in range(0, len(read), self.GROUP):
            word = Signal.like(self.r.data, name=f"group{first // self.GROUP}")
            members = read[first:first + self.GROUP]
            m.d.sync += word.eq(Array(members)[bank_at_groups[:group_bits]] if len(members) > 1 else members[0])
            groups.append(word)
        m.d.sync += self.r.data.eq(Array(groups)[bank_at_last[group_bits:]] if len(groups) > 1 else groups[0])
        return m
