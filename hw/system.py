"""EoqSystem: the host link in front of the core, with byte streams outside.

This is what the FPGA top puts behind its UART and what the simulated board
(sim/ Verilator harness, cocotb benches) drives byte by byte: the same
protocol (docs/protocol.md) in both places.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, flipped

from golden_model.config import CoreConfig

from .core import EoqCore
from .host_link import HostLink
from .interfaces import status_layout


class EoqSystem(wiring.Component):
    """rx/tx: request and answer bytes; status: the core's run state (for LEDs)."""

    def __init__(self, cfg: CoreConfig, engines=None):
        self.cfg = cfg
        self._engines = engines
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "status": Out(status_layout(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = HostLink(self.cfg)
        m.submodules.core = core = EoqCore(self.cfg, self._engines)
        wiring.connect(m, flipped(self.rx), link.rx)
        wiring.connect(m, link.tx, flipped(self.tx))
        wiring.connect(m, link.core, core.control)
        m.d.comb += self.status.eq(core.control.status)
        return m
