"""EoqCore: sequencer, tensor table, memories and the five execution engines.

    control (host link) --> TensorTable, program memory, run/status, TMEM host ports, DataMemory
    Sequencer --cmd--> MatmulEngine | QuantEngine | VectorEngine | UpdateEngine | LossEngine | LoadEngine
    engine ports --> DataMemories (TMEM, two AMEM banks); LoadEngine <-- DataMemory (DMEM, LMEM)

Up to two engines run at once (hw/sequencer.py issues an instruction beside
the one in flight when they share no memory port, ACC bank or TMEM words).
Every engine port maps to one physical memory port (:data:`PORT_MAP`), and
each physical port has an owner: the engine of the last instruction issued
that holds the port (its opcode's ``ports``).  The sequencer never issues an
instruction onto a port a running one holds, and an engine uses a port only
between taking its command and its ``done``, so the owner is the only engine
using the port.  The owner is a register set at the issue: a port's address
and write data are selected by a flip-flop, not by the engines' enables (on
the board an enable's logic, then the multiplexer it selected, then the
route to the block RAMs was the critical path: docs/fpga.md, part 17).  A
write port's enable is the OR of its engines'; the engine read ports read
every cycle (every reader takes a word only in the cycle after it asked for
it), port C while the core is busy, the host's reads otherwise.  An issued
command reaches its engine through a register (a cycle later; the sequencer
issues when the register is empty, so no path runs from an engine's ready
back through the issue).  The host may
write TMEM, the tensor table and the program only while the core is not
busy (and the step keys' seed and step, the data set and the data cursor
likewise); the host link refuses with
BUSY, and the core ignores such writes.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, flipped

from golden_model.config import CoreConfig
from golden_model.isa import PORTS, Engine

from .acc_quantizer import AccQuantizer
from .interfaces import CoreControlSignature
from .data_memory import DataMemory
from .load_engine import LoadEngine
from .loss_engine import LossEngine
from .matmul_engine import MatmulEngine
from .memories import DataMemories
from .quant_engine import QuantEngine
from .sequencer import Sequencer
from .tensor_table import TensorTable
from .update_engine import UpdateEngine
from .vector_engine import VectorEngine


#: (engine, engine port) -> the physical memory port (golden_model.isa.PORTS) it is wired to.  The QUANT
#: and UPDATE engines read TMEM through port C, so they can run beside a MATMUL or an element-wise op,
#: which use A and B.  The opcode table's ``ports`` name the physical ports; tests/test_isa_table.py checks
#: that each opcode's engine is wired to them.
PORT_MAP = {
    (Engine.MATMUL, "tmem_a"): "tmem_a", (Engine.MATMUL, "tmem_b"): "tmem_b", (Engine.MATMUL, "amem_w"): "amem_w",
    (Engine.QUANT, "tmem_a"): "tmem_c", (Engine.QUANT, "amem_r"): "amem_r", (Engine.QUANT, "tmem_w"): "tmem_w",
    (Engine.VECTOR, "tmem_a"): "tmem_a", (Engine.VECTOR, "tmem_b"): "tmem_b", (Engine.VECTOR, "tmem_w"): "tmem_w",
    (Engine.VECTOR, "amem_w"): "amem_w",
    (Engine.UPDATE, "tmem_a"): "tmem_c", (Engine.UPDATE, "tmem_b"): "tmem_b", (Engine.UPDATE, "tmem_w"): "tmem_w",
    (Engine.UPDATE, "amem_r"): "amem_r",
    (Engine.LOSS, "tmem_a"): "tmem_a", (Engine.LOSS, "tmem_b"): "tmem_b", (Engine.LOSS, "amem_w"): "amem_w",
    (Engine.LOAD, "tmem_w"): "tmem_w",
}

ENGINE_CLASSES = {Engine.MATMUL: MatmulEngine, Engine.QUANT: QuantEngine, Engine.VECTOR: VectorEngine,
                  Engine.UPDATE: UpdateEngine, Engine.LOSS: LossEngine, Engine.LOAD: LoadEngine}
ENGINE_PORTS = ("tmem_a", "tmem_b", "tmem_w", "amem_r", "amem_w")


def engine_name(kind: Engine) -> str:
    """The engine's submodule name in the core (and its instance in the generated Verilog)."""
    return f"{kind.name.lower()}_engine"


