"""EngineHarness: one execution engine on the core's memories, the unit under test of the engine benches.

It exposes the engine's command stream as flat ports (cocotb drives the
packed command) and the memories' host (backdoor) ports, through which the
bench loads TMEM/AMEM and reads results (sim_tests/engine_bench.py).
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, flipped

from golden_model.config import CoreConfig
from hw.interfaces import command_layout, result_layout
from hw.memories import DataMemories, host_ports


class EngineHarness(wiring.Component):
    """One engine wired to DataMemories, for unit testbenches."""

    def __init__(self, cfg: CoreConfig, engine: wiring.Component):
        self.cfg = cfg
        self.engine = engine
        super().__init__({
            "cmd_valid": In(1),
            "cmd_ready": Out(1),
            "cmd_payload": In(command_layout(cfg).size),
            "done": Out(1),
            "result": Out(result_layout(cfg)),
            **host_ports(cfg),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.mem = mem = DataMemories(self.cfg)
        for name in ("tmem_a", "tmem_b", "tmem_w", "amem_r", "amem_w"):
            wiring.connect(m, getattr(engine, name), getattr(mem, name))
        for name in ("host_tmem_r", "host_tmem_w", "host_amem_r", "host_amem_w"):
            wiring.connect(m, flipped(getattr(self, name)), getattr(mem, name))
        m.d.comb += [
            engine.cmd.valid.eq(self.cmd_valid),
            engine.cmd.payload.eq(self.cmd_payload),
            self.cmd_ready.eq(engine.cmd.ready),
            self.done.eq(engine.done),
            self.result.eq(engine.result),
        ]
        return m
