"""Shuffler: the epoch's sample order on the core, golden ``shuffle.permute``.

``cmd`` sets the sample count N (1..``max_count``) and the epoch's key
(again at any time between indices: the next epoch); then each index on
``i`` (below N) comes out on ``o`` as its position in the epoch,
one Feistel round per two cycles (the mix and the halves' shifts registered before the swap;
``shuffle.ROUNDS`` per pass), walking again
while the result is N or more.  The halves' width follows N (golden
``half_bits``): a leading-one detector over the latched N and shifts by it,
registered in two stages, so an index is taken ``SETTLE`` cycles after a
command at the earliest.
"""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.prng import PHI
from golden_model.shuffle import ROUNDS, half_bits

from .prng import xs32
from .rounding import WORD_BITS
from .sq_shift import bit_length


class Shuffler(wiring.Component):
    #: cycles per Feistel round (the mix, then the swap); a pass is ``ROUNDS`` rounds
    CYCLES_PER_ROUND = 2
    #: cycles after a command before an index is taken: N's bit length, then the halves' width and mask
    SETTLE = 1

    def __init__(self, *, max_count: int):
        if max_count < 1:
            raise ValueError(f"max_count must be positive, got {max_count}")
        self.max_count = max_count
        self.half_most = half_bits(max_count)
        index = range(4 ** self.half_most)
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout({"count": range(max_count + 1), "key": WORD_BITS}))),
            "i": In(stream.Signature(index)),
            "o": Out(stream.Signature(index)),
        })

    def elaborate(self, platform):
        m = Module()
        count, key = Signal.like(self.cmd.payload.count), Signal(WORD_BITS)
        half = Signal(range(self.half_most + 1))
        mask = Signal(self.half_most)
        x = Signal.like(self.o.payload)
        round_key = Signal(WORD_BITS)
        rounds = Signal(range(ROUNDS))

        # half = max(1, ceil(bits(N - 1) / 2)) from the latched N: its bit length, then the width, registered
        bits = Signal(range(len(count) + 1))
        m.d.sync += bits.eq(bit_length(m, (count - 1)[:len(count)], "count_bits"))
        wanted = (bits + 1) >> 1
        width = Mux(wanted > 1, wanted, 1)
        m.d.sync += [half.eq(width), mask.eq((1 << width) - 1)]
        settle = Signal(range(self.SETTLE + 1))
        left, right = x >> half, x & mask
        mixed, mixing = Signal(self.half_most), Signal()
        left_r, right_up = Signal(self.half_most), Signal.like(x)     # the swap's shifts, from the mix cycle
        after = right_up | (left_r ^ mixed)
        m.d.comb += self.o.payload.eq(x)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [count.eq(self.cmd.payload.count), key.eq(self.cmd.payload.key), settle.eq(self.SETTLE)]
        with m.Elif(settle != 0):
            m.d.sync += settle.eq(settle - 1)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.next = "READY"
            with m.State("READY"):              # a new command (the next epoch) wins over an index
                m.d.comb += [self.cmd.ready.eq(1), self.i.ready.eq(~self.cmd.valid & (settle == 0))]
                with m.If(~self.cmd.valid & (settle == 0) & self.i.valid):
                    m.d.sync += [x.eq(self.i.payload), round_key.eq(key), rounds.eq(0)]
                    m.next = "ROUND"
            with m.State("ROUND"):              # two cycles a round: the mix, then the swap (and the range test)
                m.d.sync += mixing.eq(~mixing)
                with m.If(~mixing):
                    m.d.sync += [mixed.eq(xs32((right + round_key)[:WORD_BITS]) & mask), left_r.eq(left),
                                 right_up.eq(right << half)]
                with m.Else():
                    m.d.sync += [x.eq(after), round_key.eq(round_key + PHI), rounds.eq(rounds + 1)]
                    with m.If(rounds == ROUNDS - 1):
                        m.d.sync += [round_key.eq(key), rounds.eq(0)]
                        with m.If(after < count):
                            m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "READY"
        return m

