"""cocotb bench of hw.quant_engine.QuantEngine (in EngineHarness) against golden Machine.execute(QUANT).

The golden machine's ACC is set directly and copied into the DUT's AMEM
(pad lanes filled with large junk, which the engine must ignore); TMEM
around the dst tensor holds random words that must survive.  Masked QUANTs
(f2) read the mask B from slot 4, placed after dst, or from dst itself (in
place).  EOQ_MODE selects nearest or stochastic rounding.
"""

import cocotb
import numpy as np

from golden_model import isa
from golden_model.machine import Machine, words_per_row
from golden_model.prng import MASK32
from golden_model.quant import QTensor
from sim_tests.common import settings
from sim_tests.engine_bench import EngineBench

#: Shapes whose cycle counts the bench reports (batch 16, widths 10 and 64, the largest gradient).
REFERENCE_SHAPES = ((1, 1), (16, 10), (16, 64), (64, 64), (10, 64))


class Bench:
    def __init__(self, dut, s):
        self.s, self.cfg = s, s.cfg
        self.mode = s.mode or "nearest"
        self.engine = EngineBench(dut, s.cfg)
        self.rng = np.random.default_rng(s.seed)
        self.cycles = {}

    def machine(self, rows, cols):
        """A machine with random TMEM words and a rows x cols dst slot at a random base (slot 3)."""
        cfg = self.cfg
        machine = Machine(cfg)
        words = rows * words_per_row(cols, cfg.lanes)
        base = int(self.rng.integers(0, min(cfg.tmem_words - words, 64) + 1))
        machine.set_tensor(3, base, rows, cols, 0)
        end = min(base + words + 2, cfg.tmem_words)
        machine.tmem[:end] = self.rng.integers(-128, 128, size=(end, cfg.lanes), dtype=np.int64)
        return machine, end

    def random_acc(self, rows, cols, bits=None):
        cfg = self.cfg
        bits = int(self.rng.integers(0, cfg.acc_bits)) if bits is None else bits
        acc = self.rng.integers(-(2 ** bits), 2 ** bits, size=(rows, cols), dtype=np.int64)
        return np.clip(acc, cfg.acc_min, cfg.acc_max)

    def add_mask(self, machine, end, rows, cols, mask):
        """Mask operand of a masked QUANT: slot 4 after ``end`` ("other"), or dst itself ("same")."""
        if mask == "same":
            return 3, end
        words = rows * words_per_row(cols, self.cfg.lanes)
        machine.set_tensor(4, end, rows, cols, 0)
        values = self.rng.integers(-128, 128, size=(rows, cols), dtype=np.int64)
        values[self.rng.random((rows, cols)) < 0.3] = 0
        machine.write_tensor(4, QTensor(values.astype(np.int8), 0))
        return 4, end + words

    async def check(self, acc, relu=False, what="tensor", mask=None):
        """QUANT ``acc`` into the dst slot on DUT and machine; compare dst words, guards and shift.

        mask: None, "other" (slot 4) or "same" (dst's old words) for the masked QUANT."""
        cfg = self.cfg
        acc = np.asarray(acc, dtype=np.int64)
        rows, cols = acc.shape
        machine, end = self.machine(rows, cols)
        mask_slot = None
        if mask is not None:
            mask_slot, end = self.add_mask(machine, end, rows, cols, mask)
        machine.acc = acc.copy()
        machine.acc_exp = int(self.rng.integers(-40, 20))
        await self.engine.load(machine, end)
        await self.engine.load_acc(machine, pad=int(self.rng.choice([cfg.acc_min, cfg.acc_max, 12345])))
        key = int(self.rng.integers(0, MASK32 + 1))
        inst = isa.quant(3, relu=relu, stochastic=self.mode == "stochastic", key=key, mask=mask_slot)
        result, cycles = await self.engine.execute(machine, inst)
        what = f"{what} ({rows}x{cols}, relu={relu}, mask={mask}, key={key:#x})"
        got = np.array([await self.engine.read_tmem(addr) for addr in range(end)], dtype=np.int64)
        want = machine.tmem[:end].astype(np.int64)
        if not np.array_equal(got, want):
            word, lane = np.argwhere(got != want)[0]
            raise AssertionError(f"{what}: TMEM word {word} lane {lane}: DUT {got[word, lane]} "
                                 f"golden {want[word, lane]} (dst at {machine.table[3].base})\n DUT word {got[word].tolist()}\n"
                                 f" golden word {want[word].tolist()}\n acc {acc.tolist()}")
        if mask is None:
            self.cycles.setdefault((rows, cols), cycles)
        return cycles


async def setup(dut):
    s = settings(dut)
    b = Bench(dut, s)
    await b.engine.start()
    return b


@cocotb.test()
async def reference_shapes(dut):
    """Random accumulators of the reference shapes, with and without ReLU; reports cycles per QUANT."""
    b = await setup(dut)
    for rows, cols in REFERENCE_SHAPES:
        for relu in (False, True):
            await b.check(b.random_acc(rows, cols), relu=relu, what="reference shape")
    for (rows, cols), cycles in b.cycles.items():
        words = rows * words_per_row(cols, b.cfg.lanes)
        dut._log.info(f"QUANT {rows}x{cols}: {words} words, {cycles} cycles from command to done")


