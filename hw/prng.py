"""Hardware lanes of the counter-based generator of :mod:`golden_model.prng`."""

from amaranth import Array, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden_model.prng import MASK32, PHI, XS32_SHIFTS, masked_shift_word

from .rounding import WORD_BITS


def xs32(x):
    """One xorshift32 step on a 32-bit value (combinational XOR network)."""
    left1, right, left2 = XS32_SHIFTS
    x = (x ^ (x << left1))[:WORD_BITS]
    x = x ^ (x >> right)
    return (x ^ (x << left2))[:WORD_BITS]


def random_word(x):
    """``xs32(xs32(x))`` as the XOR of :func:`golden_model.prng.word_moves`' masked shifts."""
    return masked_shift_word(x)[:WORD_BITS]


class RandomLanes(wiring.Component):
    """``lanes`` parallel lanes of ``r[i] = xs32(xs32(key + i*PHI))``.

    Lane l holds a counter ``key + (base + l)*PHI`` (mod 2**32) and drives
    ``words[l]`` = the golden ``random_words(key, ...)`` word of element index
    ``base + l`` (:func:`random_word` of the counter).  ``load`` sets base = 0 for ``key`` (and wins over
    ``advance``); ``advance`` adds ``lanes`` to base, i.e. adds the constant
    ``lanes*PHI`` to every counter.  Words are combinational from the counters.

    With ``counted=True`` an extra input ``count`` (0..lanes) sets how far
    ``advance`` moves base: the number of valid elements in the current beat,
    so that beats of padded rows keep the flat element index.  n*PHI comes
    from a constant table (no multiplier).

    ``word`` maps a counter to its word (:func:`random_word`); the formal
    checks of the units' handshakes pass the identity (formal/lanes.py).
    """

    def __init__(self, lanes: int, counted: bool = False, *, word=random_word):
        if lanes < 1:
            raise ValueError(f"lanes must be positive, got {lanes}")
        self.lanes = lanes
        self.counted = counted
        self.word = word
        super().__init__({
            "key": In(WORD_BITS),
            "load": In(1),
            "advance": In(1),
            **({"count": In(range(lanes + 1))} if counted else {}),
            "words": Out(data.ArrayLayout(WORD_BITS, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        if self.counted:
            steps = Array(Const((n * PHI) & MASK32, WORD_BITS) for n in range(self.lanes + 1))
            step = Signal(WORD_BITS)
            m.d.comb += step.eq(steps[self.count])
        else:
            step = (self.lanes * PHI) & MASK32
        for lane in range(self.lanes):
            counter = Signal(WORD_BITS, name=f"counter{lane}")
            with m.If(self.load):
                m.d.sync += counter.eq(self.key + ((lane * PHI) & MASK32))
            with m.Elif(self.advance):
                m.d.sync += counter.eq(counter + step)
            m.d.comb += self.words[lane].eq(self.word(counter))
        return m
