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

Lemmas tying the monitor's registers to the parser's keep each BMC step
local (docs/formal.md).  Covers (``covers``) show commits reachable within
a depth, so a proof cannot be vacuous; tests/test_formal.py simulates which
commits a depth holds.
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
#: What the cover run shows reachable: each kind of commit, and a commit after a frame with a wrong CRC.
COVERS = ("tmem_w", "prog_w", "table_w", "run", "after_bad_crc")


def crc_byte(m: Module, crc, byte, *, polynomial: int, width: int = 16) -> Signal:
    """The CRC register after one byte, MSB first: the textbook bitwise loop, unrolled (a signal a bit)."""
    for bit in reversed(range(8)):
        after = Signal(width, name=f"crc_after_bit{bit}")
        m.d.comb += after.eq((crc << 1)[:width] ^ Mux(crc[width - 1] ^ byte[bit], polynomial, 0))
        crc = after
    return crc


class FrameMonitor(Elaboratable):
    """Follows the bytes a link accepts through the request grammar; ``good``: the last frame's CRC held.

    Its registers are outputs (``state`` one-hot, ``index``, ``count``, ``length``, ``low``, ``quiet``,
    ``crc``) so that a check can state how they correspond to a link's.
    """

    STATES = ("HUNT", "HEADER", "PAYLOAD", "CRC_LOW", "CRC_HIGH")

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
        self.in_frame = Signal()       # from the sync byte to the last CRC byte
        self.state = {name: Signal(name=f"in_{name.lower()}") for name in self.STATES}
        self.crc = Signal(16, init=crc.initial_crc)      # the CRC of the frame's bytes so far
        self.index = Signal(2)                           # header bytes taken
        self.count = Signal(16)                          # payload bytes taken
        self.length = Signal(16)
        self.low = Signal(8)                             # the CRC's low byte
        self.quiet = Signal(range(timeout_cycles))       # cycles without a byte offered

    def elaborate(self, platform):
        m = Module()
        params = self.crc_parameters
        crc, index, count, length, low, quiet = self.crc, self.index, self.count, self.length, self.low, self.quiet
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
            m.d.comb += [self.in_frame.eq(~fsm.ongoing("HUNT")),
                         *(signal.eq(fsm.ongoing(name)) for name, signal in self.state.items())]
            with m.State("HUNT"):
                with m.If(self.accept & (self.byte == wire.REQUEST_SYNC)):
                    m.d.sync += [crc.eq(params.initial_crc), index.eq(0), count.eq(0), length.eq(0), quiet.eq(0),
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
                    m.d.sync += [crc.eq(step), count.eq(count + 1)]
                    with m.If(count == length - 1):
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


def subfragment(fragment: Fragment, *path: str) -> Fragment:
    for name in path:
        fragment = next(sub for sub, sub_name, _ in fragment.subfragments if sub_name == name)
    return fragment


def origin(fragment: Fragment, *path: str):
    """The elaboratable behind the subfragment at ``path`` (names of submodules) of ``fragment``."""
    return subfragment(fragment, *path).origins[0]


def local_signal(fragment: Fragment, name: str) -> Signal:
    """The signal called ``name`` that ``fragment``'s own statements assign (an elaborate()'s local)."""
    found = {id(signal): signal for statements in fragment.statements.values() for statement in statements
             for signal in statement._lhs_signals() if signal.name == name}
    if len(found) != 1:
        raise LookupError(f"{len(found)} signals called {name!r} in the fragment; the lemmas need exactly one")
    return next(iter(found.values()))


class LinkCrcCheck(Elaboratable):
    """HostLink in a free environment, its frame monitor, and the no-commit-without-CRC property."""

    def __init__(self, cfg: CoreConfig, *, timeout_cycles: int = TIMEOUT_CYCLES, crc=wire.CRC,
                 covers: tuple[str, ...] = COVERS):
        unknown = set(covers) - set(COVERS)
        if unknown:
            raise ValueError(f"unknown covers {sorted(unknown)}; known: {', '.join(COVERS)}")
        self.cfg = cfg
        self.covers = covers
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
        # Lemmas: the monitor is within a frame exactly while the parser is (mid_frame, not yet offering
        # it), and there the parser's registers (CRC, stall timer, byte index, length, CRC low byte; the
        # locals of FrameParser.elaborate, found by name) equal the monitor's; a frame the parser offers
        # has crc_ok exactly when the monitor found it good (a timed-out one never is).  Each is proven
        # at every step and is then a fact for the later steps, so a step only follows one byte further.
        parser, parser_crc = origin(fragment, "parser"), origin(fragment, "parser", "crc")
        parser_fragment = subfragment(fragment, "parser")
        index, timer, low = (local_signal(parser_fragment, name) for name in ("index", "timer", "crc_low"))
        offered, frame, state = parser.frame.valid, parser.frame.payload, monitor.state
        m.d.comb += [
            Assert(monitor.in_frame == (parser.mid_frame & ~offered)),
            Assert(~monitor.in_frame | ((parser_crc.crc == monitor.crc) & (timer == monitor.quiet))),
            Assert(~state["HEADER"] | ((index == monitor.index) &
                                      ((monitor.index < 3) | (frame.length[:8] == monitor.length[:8])))),
            Assert(~state["PAYLOAD"] | ((index == monitor.count) & (frame.length == monitor.length))),
            Assert(~state["CRC_LOW"] | (index == 0)),
            Assert(~state["CRC_HIGH"] | ((index == 1) & (low == monitor.low))),
            Assert(~(offered & ~frame.timeout) | (frame.crc_ok == monitor.good)),
            Assert(~(offered & frame.timeout) | ~monitor.good),
        ]
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
        reachable = {**writes, "after_bad_crc": commit & refused}
        m.d.comb += [Cover(reachable[name]) for name in self.covers]
        return m


__all__ = ["TIMEOUT_CYCLES", "COVERS", "crc_byte", "FrameMonitor", "LinkCrcCheck"]
