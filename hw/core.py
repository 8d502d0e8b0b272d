"""EoqCore: sequencer, tensor table, memories and the four execution engines.

    control (host link) --> TensorTable, program memory, run/status, TMEM host ports
    Sequencer --cmd--> one of: MatmulEngine | QuantEngine | VectorEngine | UpdateEngine
    the active engine's ports --> DataMemories (TMEM, AMEM)

Only one engine runs at a time (the sequencer waits for done), so the memory
ports are simply switched to the engine the sequencer selected.  The host
may write TMEM, the tensor table and the program only while the core is not
busy; the host link refuses with BUSY, and the core ignores such writes.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, flipped

from golden_model.config import CoreConfig

from .interfaces import CoreControlSignature
from .memories import DataMemories
from .sequencer import ENGINES, Sequencer
from .tensor_table import TensorTable

ENGINE_PORTS = ("tmem_a", "tmem_b", "tmem_w", "amem_r", "amem_w")


def default_engines(cfg: CoreConfig) -> list[wiring.Component]:
    from .matmul_engine import MatmulEngine
    from .quant_engine import QuantEngine
    from .update_engine import UpdateEngine
    from .vector_engine import VectorEngine
    engines = {"matmul": MatmulEngine(cfg), "quant": QuantEngine(cfg), "vector": VectorEngine(cfg),
               "update": UpdateEngine(cfg)}
    return [engines[name] for name in ENGINES]


class EoqCore(wiring.Component):
    def __init__(self, cfg: CoreConfig, engines: list[wiring.Component] | None = None):
        self.cfg = cfg
        self.engines = engines if engines is not None else default_engines(cfg)
        if len(self.engines) != len(ENGINES):
            raise ValueError(f"EoqCore needs {len(ENGINES)} engines ({', '.join(ENGINES)}), got {len(self.engines)}")
        super().__init__({"control": In(CoreControlSignature(cfg))})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        control = self.control
        m.submodules.memories = mem = DataMemories(cfg)
        m.submodules.table = table = TensorTable(cfg)
        m.submodules.sequencer = seq = Sequencer(cfg)
        for name, engine in zip(ENGINES, self.engines):
            m.submodules[f"{name}_engine"] = engine

        busy = seq.status.busy
        # host side
        wiring.connect(m, flipped(control.tmem_r), mem.host_tmem_r)
        m.d.comb += [
            mem.host_tmem_w.addr.eq(control.tmem_w.addr), mem.host_tmem_w.data.eq(control.tmem_w.data),
            mem.host_tmem_w.en.eq(control.tmem_w.en & ~busy),
            table.host_w.slot.eq(control.table_w.slot), table.host_w.entry.eq(control.table_w.entry),
            table.host_w.en.eq(control.table_w.en & ~busy),
            table.host_r.slot.eq(control.table_r_slot), control.table_r.eq(table.host_r.entry),
            seq.prog_w.addr.eq(control.prog_w.addr), seq.prog_w.data.eq(control.prog_w.data),
            seq.prog_w.en.eq(control.prog_w.en & ~busy),
            seq.run.start.eq(control.run.start & ~busy), seq.run.pc.eq(control.run.pc),
            control.status.eq(seq.status),
        ]
        # sequencer side
        wiring.connect(m, seq.rd_dst, table.rd_dst)
        wiring.connect(m, seq.rd_a, table.rd_a)
        wiring.connect(m, seq.rd_b, table.rd_b)
        wiring.connect(m, seq.exp_w, table.exp_w)
        for index, engine in enumerate(self.engines):
            selected = seq.engine == index
            m.d.comb += [engine.cmd.payload.eq(seq.cmd.payload),
                         engine.cmd.valid.eq(seq.cmd.valid & selected)]
            with m.If(selected):
                m.d.comb += [seq.cmd.ready.eq(engine.cmd.ready), seq.done.eq(engine.done),
                             seq.result.eq(engine.result)]
                for port in ENGINE_PORTS:
                    source, sink = getattr(engine, port), getattr(mem, port)
                    m.d.comb += [sink.addr.eq(source.addr), sink.en.eq(source.en)]
                    if port.endswith("_w"):
                        m.d.comb += sink.data.eq(source.data)
            for port in ENGINE_PORTS:
                if not port.endswith("_w"):
                    m.d.comb += getattr(engine, port).data.eq(getattr(mem, port).data)
        return m