def port_users(physical: str) -> list[tuple[Engine, str]]:
    """The (engine, engine port) pairs wired to physical port ``physical``, in the order of its owner register."""
    return [(kind, port) for kind in Engine for port in ENGINE_PORTS if PORT_MAP.get((kind, port)) == physical]


#: The engines that drive the core's one AccQuantizer (hw/acc_quantizer.py) instead of each its own.
SHARED_FRONT = (Engine.QUANT, Engine.UPDATE)


def build_engine(kind: Engine, cfg: CoreConfig) -> wiring.Component:
    """The engine of ``kind`` as the core builds it (those of SHARED_FRONT without their own AccQuantizer)."""
    return ENGINE_CLASSES[kind](cfg, shared_front=True) if kind in SHARED_FRONT else ENGINE_CLASSES[kind](cfg)


def default_engines(cfg: CoreConfig) -> list[wiring.Component]:
    """One engine of each kind, in golden_model.isa.Engine order."""
    return [build_engine(kind, cfg) for kind in Engine]


class EoqCore(wiring.Component):
    def __init__(self, cfg: CoreConfig, engines: list[wiring.Component] | None = None):
        self.cfg = cfg
        self.engines = engines if engines is not None else default_engines(cfg)
        if len(self.engines) != len(Engine):
            names = ", ".join(engine.name.lower() for engine in Engine)
            raise ValueError(f"EoqCore needs {len(Engine)} engines ({names}), got {len(self.engines)}")
        super().__init__({"control": In(CoreControlSignature(cfg))})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        control = self.control
        m.submodules.memories = mem = DataMemories(cfg, banks=2)
        m.submodules.data = data = DataMemory(cfg)
        m.submodules.table = table = TensorTable(cfg)
        m.submodules.sequencer = seq = Sequencer(cfg)
        for kind, engine in zip(Engine, self.engines):
            m.submodules[engine_name(kind)] = engine
        self._share_front(m, mem)

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
            seq.keys_w.seed.eq(control.keys_w.seed), seq.keys_w.step.eq(control.keys_w.step),
            seq.keys_w.en.eq(control.keys_w.en & ~busy),
            control.counters.eq(self.engines[Engine.LOSS].counters),
            self.engines[Engine.LOSS].clear.eq(control.counters_clear & ~busy),
            seq.run.start.eq(control.run.start & ~busy), seq.run.pc.eq(control.run.pc),
            seq.run.passes.eq(control.run.passes), seq.run.advance.eq(control.run.advance),
            control.status.eq(seq.status),
        ]
        # the resident data set and the LOAD engine's cursor
        load = self.engines[Engine.LOAD]
        wiring.connect(m, load.data_r, data.data_r)
        wiring.connect(m, load.labels_r, data.labels_r)
        m.d.comb += [
            data.data_w.addr.eq(control.data_w.addr), data.data_w.data.eq(control.data_w.data),
            data.data_w.en.eq(control.data_w.en & ~busy),
            data.labels_w.addr.eq(control.labels_w.addr), data.labels_w.data.eq(control.labels_w.data),
            data.labels_w.en.eq(control.labels_w.en & ~busy),
            load.cursor_w.value.eq(control.cursor_w.value), load.cursor_w.en.eq(control.cursor_w.en & ~busy),
            load.seed.eq(seq.seed),
            control.progress.step.eq(seq.step), control.progress.cursor.eq(load.cursor),
            control.progress.passes.eq(seq.passes),
        ]
        # sequencer side
        wiring.connect(m, seq.rd_dst, table.rd_dst)
        wiring.connect(m, seq.rd_a, table.rd_a)
        wiring.connect(m, seq.rd_b, table.rd_b)
        wiring.connect(m, seq.exp_w, table.exp_w)
        m.d.comb += seq.done.eq(Cat(*(engine.done for engine in self.engines)))
        # the command crosses the chip through a register: the issue waits on it being empty, not on an
        # engine's ready (the tracker's records already hold the instruction from its issue on)
        staged, staged_engine, staged_valid = Signal.like(seq.cmd.payload), Signal.like(seq.engine), Signal()
        m.d.comb += seq.cmd.ready.eq(~staged_valid)
        with m.If(seq.cmd.valid & ~staged_valid):
            m.d.sync += [staged.eq(seq.cmd.payload), staged_engine.eq(seq.engine), staged_valid.eq(1)]
        for index, engine in enumerate(self.engines):
            m.d.comb += [engine.cmd.payload.eq(staged),
                         engine.cmd.valid.eq(staged_valid & (staged_engine == index)),
                         seq.result[index].eq(engine.result)]
            with m.If(engine.cmd.valid & engine.cmd.ready):
                m.d.sync += staged_valid.eq(0)
        # memory ports: each physical port carries the requests of its owner (see the module docstring)
        issue = seq.cmd.valid & seq.cmd.ready
        for physical in PORTS:
            sink = getattr(mem, physical)
            users = [(kind, getattr(self.engines[kind], port)) for kind, port in port_users(physical)]
            owner = Signal(range(len(users)), name=f"{physical}_owner")
            for index, (kind, _) in enumerate(users):
                with m.If(issue & seq.ports[PORTS.index(physical)] & (seq.engine == kind)):
                    m.d.sync += owner.eq(index)
            bank = physical.startswith("amem")
            m.d.comb += sink.addr.eq(Array(Cat(source.addr, seq.bank[kind]) if bank else source.addr
                                           for kind, source in users)[owner])
            if physical.endswith("_w"):
                m.d.comb += [sink.data.eq(Array(source.data.as_value() for _, source in users)[owner]),
                             sink.en.eq(Cat(source.en for _, source in users).any())]
            else:
                m.d.comb += sink.en.eq(busy if physical == "tmem_c" else 1)
                m.d.comb += [source.data.eq(sink.data) for _, source in users]
        return m

    def _share_front(self, m, mem):
        """One AccQuantizer for the engines of SHARED_FRONT: they share TMEM port C and the write port, so
        never run at once.  The command is the one engine's that offers it; parts and flags go to both (each
        takes them only while it runs); the front's reads go out through the running engine's ports (so the
        ports' owners stay the engines) and its words come from the physical ports those are wired to."""
        users = [self.engines[kind] for kind in SHARED_FRONT if getattr(self.engines[kind], "shared_front", False)]
        if not users:
            return
        m.submodules.acc_quantizer = front = AccQuantizer(self.cfg)
        payload = users[-1].front.cmd.payload
        for user in reversed(users[:-1]):
            payload = Mux(user.front.cmd.valid, user.front.cmd.payload, payload)
        m.d.comb += [front.cmd.valid.eq(Cat(user.front.cmd.valid for user in users).any()),
                     front.cmd.payload.eq(payload),
                     front.amem.data.eq(mem.amem_r.data), front.mask.data.eq(mem.tmem_c.data)]
        for user in users:
            m.d.comb += [user.front.cmd.ready.eq(front.cmd.ready), user.front.early.eq(front.early),
                         user.front.early_part.eq(front.early_part), user.front.o.valid.eq(front.o.valid),
                         user.front.o.payload.eq(front.o.payload),
                         user.front.amem.addr.eq(front.amem.addr), user.front.amem.en.eq(front.amem.en),
                         user.front.mask.addr.eq(front.mask.addr), user.front.mask.en.eq(front.mask.en)]
