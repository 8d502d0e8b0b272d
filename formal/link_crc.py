"""The HostLink never commits a frame whose CRC is wrong (bounded proof).

:class:`LinkCrcCheck` wraps a :class:`hw.host_link.HostLink` whose
environment is entirely free: the request bytes and their timing
(``rx``), the answer back-pressure (``tx.ready``) and everything the core
answers (``status``, the table and TMEM read data) are chosen by the solver
in every cycle.  Beside it a monitor, written from docs/protocol.md and
sharing no code with the gateware, follows the accepted bytes through the
frame grammar (sync 0xA5, cmd, seq, len(2), len payload bytes, CRC(2) low
byte first; a frame quiet for ``timeout_cycles`` is discarded), computes
CRC-16/CCITT-FALSE bit by bit from protocol.wire.CRC's parameters and keeps
``good``: the last frame ended and its CRC matched.  The property:

    a core-visible write (tmem_w.en, prog_w.en, table_w.en, run.start)  =>  good

Covers show that each kind of write, and a write after a frame refused
with BAD_CRC, is reachable within the depth, so the proof is not vacuous.
"""

from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Mux, ResetSignal, Shape, Signal
from amaranth.hdl import Assert, Assume, Cover, Fragment
from amaranth.lib import wiring

from golden_model.config import CoreConfig
from hw.host_link import HostLink
from protocol import wire

#: The frame timeout of the checked link: short, so that stalled frames happen within the depth.
TIMEOUT_CYCLES = 4


def crc_byte(m: Module, crc, byte, *, polynomial: int, width: int = 16) -> Signal:
    """The CRC register after one byte, MSB first: the textbook bitwise loop, unrolled (a signal a bit)."""
    for bit in reversed(range(8)):
        after = Signal(width, name=f"crc_after_bit{bit}")
        m.d.comb += after.eq((crc << 1)[:width] ^ Mux(crc[width - 1] ^ byte[bit], polynomial, 0))
        crc = after
    return crc


class FrameMonitor(Elaboratable):
    """Follows the bytes a link accepts through the request grammar; ``good``: the last frame's CRC held."""

    def __init__(self, *, timeout_cycles: int, crc=wire.CRC):
        if (crc.crc_width, crc.reflect_input, crc.reflect_output, crc.xor_output) != (16, False, False, 0):
            raise ValueError("the monitor computes 16-bit, MSB-first CRCs without reflection or final XOR")
        self.timeout_cycles = timeout_cycles
        self.crc_parameters = crc
        self.valid = Signal()          # a byte is offered (resets the stall count)
        self.accept = Signal()         # the link takes it
        self.byte = Signal(8)
        self.good = Signal()
        self.bad = Signal()            # the last frame ended with a wrong CRC
        self.crc = Signal(16)          # the CRC of the frame's bytes so far
        self.in_frame = Signal()       # from the sync byte to the last CRC byte

    def elaborate(self, platform):
        m = Module()
        params = self.crc_parameters
        crc = Signal(16, init=params.initial_crc)
        m.d.comb += self.crc.eq(crc)
        index, length, low = Signal(2), Signal(16), Signal(8)
        quiet = Signal(range(self.timeout_cycles))
        step = crc_byte(m, crc, self.byte, polynomial=params.polynomial)

        def stall():
            """A frame quiet for timeout_cycles is discarded."""
            with m.If(self.valid):
                m.d.sync += quiet.eq(0)
            with m.Elif(quiet == self.timeout_cycles - 1):
                m.next = "HUNT"
            with m.Else():
                m.d.sync += quiet.eq(quiet + 1)

        with m.FSM() as fsm:
            m.d.comb += self.in_frame.eq(~fsm.ongoing("HUNT"))
            with m.State("HUNT"):
                with m.If(self.accept & (self.byte == wire.REQUEST_SYNC)):
                    m.d.sync += [crc.eq(params.initial_crc), index.eq(0), length.eq(0), quiet.eq(0),
                                 self.good.eq(0), self.bad.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):                 # cmd, seq, len low, len high
                stall()
                with m.If(self.accept):
                    m.d.sync += [crc.eq(step), index.eq(index + 1)]
                    with m.If(index == 2):
                        m.d.sync += length[:8].eq(self.byte)
                    with m.If(index == 3):
                        m.d.sync += length[8:].eq(self.byte)
                        with m.If(Cat(length[:8], self.byte) == 0):
                            m.next = "CRC_LOW"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                stall()
                with m.If(self.accept):
                    m.d.sync += [crc.eq(step), length.eq(length - 1)]
                    with m.If(length == 1):
                        m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                stall()
                with m.If(self.accept):
                    m.d.sync += low.eq(self.byte)
                    m.next = "CRC_HIGH"
            with m.State("CRC_HIGH"):
                stall()
                with m.If(self.accept):
                    match = Cat(low, self.byte) == crc
                    m.d.sync += [self.good.eq(match), self.bad.eq(~match)]
                    m.next = "HUNT"
        return m


