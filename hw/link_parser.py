"""FrameParser: request bytes to frames (docs/protocol.md), the first stage of the host link.

Hunts for the sync byte, takes the header, stores the payload in the frame
buffer and checks the CRC.  A finished frame (or one that stalled for
``timeout_cycles``) is offered on ``frame``; the parser takes no byte until
it is accepted.  In the hunt state it takes bytes only while ``hold`` is low,
so the link answers every frame before it reads the next one.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden_model.config import CoreConfig
from protocol.wire import ADDRESS_BYTES, ARGUMENT_BYTES, COMMANDS, CRC, REQUEST_SYNC, unit_bytes

from .interfaces import WritePortSignature


def frame_layout() -> data.StructLayout:
    """A parsed request: header, the first payload bytes, and what the parser measured.

    units/whole  bulk writes: whole units (TMEM words or instructions) after the address, and whether
                 the payload after the address is a whole number of them
    crc_ok       the received CRC matches; timeout: the frame stalled (cmd/seq as far as received)
    """
    return data.StructLayout({
        "cmd": 8, "seq": 8, "length": 16, "args": 8 * ARGUMENT_BYTES,
        "units": 16, "whole": 1, "crc_ok": 1, "timeout": 1,
    })


class FrameParser(wiring.Component):
    """rx bytes in; ``buffer`` writes the payload (up to cfg.max_payload bytes); ``frame`` out.

    ``mid_frame`` is high from the sync byte until the frame is accepted.
    """

    def __init__(self, cfg: CoreConfig, *, timeout_cycles: int):
        if timeout_cycles < 1:
            raise ValueError(f"timeout_cycles must be positive, got {timeout_cycles}")
        self.cfg = cfg
        self.timeout_cycles = timeout_cycles
        super().__init__({
            "rx": In(stream.Signature(8)),
            "hold": In(1),
            "buffer": Out(WritePortSignature(range(cfg.max_payload), 8)),
            "frame": Out(stream.Signature(frame_layout())),
            "mid_frame": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        rx, frame = self.rx, self.frame.payload
        m.submodules.crc = check = crc.Processor(CRC(data_width=8))

        index = Signal(16)
        crc_low = Signal(8)
        timer = Signal(range(self.timeout_cycles + 1))
        sub = Signal(range(max(max(cfg.lanes, 8), 2)))    # payload bytes after the address, modulo the unit
        byte = rx.payload
        accept = rx.valid & rx.ready
        m.d.comb += [check.data.eq(byte), self.buffer.addr.eq(index), self.buffer.data.eq(byte),
                     frame.whole.eq(sub == 0)]

        unit_last = Signal.like(sub)                        # last byte index of the command's unit
        with m.Switch(frame.cmd):
            for cmd, spec in COMMANDS.items():
                if spec.unit is not None:
                    with m.Case(cmd):
                        m.d.comb += unit_last.eq(unit_bytes(spec.unit, cfg) - 1)

        def stalls():
            """Count quiet cycles; a stalled frame is offered with ``timeout`` set."""
            with m.If(rx.valid):
                m.d.sync += timer.eq(0)
            with m.Elif(timer == self.timeout_cycles - 1):
                m.d.sync += frame.timeout.eq(1)
                m.next = "FRAME"
            with m.Else():
                m.d.sync += timer.eq(timer + 1)

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += rx.ready.eq(~self.hold)
                with m.If(accept & (byte == REQUEST_SYNC)):
                    m.d.comb += check.start.eq(1)
                    m.d.sync += [frame.cmd.eq(0), frame.seq.eq(0), frame.length.eq(0), frame.timeout.eq(0), frame.crc_ok.eq(0),
                                 frame.units.eq(0), sub.eq(0), index.eq(0), timer.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [rx.ready.eq(1), check.valid.eq(rx.valid), self.mid_frame.eq(1)]
                stalls()
                with m.If(accept):
                    m.d.sync += index.eq(index + 1)
                    with m.Switch(index[:2]):
                        with m.Case(0):
                            m.d.sync += frame.cmd.eq(byte)
                        with m.Case(1):
                            m.d.sync += frame.seq.eq(byte)
                        with m.Case(2):
                            m.d.sync += frame.length[:8].eq(byte)
                        with m.Case(3):
                            m.d.sync += [frame.length[8:].eq(byte), index.eq(0)]
                            with m.If((byte == 0) & (frame.length[:8] == 0)):
                                m.next = "TRAILER"
                            with m.Else():
                                m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [rx.ready.eq(1), check.valid.eq(rx.valid), self.mid_frame.eq(1),
                             self.buffer.en.eq(accept & (index < cfg.max_payload))]
                stalls()
                with m.If(accept):
                    m.d.sync += index.eq(index + 1)
                    for i in range(ARGUMENT_BYTES):
                        with m.If(index == i):
                            m.d.sync += frame.args[8 * i:8 * i + 8].eq(byte)
                    with m.If(index >= ADDRESS_BYTES):
                        with m.If(sub == unit_last):
                            m.d.sync += [sub.eq(0), frame.units.eq(frame.units + 1)]
                        with m.Else():
                            m.d.sync += sub.eq(sub + 1)
                    with m.If(index == frame.length - 1):
                        m.d.sync += index.eq(0)
                        m.next = "TRAILER"
            with m.State("TRAILER"):
                m.d.comb += [rx.ready.eq(1), self.mid_frame.eq(1)]
                stalls()
                with m.If(accept):
                    with m.If(index[0] == 0):
                        m.d.sync += [crc_low.eq(byte), index.eq(1)]
                    with m.Else():
                        m.d.sync += frame.crc_ok.eq(Cat(crc_low, byte) == check.crc)
                        m.next = "FRAME"
            with m.State("FRAME"):
                m.d.comb += [self.frame.valid.eq(1), self.mid_frame.eq(1)]
                with m.If(self.frame.ready):
                    m.next = "HUNT"
        return m
