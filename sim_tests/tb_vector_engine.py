"""cocotb bench of hw.vector_engine.VectorEngine against golden_model.machine.Machine.

SCALE, ADD (same shape and 1x1 broadcast), SUM, DOT and MASK (into another
slot and in place) on random and extreme tensors, every ADD alignment shift
up to past the flush, POOL and UNPOOL over several windows, and the
element-wise instructions of the reference network's programs
(golden_model.program) on its tensor layout.  ACC,
peaks and TMEM are compared bit-exactly; cycle counts are logged.
"""

import cocotb
import numpy as np

from golden_model import isa
from golden_model.geometry import Geometry
from golden_model.isa import Op
from golden_model.machine import Machine
from golden_model.network import mlp_sizes
from golden_model.program import MlpLayout, backward_program, forward_program, step_keys
from golden_model.quant import QTensor
from sim_tests.common import settings
from sim_tests.engine_bench import EngineBench, random_machine

VECTOR_OPS = (Op.SCALE, Op.ADD, Op.SUM, Op.DOT, Op.MASK)
A, B, M, D = 0, 1, 2, 3          # slots: A, B (A's shape), 1x1 scalar, MASK destination (A's shape)


class Bench:
    def __init__(self, dut, s):
        self.s, self.cfg = s, s.cfg
        self.eb = EngineBench(dut, s.cfg)
        self.np_rng = np.random.default_rng(s.seed)
        self.cycles: dict[tuple[str, tuple[int, int]], int] = {}

    def shapes(self):
        """The fixed shapes plus a random one (cols not a multiple of lanes likely)."""
        cfg = self.cfg
        shapes = [(1, 1), (16, 10), (cfg.max_batch, cfg.max_features), (cfg.max_features, cfg.max_features),
                  (10, cfg.max_features), (1, cfg.max_features), (cfg.max_batch, 1)]
        shapes.append((self.s.rng.randrange(1, cfg.max_batch + 1), self.s.rng.randrange(1, cfg.max_features + 1)))
        return shapes

    def machine(self, shape, low=-128, high=127):
        exps = [self.s.rng.randrange(-12, 4) for _ in range(4)]
        return random_machine(self.cfg, self.np_rng, [shape, shape, (1, 1), shape], exps, low, high)

    async def run(self, machine: Machine, inst: isa.Instruction, what: str):
        """Execute on DUT and golden machine and compare what the instruction produces."""
        shape = (machine.table[inst.a].rows, machine.table[inst.a].cols)
        result, cycles = await self.eb.execute(machine, inst)
        self.cycles[(inst.op.name, shape)] = cycles
        label = f"{what} {inst.op.name} {shape} a={inst.a} b={inst.b} dst={inst.dst}"
        if inst.op == Op.MASK:
            await self.eb.check_tmem(machine, inst.dst, label)
            for slot in {inst.a, inst.b} - {inst.dst}:
                await self.eb.check_tmem(machine, slot, f"{label} (source)")
        else:
            await self.eb.check_acc(machine, result, label)
        return result

    async def all_ops(self, machine: Machine, what: str):
        """Every vector instruction on slots A, B, M, D; the in-place MASK last (it changes A)."""
        for inst in (isa.scale(A, M), isa.add(A, B), isa.add(B, A), isa.add(A, M), isa.total(A),
                     isa.dot(A, B), isa.mask(D, A, B), isa.mask(A, A, B)):
            await self.run(machine, inst, what)

    def log_cycles(self, dut):
        for (op, shape), cycles in sorted(self.cycles.items()):
            dut._log.info(f"cycles {op:5s} {shape[0]}x{shape[1]}: {cycles}")


async def setup(dut):
    s = settings(dut)
    b = Bench(dut, s)
    await b.eb.start()
    return b


@cocotb.test()
async def random_tensors(dut):
    """Random tensors of every listed shape, random exponents, each vector instruction."""
    b = await setup(dut)
    for shape in b.shapes():
        machine = b.machine(shape)
        await b.eb.load(machine)
        await b.all_ops(machine, "random")
    for shape in ((16, 10), (2, b.cfg.lanes + 1)):
        for scalar in (-128, 127):   # |bias| above every |A + bias|: pad lanes must not raise the peaks
            machine = b.machine(shape, low=1, high=3) if scalar < 0 else b.machine(shape, low=-3, high=-1)
            machine.write_tensor(M, QTensor(np.full((1, 1), scalar, np.int8), machine.table[A].exp))
            await b.eb.load(machine)
            await b.run(machine, isa.add(A, M), f"dominant bias {scalar}")
            await b.run(machine, isa.scale(A, M), f"scale {scalar}")
    b.log_cycles(dut)


