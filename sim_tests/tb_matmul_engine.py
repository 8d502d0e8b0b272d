"""cocotb bench of hw.matmul_engine.MatmulEngine against golden_model.machine.Machine.

MATMUL with all four transpose combinations on random shapes (rows, cols
and K not multiples of the array or lane counts, K from 1 to the dense
layers' limit), extreme values (all -128, all 127, mixed signs, zeros), 1x1
and the largest shapes, the MATMULs of the reference network's training step
(golden_model.program) on its tensor layout, and the three products of CONV
over several geometries.  ACC and the reported peaks
are compared bit-exactly; cycle counts and array utilization are logged.

Beyond the valid elements, every MATMUL is held to:
  * pad lanes: the lanes of the ACC's words past N hold op(A) . 0 = 0 (the B
    vector is 0 past N: zeroed by a plain feeder, TMEM pad lanes for a
    transposed one), so a feeder reading a row past a partial block shows;
  * its ports: TMEM reads only within the words of A (port A) and B (port B),
    no TMEM write, and each AMEM word of the ACC (rows x stride from 0)
    written exactly once, nothing else;
  * a cycle bound from its tile count (:func:`cycle_bound`).
"""

import math

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from golden_model import isa
from golden_model.geometry import Geometry
from golden_model.isa import Op
from golden_model.machine import Machine
from golden_model.network import mlp_sizes
from golden_model.program import MlpLayout, backward_program, forward_program, step_keys
from golden_model.quant import QTensor
from golden_model.machine import words_per_row
from hw.feed_addresses import FeedAddresses
from hw.mac_array import MacArray
from hw.operand_feeder import OperandFeeder
from sim_tests.command_model import acc_peaks
from sim_tests.common import read_unsigned, settings
from sim_tests.engine_bench import EngineBench, random_machine

FLAGS = ((0, 0), (0, 1), (1, 0), (1, 1))


def stored_shapes(m: int, n: int, k: int, f0: int, f1: int):
    """Stored shapes of A and B for ACC m x n with inner length k: op(A) is m x k, op(B) n x k."""
    return ((k, m) if f0 else (m, k)), ((k, n) if f1 else (n, k))


#: Hand-over cycles per tile (feeder bank switch, array clear).
TILE_CYCLES = 2


def cycle_bound(cfg, m: int, n: int, k: int, f0: int, f1: int) -> int:
    """Most cycles a MATMUL with ACC m x n and inner length k may take.

    A tile takes the longest of its k beats, the R rows of its readout plus
    the array's pipeline (MacArray.LATENCY; the readout overlaps the next
    tile) and its operands' TMEM reads: a transposed
    operand reads one word per beat, a plain one the W words of a K block
    while the array takes the block before (double-buffered), so each of its
    K blocks takes the longer of its beats and the next block's W reads (a
    short last block, K mod L beats, does not hide the next tile's first
    fill); plus TILE_CYCLES of hand-over.  Fill and drain take up to 2 L +
    FeedAddresses.PARAMS_LEAD + FeedAddresses.LATENCY +
    OperandFeeder.REQUEST_LATENCY + 15 cycles: the command's setup, the
    feeders' parameters, address pipeline and request FIFO, the first block's
    loads and the feeder's output register, the array and the readout
    pipeline.  Measured on random and edge shapes of small4x4, default and
    wide8x16: every MATMUL within the bound.
    """
    rows, cols, lanes = cfg.array_rows, cfg.array_cols, cfg.lanes
    tiles = math.ceil(m / rows) * math.ceil(n / cols)

    def plain(width):
        full, rest = divmod(k, lanes)
        return full * max(lanes, width) + (max(rest, width) if rest else 0)

    reads = [k if flag else plain(width) for flag, width in ((f0, rows), (f1, cols))]
    return (tiles * (max(k, rows + MacArray.LATENCY, *reads) + TILE_CYCLES) + 2 * lanes + FeedAddresses.PARAMS_LEAD
            + FeedAddresses.LATENCY + OperandFeeder.REQUEST_LATENCY + 15)


