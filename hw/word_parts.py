"""Memory words as beats of the narrower quantize and update units (``CoreConfig.unit_lanes``).

A word of ``lanes`` elements is ``unit_beats`` parts of ``unit_width``
elements, part j holding lanes j*U .. j*U + U - 1.  The units stream parts;
the engines read a word once per part (the same address ``unit_beats``
times) and pick the part, and a :class:`WordAssembler` puts the parts of a
result word together again for its TMEM write.  With ``unit_lanes`` 0 (one
part per word) all of it is wiring.
"""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig

from .rounding import data_shape


def part_shape(cfg: CoreConfig):
    """The part index of a word: range(unit_beats)."""
    return range(max(cfg.unit_beats, 2))


def part_count(cfg: CoreConfig, count, part):
    """Valid elements of part ``part`` of a word whose first ``count`` lanes are valid."""
    width = cfg.unit_width
    if cfg.unit_beats == 1:
        return count
    rest = count - part * width
    return Mux(rest <= 0, 0, Mux(rest >= width, width, rest))


def part_counter(m: Module, cfg: CoreConfig, *, restart, advance) -> tuple:
    """The current part of a word and whether it is the word's last: 0 at ``restart``, one more with each
    ``advance``, and 0 again after the last part (a register; with one part per word, always 0)."""
    part, last = Signal(part_shape(cfg), name="part"), Signal(name="last_part")
    m.d.comb += last.eq(part == cfg.unit_beats - 1)
    with m.If(restart):
        m.d.sync += part.eq(0)
    with m.Elif(advance):
        m.d.sync += part.eq(Mux(last, 0, part + 1))
    return part, last


def word_part(cfg: CoreConfig, word, part) -> list:
    """The ``unit_width`` elements of part ``part`` of ``word`` (a list of values, lane by lane)."""
    width = cfg.unit_width
    if cfg.unit_beats == 1:
        return [word[lane] for lane in range(width)]
    return [Array(word[p * width + lane] for p in range(cfg.unit_beats))[part] for lane in range(width)]


class WordAssembler(wiring.Component):
    """Collects ``unit_beats`` consecutive parts on ``i`` into the word on ``o``.

    ``o.valid`` is high with the last part (``o.data`` is the earlier parts,
    registered, and that part); ``clear`` restarts at part 0 for a new
    tensor."""

    def __init__(self, cfg: CoreConfig):
        self.cfg = cfg
        super().__init__({
            "clear": In(1),
            "i": In(wiring.Signature({"valid": Out(1), "data": Out(data.ArrayLayout(data_shape(cfg),
                                                                                    cfg.unit_width))})),
            "o": Out(wiring.Signature({"valid": Out(1), "data": Out(data.ArrayLayout(data_shape(cfg),
                                                                                     cfg.lanes))})),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        beats = cfg.unit_beats
        if beats == 1:
            m.d.comb += [self.o.valid.eq(self.i.valid), self.o.data.eq(self.i.data)]
            return m
        earlier = Signal(data.ArrayLayout(data.ArrayLayout(data_shape(cfg), cfg.unit_width), beats - 1))
        part = Signal(range(beats))
        m.d.comb += [self.o.valid.eq(self.i.valid & (part == beats - 1)),
                     self.o.data.eq(Cat(earlier, self.i.data))]
        with m.If(self.clear):
            m.d.sync += part.eq(0)
        with m.Elif(self.i.valid):
            m.d.sync += part.eq(Mux(part == beats - 1, 0, part + 1))
            with m.Switch(part):
                for index in range(beats - 1):
                    with m.Case(index):
                        m.d.sync += earlier[index].eq(self.i.data)
        return m
