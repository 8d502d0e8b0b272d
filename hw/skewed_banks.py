"""SkewedBanks: an operand feeder's two banks of words, written a word at a time, read a lane of every word.

A feeder fills a bank with ``words`` words of ``lanes`` lanes (one word per
cycle) and emits vectors across them: lane ``lane`` of every word (a plain
operand's column), or ``words`` consecutive lanes of word 0 from ``lane`` on
(a transposed operand).  Held in flip-flops, each output bit needs a
multiplexer over both banks' lanes of its word (32 inputs at 16 lanes).

Here the banks live in ``lanes`` small LUT RAMs, one entry per (bank, word),
skewed so that a word's write and a vector's read each touch every RAM once:
lane ``l`` of word ``i`` is held by RAM ``(l + i) % lanes`` at entry (bank,
``i``).  A write rotates the word by its index; a plain read asks RAM ``j``
for word ``(j - lane) % lanes`` and a transposed read every RAM for word 0,
and output ``i`` is RAM ``(lane + i) % lanes``'s entry, a rotation by
``lane``.  Writes land at the clock edge; reads are combinational (the
feeder registers them), so a bank being emitted can be refilled from the
cycle after its last read.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


def rotate(values: list, amount, *, right: bool) -> list:
    """``values`` rotated by the unsigned ``amount`` (a barrel of 2:1 multiplexers, one level per bit):
    right, element ``i`` of the result is ``values[(i + amount) % n]``; left, ``values[(i - amount) % n]``."""
    n = len(values)
    for bit in range(len(amount)):
        step = (1 << bit) % n
        if step:
            moved = [values[(i + step) % n] if right else values[(i - step) % n] for i in range(n)]
            values = [Mux(amount[bit], a, b) for a, b in zip(moved, values)]
    return values


class SkewedBanks(wiring.Component):
    """Two banks of ``words`` words of ``lanes`` lanes of ``bits`` bits (``words`` divides ``lanes``).

    Write: ``w_en`` puts ``w_data`` into word ``w_word`` of bank ``w_bank``.  Read (combinational):
    ``r_data[i]`` is lane ``r_lane`` of word ``i`` of bank ``r_bank``, or with ``r_transposed`` lane
    ``r_lane + i`` of its word 0.
    """

    def __init__(self, *, lanes: int, words: int, bits: int):
        if lanes < 1 or lanes & (lanes - 1) or words < 1 or lanes % words:
            raise ValueError(f"lanes must be a power of two and words divide it, got lanes={lanes} words={words}")
        self.lanes, self.words, self.bits = lanes, words, bits
        super().__init__({
            "w_en": In(1), "w_bank": In(1), "w_word": In(range(words)),
            "w_data": In(data.ArrayLayout(bits, lanes)),
            "r_bank": In(1), "r_lane": In(range(lanes)), "r_transposed": In(1),
            "r_data": Out(data.ArrayLayout(bits, words)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, words = self.lanes, self.words
        index_bits = (words - 1).bit_length()
        written = rotate([self.w_data[l] for l in range(lanes)], self.w_word, right=False)
        held = []
        for j in range(lanes):
            ram = Memory(shape=self.bits, depth=2 * words, init=[], attrs={"ram_style": "distributed"})
            m.submodules[f"ram{j}"] = ram
            write, read = ram.write_port(), ram.read_port(domain="comb")
            word = Signal(range(words), name=f"word{j}")
            m.d.comb += [
                write.en.eq(self.w_en), write.addr.eq(Cat(self.w_word, self.w_bank)), write.data.eq(written[j]),
                word.eq(Mux(self.r_transposed, 0, (j - self.r_lane)[:index_bits])),
                read.addr.eq(Cat(word, self.r_bank)),
            ]
            held.append(read.data)
        for i, value in enumerate(rotate(held, self.r_lane, right=True)[:words]):
            m.d.comb += self.r_data[i].eq(value)
        return m