class PortMonitor:
    """Records the engine's TMEM reads on ports A and B, TMEM writes and AMEM writes, once per cycle."""

    PORTS = {"tmem_a": "tmem_a__en", "tmem_b": "tmem_b__en", "tmem_w": "tmem_w__en", "amem_w": "amem_w__en"}

    def __init__(self, dut):
        self.dut = dut
        self.seen: dict[str, list[int]] = {name: [] for name in self.PORTS}
        self.task = None

    async def _watch(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            await ReadOnly()
            for name, enable in self.PORTS.items():
                if read_unsigned(getattr(dut, enable)):
                    self.seen[name].append(read_unsigned(getattr(dut, f"{name}__addr")))

    def start(self):
        self.seen = {name: [] for name in self.PORTS}
        self.task = cocotb.start_soon(self._watch())

    def stop(self) -> dict[str, list[int]]:
        self.task.kill()
        return self.seen


class Bench:
    def __init__(self, dut, s):
        self.dut, self.s, self.cfg = dut, s, s.cfg
        self.eb = EngineBench(dut, s.cfg)
        self.ports = PortMonitor(dut)
        self.np_rng = np.random.default_rng(s.seed)
        self.log: list[str] = []

    def fits(self, m: int, n: int) -> bool:
        return m * -(-n // self.cfg.lanes) <= self.cfg.acc_words

    async def check_acc_words(self, machine: Machine, result: dict, label: str) -> None:
        """The DUT's ACC words: valid lanes equal the machine's ACC, pad lanes 0, peaks the machine's."""
        rows, cols = machine.acc.shape
        lanes = self.cfg.lanes
        stride = words_per_row(cols, lanes)
        words = [await self.eb.read_amem(i) for i in range(rows * stride)]
        got = np.array(words, dtype=np.int64).reshape(rows, stride * lanes)
        if not np.array_equal(got[:, :cols], machine.acc):
            bad = np.argwhere(got[:, :cols] != machine.acc)[0]
            raise AssertionError(f"{label}: ACC differs first at {tuple(bad)}: DUT {got[tuple(bad)]} "
                                 f"golden {machine.acc[tuple(bad)]}")
        pad = got[:, cols:]
        if pad.any():
            row, lane = np.argwhere(pad != 0)[0]
            raise AssertionError(f"{label}: pad lane {cols + lane} of ACC row {row} holds {pad[row, lane]}, not 0 "
                                 f"(a B vector element past N was not 0)")
        peak_abs, peak_pos = acc_peaks(machine.acc)
        assert (result["peak_abs"], result["peak_pos"]) == (peak_abs, peak_pos), \
            f"{label}: peaks DUT {result['peak_abs']}, {result['peak_pos']} golden {peak_abs}, {peak_pos}"

    def check_ports(self, seen: dict[str, list[int]], operands, rows: int, cols: int, label: str) -> None:
        """TMEM reads within each operand's words, no TMEM write, each ACC word written once."""
        for port, entry in zip(("tmem_a", "tmem_b"), operands):
            end = entry.base + entry.rows * words_per_row(entry.cols, self.cfg.lanes)
            stray = [addr for addr in seen[port] if not entry.base <= addr < end]
            assert not stray, (f"{label}: port {port} read TMEM words {sorted(set(stray))[:8]} outside its "
                               f"operand's words {entry.base}..{end - 1}")
        assert not seen["tmem_w"], f"{label}: the product wrote TMEM words {seen['tmem_w'][:8]}"
        acc_words = rows * words_per_row(cols, self.cfg.lanes)
        written = sorted(seen["amem_w"])
        if written != list(range(acc_words)):
            odd = sorted({a for a in written if not 0 <= a < acc_words or written.count(a) > 1})
            raise AssertionError(f"{label}: AMEM writes are not each of the ACC's {acc_words} words once: "
                                 f"{len(written)} writes; outside or repeated: {odd[:8]}")

    async def matmul(self, machine: Machine, inst: isa.Instruction, what: str):
        """Execute on DUT and golden machine; compare ACC words, peaks, ports and cycles; return cycles."""
        macs_before = machine.useful_macs
        operands = [machine.table[inst.a], machine.table[inst.b]]        # MATMUL and CONV leave the table as is
        self.ports.start()
        result, cycles = await self.eb.execute(machine, inst)
        seen = self.ports.stop()
        rows, cols = machine.acc.shape
        label = f"{what} {inst.op.name} f0={inst.f0} f1={inst.f1} ACC {rows}x{cols}"
        await self.check_acc_words(machine, result, label)
        self.check_ports(seen, operands, rows, cols, label)
        macs = machine.useful_macs - macs_before
        depth = macs // (rows * cols)
        bounded = ""
        if inst.op == isa.Op.MATMUL:           # (CONV's cycles: bench/cnn.py)
            bound = cycle_bound(self.cfg, rows, cols, depth, inst.f0, inst.f1)
            assert cycles <= bound, f"{label} K={depth}: {cycles} cycles, more than the bound {bound}"
            bounded = f" (bound {bound})"
        utilization = macs / (self.cfg.num_pes * cycles)
        self.log.append(f"{label} K={depth}: {cycles} cycles{bounded}, {macs} MACs, "
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
    """Random M, N, K (1..max(max_features, max_batch), skewed to small and odd sizes) for every transpose
    combination."""
    b = await setup(dut)
    cfg, rng = b.cfg, b.s.rng
    limit = max(cfg.max_features, cfg.max_batch)
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


def conv_geometries(cfg, rng):
    """3x3 pad 1 stride 1 and 2, 1x1 stride 2 (the projection), a 1-D signal and a random one."""
    cases = [dict(batch=2, height=5, width=6, kh=3, kw=3, pad_h=1, pad_w=1),
             dict(batch=2, height=8, width=8, kh=3, kw=3, stride=2, pad_h=1, pad_w=1),
             dict(batch=3, height=4, width=4, kh=1, kw=1, stride=2),
             dict(batch=2, height=1, width=12, kh=1, kw=3, pad_w=1),
             dict(batch=rng.randrange(1, 4), height=rng.randrange(1, 8), width=rng.randrange(3, 8), kh=3, kw=3,
                  stride=rng.choice([1, 2]), pad_h=rng.randrange(2), pad_w=rng.randrange(2))]
    geometries = []
    for fields in cases:
        try:
            g = Geometry(**fields)
        except ValueError:
            continue
        if g.in_rows <= cfg.max_dim:
            geometries.append(g)
    return geometries


@cocotb.test()
async def convolutions(dut):
    """CONV forward, error and gradient on random images, kernels and channel counts (1 to 2 words, not
    multiples of the lanes): ACC and peaks bit-exact against the golden machine."""
    b = await setup(dut)
    cfg, rng = b.cfg, b.s.rng
    for g in conv_geometries(cfg, rng):
        channels, outputs = rng.randrange(1, 2 * cfg.lanes + 1), rng.randrange(1, 2 * cfg.lanes + 1)
        padded = -(-channels // cfg.lanes) * cfg.lanes
        weights = np.zeros((outputs, g.taps, padded), dtype=np.int64)
        weights[:, :, :channels] = b.np_rng.integers(-128, 128, size=(outputs, g.taps, channels))
        machine = random_machine(cfg, b.np_rng, [(g.in_rows, channels), (outputs, g.taps * padded),
                                                 (g.out_rows, outputs), (g.in_rows, channels)])
        machine.write_tensor(1, QTensor(weights.reshape(outputs, -1).astype(np.int8), machine.table[1].exp))
        if not (b.fits(g.out_rows, outputs) and b.fits(g.in_rows, channels)
                and b.fits(outputs, g.taps * padded)):
            continue
        await b.eb.load(machine)
        what = f"{g} C={channels} O={outputs}"
        await b.matmul(machine, isa.conv(0, 1, g), f"{what} forward")
        await b.matmul(machine, isa.conv(2, 1, g, mode="error", dst=3), f"{what} error")
        await b.matmul(machine, isa.conv(2, 0, g, mode="gradient"), f"{what} gradient")
    b.dump()