@cocotb.test()
async def edge_values(dut):
    """Tensors and scalars all -128, all 127, all 0 and mixed, so products and sums hit their extremes."""
    b = await setup(dut)
    cfg = b.cfg
    extremes = (-128, 127, 0)
    combos = ((-128, -128, -128), (127, 127, 127), (0, 0, 0), (-128, 127, -128), (127, -128, 127), (-128, 0, 127))
    for shape in ((1, 1), (16, 10), (cfg.max_batch, cfg.max_features), (cfg.max_features, cfg.max_features)):
        largest = shape == (cfg.max_features, cfg.max_features)
        for va, vb, vm in combos[:2] if largest else combos:   # the largest sums and products
            machine = b.machine(shape)
            for slot, value in ((A, va), (B, vb), (M, vm)):
                entry = machine.table[slot]
                machine.write_tensor(slot, QTensor(np.full((entry.rows, entry.cols), value, np.int8), entry.exp))
            await b.eb.load(machine)
            await b.all_ops(machine, f"edge A={va} B={vb} m={vm}")
        machine = b.machine(shape)
        values = np.array(extremes * (shape[0] * shape[1]), np.int8)
        for slot in (A, B):
            entry = machine.table[slot]
            chosen = b.np_rng.choice(values, size=(entry.rows, entry.cols))
            machine.write_tensor(slot, QTensor(chosen.astype(np.int8), entry.exp))
        await b.eb.load(machine)
        await b.all_ops(machine, "edge mix")


@cocotb.test()
async def alignment_shifts(dut):
    """ADD with shift_a or shift_b = 0..40 (past max_shift: flush), same shape and broadcast scalar."""
    b = await setup(dut)
    for shape in ((16, 10), (3, b.cfg.lanes + 1)):
        machine = b.machine(shape)
        entry = machine.table[A]
        edges = np.array([-128, 127, -1, 1, 0, -127], np.int8)
        values = machine.read_tensor(A).q.reshape(-1)
        values[:len(edges)] = edges[:values.size]
        machine.write_tensor(A, QTensor(values.reshape(entry.rows, entry.cols), entry.exp))
        await b.eb.load(machine)
        base = -8
        for k in range(41):
            for first, second in ((A, B), (A, M)):
                machine.table[first].exp, machine.table[second].exp = base, base + k
                await b.run(machine, isa.add(first, second), f"shift_a {k}")
                machine.table[first].exp, machine.table[second].exp = base + k, base
                await b.run(machine, isa.add(first, second), f"shift_b {k}")


@cocotb.test()
async def network_programs(dut):
    """The element-wise instructions of forward_program / backward_program on the network's layout."""
    b = await setup(dut)
    cfg = b.cfg
    keys = step_keys(0, 0)
    program = [inst for inst in forward_program(cfg) + backward_program(cfg, keys, 4) if inst.op in VECTOR_OPS]
    for batch, hidden in ((cfg.max_batch, cfg.max_features), (10, 10), (1, cfg.max_features)):
        layout = MlpLayout(cfg, batch, mlp_sizes(cfg.max_features, hidden, 10))
        machine = Machine(cfg)
        for name, place in layout.places.items():
            exp = b.s.rng.randrange(-16, 2)
            machine.set_tensor(place.slot, place.base, place.rows, place.cols, exp)
            data = b.np_rng.integers(-128, 128, size=(place.rows, place.cols)).astype(np.int8)
            machine.write_tensor(place.slot, QTensor(data, exp))
        await b.eb.load(machine)
        for inst in program:
            await b.run(machine, inst, f"network batch {batch} hidden {hidden}")
    b.log_cycles(dut)


def pool_geometries(cfg, rng):
    """Windows 2x2, global (the whole image), 1xK (a 1-D signal) and 4x2 over random batches."""
    cases = [(2, 8, 8, 2, 2), (3, 4, 4, 4, 4), (2, 1, 16, 1, 4), (1, 8, 4, 4, 2)]
    cases.append((rng.randrange(1, 4), 2 * rng.randrange(1, 5), 4 * rng.randrange(1, 3), 2, 4))
    return [Geometry(batch=b, height=h, width=w, kh=kh, kw=kw) for b, h, w, kh, kw in cases
            if b * h * w <= cfg.max_dim]


@cocotb.test()
async def pooling(dut):
    """POOL (window sums into ACC) and UNPOOL (each pixel takes its window's word) on random images with
    1..2 words of channels; ACC, peaks and TMEM compared, dst's neighbours untouched."""
    b = await setup(dut)
    cfg = b.cfg
    for g in pool_geometries(cfg, b.s.rng):
        channels = b.s.rng.randrange(1, 2 * cfg.lanes + 1)
        pooled = g.pool_map().out_rows
        machine = random_machine(cfg, b.np_rng, [(g.in_rows, channels), (pooled, channels), (g.in_rows, channels)])
        await b.eb.load(machine)
        what = f"{g} C={channels}"
        await b.run(machine, isa.pool(0, g), what)
        result, cycles = await b.eb.execute(machine, isa.unpool(2, 1, g))
        b.cycles[("UNPOOL", (g.in_rows, channels))] = cycles
        for slot in (0, 1, 2):
            await b.eb.check_tmem(machine, slot, f"{what} UNPOOL")
    b.log_cycles(dut)
