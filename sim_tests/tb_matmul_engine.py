"""cocotb bench of hw.matmul_engine.MatmulEngine against golden_model.machine.Machine.

MATMUL with all four transpose combinations on random shapes (rows, cols
and K not multiples of the array or lane counts, K from 1 to max_dim),
extreme values (all -128, all 127, mixed signs, zeros), 1x1 and the
largest shapes, and the MATMULs of the reference network's training step
(golden_model.program) on its tensor layout.  ACC and the reported maxima
are compared bit-exactly; cycle counts and array utilization are logged.
"""

import cocotb
import numpy as np

from golden_model import isa
from golden_model.isa import Op
from golden_model.machine import Machine
from golden_model.network import mlp_sizes
from golden_model.program import MlpLayout, backward_program, forward_program, step_keys
from golden_model.quant import QTensor
from sim_tests.common import settings
from sim_tests.engine_bench import EngineBench, random_machine

FLAGS = ((0, 0), (0, 1), (1, 0), (1, 1))


def stored_shapes(m: int, n: int, k: int, f0: int, f1: int):
    """Stored shapes of A and B for ACC m x n with inner length k: op(A) is m x k, op(B) n x k."""
    return ((k, m) if f0 else (m, k)), ((k, n) if f1 else (n, k))


class Bench:
    def __init__(self, dut, s):
        self.dut, self.s, self.cfg = dut, s, s.cfg
        self.eb = EngineBench(dut, s.cfg)
        self.np_rng = np.random.default_rng(s.seed)
        self.log: list[str] = []

    def fits(self, m: int, n: int) -> bool:
        return m * -(-n // self.cfg.lanes) <= self.cfg.acc_words

    async def matmul(self, machine: Machine, inst: isa.Instruction, what: str):
        """Execute on DUT and golden machine, compare ACC and maxima; return cycles."""
        macs_before = machine.useful_macs
        result, cycles = await self.eb.execute(machine, inst)
        rows, cols = machine.acc.shape
        label = f"{what} MATMUL f0={inst.f0} f1={inst.f1} ACC {rows}x{cols}"
        await self.eb.check_acc(machine, result, label)
        macs = machine.useful_macs - macs_before
        utilization = macs / (self.cfg.num_pes * cycles)
        self.log.append(f"{label} K={macs // (rows * cols)}: {cycles} cycles, {macs} MACs, "
                        f"utilization {utilization:.3f}")
        return cycles

    async def product(self, m: int, n: int, k: int, f0: int, f1: int, what: str, low=-128, high=127,
                      fill=None):
        """One MATMUL of random (or ``fill`` (a, b) constant) operands of the given shapes."""
        shape_a, shape_b = stored_shapes(m, n, k, f0, f1)
        machine = random_machine(self.cfg, self.np_rng, [shape_a, shape_b], low=low, high=high)
        if fill is not None:
            for slot, value in enumerate(fill):
                entry = machine.table[slot]
                machine.write_tensor(slot, QTensor(np.full((entry.rows, entry.cols), value, np.int8), entry.exp))
        await self.eb.load(machine)
        return await self.matmul(machine, isa.matmul(0, 1, bool(f0), bool(f1)), what)

    def dump(self):
        for line in self.log:
            self.dut._log.info(line)
            print(line)


async def setup(dut):
    s = settings(dut)
    b = Bench(dut, s)
    await b.eb.start()
    return b


@cocotb.test()
async def random_shapes(dut):
    """Random M, N, K (1..max_dim, skewed to small and odd sizes) for every transpose combination."""
    b = await setup(dut)
    cfg, rng = b.cfg, b.s.rng
    limit = cfg.max_dim
    count = 0
    while count < 24:
        m, n, k = (rng.choice([rng.randrange(1, limit + 1), rng.randrange(1, 2 * cfg.lanes + 2)]) for _ in range(3))
        if not b.fits(m, n):
            continue
        f0, f1 = FLAGS[count % 4]
        await b.product(m, n, k, f0, f1, f"random {count}")
        count += 1
    b.dump()


@cocotb.test()
async def edges(dut):
    """Extremes (largest positive and negative sums), zeros, 1x1, K = 1, largest shapes, every combination."""
    b = await setup(dut)
    cfg = b.cfg
    big, batch = cfg.max_features, cfg.max_batch
    for f0, f1 in FLAGS:
        tag = f"f0={f0} f1={f1}"
        await b.product(1, 1, 1, f0, f1, f"1x1 {tag}")
        await b.product(big, big, big, f0, f1, f"all -128 {tag}", fill=(-128, -128))
        await b.product(batch, big, big, f0, f1, f"-128 x 127 {tag}", fill=(-128, 127))
        await b.product(10, 10, big, f0, f1, f"all 127 {tag}", fill=(127, 127))
        await b.product(batch, 10, 10, f0, f1, f"zeros {tag}", fill=(0, 0))
        await b.product(big, 1, 1, f0, f1, f"K=1 column {tag}")
        await b.product(1, big, 1, f0, f1, f"K=1 row {tag}")
        await b.product(cfg.lanes + 1, cfg.lanes + 1, cfg.lanes + 1, f0, f1, f"lanes+1 {tag}")
        await b.product(big, big, batch, f0, f1, f"largest {tag}")
        await b.product(7, 13, big, f0, f1, f"negative only {tag}", low=-128, high=-1)
    b.dump()


@cocotb.test()
async def network_programs(dut):
    """The MATMULs of forward_program / backward_program on the network's layout (batch max_batch and others)."""
    b = await setup(dut)
    cfg = b.cfg
    program = [inst for inst in forward_program(cfg) + backward_program(cfg, step_keys(0, 0), 4)
               if inst.op == Op.MATMUL]
    for batch, hidden in ((cfg.max_batch, cfg.max_features), (10, 10), (1, cfg.max_features)):
        layout = MlpLayout(cfg, batch, mlp_sizes(cfg.max_features, hidden, 10))
        machine = Machine(cfg)
        for place in layout.places.values():
            exp = b.s.rng.randrange(-16, 2)
            machine.set_tensor(place.slot, place.base, place.rows, place.cols, exp)
            values = b.np_rng.integers(-128, 128, size=(place.rows, place.cols)).astype(np.int8)
            machine.write_tensor(place.slot, QTensor(values, exp))
        await b.eb.load(machine)
        for inst in program:
            await b.matmul(machine, inst, f"network batch {batch} hidden {hidden}")
    b.dump()
