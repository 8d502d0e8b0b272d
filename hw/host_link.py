"""HostLink: the host protocol (docs/protocol.md) in hardware, three stages and a frame buffer.

    rx --> FrameParser --frame--> LinkExecutor --answer--> Responder --> tx
               |  payload bytes        |  bulk writes,          |  READ_TMEM payloads
               +--> frame buffer <-----+  table, runs           +--> core TMEM read port
                                       +--> core control ports

``rx`` carries request bytes (from a UART receiver), ``tx`` answer bytes
(back-pressure through ``tx.ready``), ``core`` drives the core's control
ports (hw.interfaces.CoreControlSignature).  One frame at a time: the
parser takes no new frame while the executor or the responder is still busy
or a finished run's answer is pending, so every frame is answered before the
next one is read.  Nothing is committed before the CRC checks out.  Core
contract: ``status.busy`` is high from the cycle after ``run.start`` until
the run ends, and status.code/pc/cycles then hold the run's result.

The reference of every byte is protocol/link_model.py (checked by
sim_tests/tb_host_link.py); the wire format is protocol/wire.py.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, flipped

from golden_model.config import CoreConfig
from protocol.wire import check_protocol_fit

from .interfaces import CoreControlSignature
from .link_executor import LinkExecutor
from .link_parser import FrameParser
from .link_responder import Responder


class HostLink(wiring.Component):
    """``timeout_cycles`` overrides cfg.frame_timeout_cycles (the unit bench uses a short one)."""

    def __init__(self, cfg: CoreConfig, *, timeout_cycles: int | None = None):
        check_protocol_fit(cfg)
        self.cfg = cfg
        self.timeout_cycles = cfg.frame_timeout_cycles if timeout_cycles is None else timeout_cycles
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "core": Out(CoreControlSignature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.parser = parser = FrameParser(cfg, timeout_cycles=self.timeout_cycles)
        m.submodules.executor = executor = LinkExecutor(cfg)
        m.submodules.responder = responder = Responder(cfg)
        m.submodules.buffer = buffer = Memory(shape=8, depth=cfg.max_payload, init=[])

        wiring.connect(m, flipped(self.rx), parser.rx)
        wiring.connect(m, parser.frame, executor.frame)
        wiring.connect(m, executor.answer, responder.answer)
        wiring.connect(m, responder.tx, flipped(self.tx))
        wiring.connect(m, responder.tmem, flipped(self.core.tmem_r))
        for name, member in executor.core.signature.members.items():
            ours, theirs = getattr(self.core, name), getattr(executor.core, name)
            if member.is_signature:
                wiring.connect(m, theirs, flipped(ours))
            elif member.flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)

        write, read = buffer.write_port(), buffer.read_port()
        m.d.comb += [write.en.eq(parser.buffer.en), write.addr.eq(parser.buffer.addr),
                     write.data.eq(parser.buffer.data),
                     read.en.eq(executor.buffer.en), read.addr.eq(executor.buffer.addr),
                     executor.buffer.data.eq(read.data)]

        # one frame at a time: hunt for the next one only when everything downstream is idle
        idle = executor.frame.ready & responder.answer.ready & ~executor.answer.valid & ~executor.run_ended
        m.d.comb += [parser.hold.eq(~idle), executor.mid_frame.eq(parser.mid_frame)]
        return m