@cocotb.test()
async def random_tensors(dut):
    """Random shapes (cols not multiples of lanes), magnitudes from 0 to acc_bits, ReLU."""
    b = await setup(dut)
    cfg = b.cfg
    for n in range(20):
        rows = int(b.rng.integers(1, cfg.max_batch + 1))
        cols = int(b.rng.integers(1, cfg.max_features + 1))
        await b.check(b.random_acc(rows, cols), relu=bool(n % 3 == 0), what=f"random {n}")


@cocotb.test()
async def edge_tensors(dut):
    """Zeros, int32 extremes, all acc_min / acc_max, shift 0 and 1, ties, saturation, 1x1."""
    b = await setup(dut)
    cfg = b.cfg
    lo, hi = cfg.acc_min, cfg.acc_max
    for relu in (False, True):
        await b.check(np.zeros((4, 10), np.int64), relu=relu, what="zeros")
        await b.check(np.full((3, 9), lo), relu=relu, what="all acc_min")
        await b.check(np.full((2, 17), hi), relu=relu, what="all acc_max")
        acc = b.random_acc(16, 10)
        acc.flat[b.rng.choice(acc.size, 4, replace=False)] = [lo, hi, lo, hi]
        await b.check(acc, relu=relu, what="random with int32 extremes")
        await b.check(np.array([[lo]]), relu=relu, what="1x1 acc_min")
        await b.check(np.array([[hi]]), relu=relu, what="1x1 acc_max")
        await b.check(np.array([[-1]]), relu=relu, what="1x1 -1")
    await b.check(np.full((5, 3), -128), what="all -128 (shift 1)")
    await b.check(np.arange(-127, 128).reshape(15, 17), what="every shift-0 value")
    await b.check(np.array([[-128, 127, -127] * 4]), what="-128 among int8")
    for s in (1, 2, 7, 13, 24):
        half = 1 << (s - 1)
        top = (2 * 127 + 1) * half                   # 127.5 * 2**s: rounds to 128 -> saturates
        ties = [top, -top] + [(2 * k + 1) * half * sign for k in range(-6, 6) for sign in (1, -1)]
        await b.check(np.array(ties).reshape(2, -1), what=f"ties at shift {s}")
        await b.check(np.array(ties).reshape(2, -1), relu=True, what=f"ties relu at shift {s}")
        await b.check(np.array([[top, -top, top - 1, -top + 1, half, -half, 1 - half, half - 1]]),
                      what=f"saturation at shift {s}")


@cocotb.test()
async def largest_shapes(dut):
    """Largest tensors: max_features x max_features and max_batch x max_features, wide and narrow ACC values."""
    b = await setup(dut)
    cfg = b.cfg
    for rows, cols in ((cfg.max_features, cfg.max_features), (cfg.max_batch, cfg.max_features),
                       (cfg.max_features, cfg.max_batch)):
        await b.check(b.random_acc(rows, cols, bits=cfg.acc_bits - 1), what="largest")
        await b.check(b.random_acc(rows, cols, bits=9), relu=True, what="largest relu")


@cocotb.test()
async def back_to_back(dut):
    """Consecutive QUANTs with different shapes and flags (no state leaks between instructions)."""
    b = await setup(dut)
    for n in range(8):
        rows = int(b.rng.integers(1, 9))
        cols = int(b.rng.integers(1, 3 * b.cfg.lanes + 2))
        await b.check(b.random_acc(rows, cols), relu=bool(n % 2), what=f"b2b {n}")


@cocotb.test()
async def masked(dut):
    """QUANT with the f2 mask (B > 0): random and reference shapes, ReLU, in place, extremes, all masked."""
    b = await setup(dut)
    cfg = b.cfg
    for rows, cols in REFERENCE_SHAPES:
        await b.check(b.random_acc(rows, cols), mask="other", what="masked reference shape")
    for n in range(10):
        rows = int(b.rng.integers(1, cfg.max_batch + 1))
        cols = int(b.rng.integers(1, cfg.max_features + 1))
        await b.check(b.random_acc(rows, cols), relu=bool(n % 2), mask="other", what=f"masked random {n}")
    for n in range(3):
        await b.check(b.random_acc(int(b.rng.integers(1, 6)), int(b.rng.integers(1, 3 * cfg.lanes + 2))),
                      mask="same", what=f"masked in place {n}")
    lo, hi = cfg.acc_min, cfg.acc_max
    await b.check(np.full((3, 9), lo), mask="other", what="masked all acc_min")
    await b.check(np.array([[hi, lo, 1, -1, 0] * 3]), relu=True, mask="other", what="masked extremes relu")
    half = 1 << 6
    await b.check(np.array([[(2 * 127 + 1) * half, -(2 * 127 + 1) * half, half, -half] * 3]), mask="other",
                  what="masked ties and saturation")
    await b.check(b.random_acc(cfg.max_features, cfg.max_features, bits=cfg.acc_bits - 1), mask="other",
                  what="masked largest")