def origin(fragment: Fragment, *path: str):
    """The elaboratable behind the subfragment at ``path`` (names of submodules) of ``fragment``."""
    for name in path:
        fragment = next(sub for sub, sub_name, _ in fragment.subfragments if sub_name == name)
    return fragment.origins[0]


class LinkCrcCheck(Elaboratable):
    """HostLink in a free environment, its frame monitor, and the no-commit-without-CRC property."""

    def __init__(self, cfg: CoreConfig, *, timeout_cycles: int = TIMEOUT_CYCLES, crc=wire.CRC):
        self.cfg = cfg
        self.link = HostLink(cfg, timeout_cycles=timeout_cycles)
        self.monitor = FrameMonitor(timeout_cycles=timeout_cycles, crc=crc)
        self.rx_valid, self.rx_byte, self.tx_ready = Signal(name="rx_valid"), Signal(8, name="rx_byte"), \
            Signal(name="tx_ready")
        self.core_inputs = {}
        for path, member, value in self.link.core.signature.flatten(self.link.core):
            if member.flow == wiring.In:
                name = "core_" + "_".join(str(part) for part in path)
                self.core_inputs[name] = (Signal(Shape.cast(member.shape), name=name), value)
        self.ports = [self.rx_valid, self.rx_byte, self.tx_ready, *(port for port, _ in self.core_inputs.values())]

    def elaborate(self, platform):
        m = Module()
        link, monitor = self.link, self.monitor
        fragment = Fragment.get(link, platform)
        m.submodules.link, m.submodules.monitor = fragment, monitor
        # Lemmas: the monitor is within a frame exactly while the parser is (mid_frame, not yet offering it),
        # and there the parser's CRC register equals the monitor's.  Each is proven at every step and is
        # then a fact for the later steps, so a step only has to follow one byte through both.
        parser, parser_crc = origin(fragment, "parser"), origin(fragment, "parser", "crc")
        m.d.comb += [Assert(monitor.in_frame == (parser.mid_frame & ~parser.frame.valid)),
                     Assert(~monitor.in_frame | (parser_crc.crc == monitor.crc))]
        m.d.comb += Assume(~ResetSignal())
        m.d.comb += [link.rx.valid.eq(self.rx_valid), link.rx.payload.eq(self.rx_byte), link.tx.ready.eq(self.tx_ready),
                     *(value.eq(port) for port, value in self.core_inputs.values()),
                     monitor.valid.eq(self.rx_valid), monitor.accept.eq(link.rx.valid & link.rx.ready),
                     monitor.byte.eq(self.rx_byte)]

        core = link.core
        writes = {"tmem_w": core.tmem_w.en, "prog_w": core.prog_w.en, "table_w": core.table_w.en,
                  "run": core.run.start}
        commit = Signal()
        m.d.comb += commit.eq(writes["tmem_w"] | writes["prog_w"] | writes["table_w"] | writes["run"])
        m.d.comb += Assert(~commit | monitor.good)

        refused = Signal()                      # a frame with a wrong CRC has ended before
        with m.If(monitor.bad):
            m.d.sync += refused.eq(1)
        m.d.comb += [Cover(value) for value in writes.values()]
        m.d.comb += Cover(commit & refused)
        return m


__all__ = ["TIMEOUT_CYCLES", "crc_byte", "FrameMonitor", "LinkCrcCheck"]
