"""The per-element units against their specification (formal/spec.py), for every input.

Four wrappers, each an Amaranth module with Assert and Cover statements
whose free inputs are its ports (the solver picks their values every cycle):

  GeneratorWordCheck    hw.prng.random_word (the masked shifts) against the nested xs32(xs32(x)),
                        combinational, every 32-bit counter x.
  RoundingLaneCheck     hw.rounding.round_shift_saturate with a ShiftDecode, the lane datapath both
                        units share: combinational, over x (acc_bits), the shift (every shift_bits
                        value, flushing ones included), the mode and the random word r.
  ShiftQuantizerCheck   a one-lane hw.shift_quantizer.ShiftQuantizer given one command and a
                        one-element tensor: relu or not, an explicit shift or its own max pass,
                        either mode, any key, any x, any handshake timing.
  UpdateUnitCheck       a one-lane hw.update_unit.UpdateUnit given one command (any signed shift,
                        either mode, any key) and one (w, g) pair, any handshake timing.

Element 0 of a tensor draws the word xs32(xs32(key)); xs32 is a bijection of
32-bit words (each xorshift step is invertible), so "every key" is "every r".
``spec`` may be swapped for a deliberately wrong one: tests/test_formal.py
shows that the solver then finds a counterexample.  ``free_timing=False``
holds every handshake high (one schedule, a quicker proof of the same data
space) and keeps the real generator word.  With free timing (the default)
the solver also picks when each handshake happens, and the unit's generator
word is abstracted to its counter (:func:`counter_itself`; the spec's r is
then the key itself): the proof covers every r, the handshakes and the
counter's load, and leaves the word function to GeneratorWordCheck and the
fixed-timing checks.  With the real word on both sides the free-timing
update_unit proof ran past 9 minutes, against seconds abstracted.
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Mux, ResetSignal, Signal
from amaranth.hdl import Assert, Assume, Cover

from golden_model.config import CoreConfig
from hw.prng import random_word
from hw.rounding import ShiftDecode, acc_shape, data_shape, round_shift_saturate, shift_shape, signed_shift_shape
from hw.shift_quantizer import ShiftQuantizer
from hw.update_unit import UpdateUnit

from . import spec as golden_spec
from .spec import WORD_BITS


def counter_itself(counter):
    """The generator word abstracted to its counter (the free-timing checks' ``word``)."""
    return counter


def generator(spec, *, free_timing: bool):
    """(the unit's ``word``, the spec's word of a key): real, or abstracted to the counter with free timing."""
    return (counter_itself, counter_itself) if free_timing else (random_word, spec.first_word)


class GeneratorWordCheck(Elaboratable):
    """Combinational: the generator's word of a counter equals golden ``xs32(xs32(counter))``."""

    def __init__(self, cfg: CoreConfig, *, spec=golden_spec):
        self.spec = spec
        self.counter = Signal(WORD_BITS)
        self.word = Signal(WORD_BITS)
        self.ports = [self.counter, self.word]

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.word.eq(random_word(self.counter))
        m.d.comb += Assert(self.word == self.spec.xs32(self.spec.xs32(self.counter)))
        return m


class RoundingLaneCheck(Elaboratable):
    """Combinational: the shared lane datapath equals ``saturate(round_shift(x, s, mode))``."""

    def __init__(self, cfg: CoreConfig, *, spec=golden_spec):
        self.cfg = cfg
        self.spec = spec
        self.x = Signal(acc_shape(cfg))
        self.shift = Signal(shift_shape(cfg))
        self.stochastic = Signal()
        self.r = Signal(WORD_BITS)
        self.q = Signal(data_shape(cfg))
        self.ports = [self.x, self.shift, self.stochastic, self.r, self.q]

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        decoded = ShiftDecode(m, self.shift, cfg)
        m.d.comb += self.q.eq(round_shift_saturate(self.x, decoded, self.stochastic, self.r))
        m.d.comb += Assert(self.q == self.spec.shift_quantize(self.x, self.shift, self.stochastic, self.r, cfg))
        return m


class OneCommandDriver:
    """Drives a LanedStreamUnit: one command, then its beats, each when the solver chooses.

    Ports (free inputs, made here so that the wrapper can list them before it elaborates):
    ``cmd_valid`` and the command fields, ``beat_valid`` and the beat fields, ``o_ready``.  Every
    beat repeats the first beat's fields (a tensor of one element, read once per pass).  After
    :meth:`drive`, ``sent`` holds the command and beat as the unit accepted them and ``done`` is high
    once all beats were accepted.
    """

    def __init__(self, *, command: dict, beat: dict):
        self.command = {name: Signal(shape, name=name) for name, shape in command.items()}
        self.beat = {name: Signal(shape, name=name) for name, shape in beat.items()}
        self.cmd_valid, self.beat_valid, self.o_ready = Signal(name="cmd_valid"), Signal(name="beat_valid"), \
            Signal(name="o_ready")
        self.ports = [*self.command.values(), *self.beat.values(), self.cmd_valid, self.beat_valid, self.o_ready]
        self.sent = {name: Signal(shape, name=f"sent_{name}") for name, shape in {**command, **beat}.items()}
        self.value = {}
        self.done = None

    def drive(self, m: Module, unit, *, beats, free_timing: bool) -> None:
        """Connect to ``unit``; ``beats`` is a number, or a function of ``sent``.  Without
        ``free_timing`` the handshakes are held high (command, beats and output at their earliest)."""
        commanded, accepted = Signal(), Signal(2)
        total = beats(self.sent) if callable(beats) else beats
        m.d.comb += [Assume(~ResetSignal()), unit.o.ready.eq(self.o_ready)]
        if not free_timing:
            m.d.comb += Assume(self.cmd_valid & self.beat_valid & self.o_ready)

        m.d.comb += unit.cmd.valid.eq(self.cmd_valid & ~commanded)
        for name, port in self.command.items():
            m.d.comb += getattr(unit.cmd.payload, name).eq(port)
        with m.If(unit.cmd.valid & unit.cmd.ready):
            m.d.sync += [commanded.eq(1), *(self.sent[name].eq(port) for name, port in self.command.items())]

        first = accepted == 0
        self.value = {name: Mux(first, port, self.sent[name]) for name, port in self.beat.items()}
        m.d.comb += [unit.i.valid.eq(self.beat_valid & commanded & (accepted < total)),
                     unit.i.payload.last.eq(1)]              # each beat ends its pass
        with m.If(unit.i.valid & unit.i.ready):
            m.d.sync += accepted.eq(accepted + 1)
            with m.If(first):
                m.d.sync += [self.sent[name].eq(port) for name, port in self.beat.items()]
        self.done = commanded & (accepted == total)


class ShiftQuantizerCheck(Elaboratable):
    """A one-lane ShiftQuantizer on a one-element tensor equals golden ``shift_quantize``."""

    def __init__(self, cfg: CoreConfig, *, spec=golden_spec, free_timing: bool = True):
        self.cfg = cfg
        self.spec = spec
        self.free_timing = free_timing
        command = {"relu": 1, "stochastic": 1, "explicit": 1, "shift": shift_shape(cfg), "key": WORD_BITS}
        self.driver = OneCommandDriver(command=command, beat={"x": acc_shape(cfg)})
        self.ports = self.driver.ports

    def elaborate(self, platform):
        m = Module()
        cfg, spec, driver = self.cfg, self.spec, self.driver
        word, word_of_key = generator(spec, free_timing=self.free_timing)
        m.submodules.unit = unit = ShiftQuantizer(cfg, 1, word=word)
        driver.drive(m, unit, beats=lambda sent: 2 - sent["explicit"],       # the max pass reads it twice
                     free_timing=self.free_timing)
        m.d.comb += unit.i.payload.data[0].eq(driver.value["x"])

        sent = driver.sent
        x, shift, r = Signal(acc_shape(cfg)), Signal(shift_shape(cfg)), Signal(WORD_BITS)   # named, so shared
        m.d.comb += [x.eq(Mux(sent["relu"] & (sent["x"] < 0), 0, sent["x"])),
                     shift.eq(Mux(sent["explicit"], sent["shift"], spec.sq_shift(x, cfg))),
                     r.eq(word_of_key(sent["key"]))]
        q = spec.shift_quantize(x, shift, sent["stochastic"], r, cfg)
        with m.If(unit.o.valid):
            m.d.comb += [Assert(driver.done), Assert(unit.o.payload.last),
                         Assert(unit.o.payload.shift == shift), Assert(unit.o.payload.data[0] == q)]
        m.d.comb += Cover(unit.o.valid & ~sent["explicit"] & sent["stochastic"])
        return m


class UpdateUnitCheck(Elaboratable):
    """A one-lane UpdateUnit on one (w, g) pair equals golden ``update_weights``."""

    def __init__(self, cfg: CoreConfig, *, spec=golden_spec, free_timing: bool = True):
        self.cfg = cfg
        self.spec = spec
        self.free_timing = free_timing
        command = {"shift": signed_shift_shape(cfg), "stochastic": 1, "key": WORD_BITS}
        self.driver = OneCommandDriver(command=command, beat={"w": data_shape(cfg), "g": data_shape(cfg)})
        self.ports = self.driver.ports

    def elaborate(self, platform):
        m = Module()
        cfg, spec, driver = self.cfg, self.spec, self.driver
        word, word_of_key = generator(spec, free_timing=self.free_timing)
        m.submodules.unit = unit = UpdateUnit(cfg, 1, word=word)
        driver.drive(m, unit, beats=1, free_timing=self.free_timing)
        m.d.comb += [unit.i.payload.w[0].eq(driver.value["w"]), unit.i.payload.g[0].eq(driver.value["g"])]

        sent = driver.sent
        r = Signal(WORD_BITS)
        m.d.comb += r.eq(word_of_key(sent["key"]))
        w = spec.update_weight(sent["w"], sent["g"], sent["shift"], sent["stochastic"], r, cfg)
        with m.If(unit.o.valid):
            m.d.comb += [Assert(driver.done), Assert(unit.o.payload.last), Assert(unit.o.payload.w[0] == w)]
        m.d.comb += Cover(unit.o.valid & sent["stochastic"])
        return m


__all__ = ["counter_itself", "generator", "GeneratorWordCheck", "RoundingLaneCheck", "OneCommandDriver", "ShiftQuantizerCheck", "UpdateUnitCheck"]
