"""cocotb bench of hw.update_engine.UpdateEngine (in EngineHarness) against golden Machine.execute(UPDATE).

Slot 0 is a filler tensor (so W and G sit at varying bases), slot 1 is W,
slot 2 is G; every TMEM word in use (W updated, G and filler untouched, pad
lanes 0) is compared after each UPDATE.  The sequencer's shift
e_w + lr - e_g is steered through the exponents and lr.  EOQ_MODE selects
nearest or stochastic rounding.

The fused QUPDATE takes its gradient from ACC (copied into AMEM with junk in
the pad lanes): its shift e_w + lr - (e_acc + SQ shift) is steered through
the ACC exponent, and every test of it covers all four combinations of
gradient (f0) and update (f1) rounding.
"""

import itertools

import cocotb
import numpy as np

from golden_model import isa
from golden_model.machine import words_per_row
from golden_model.prng import MASK32
from golden_model.quant import QTensor, sq_shift
from sim_tests.common import settings
from sim_tests.engine_bench import EngineBench, random_machine

#: Shapes whose cycle counts the bench reports (batch 16, widths 10 and 64, the largest weight).
REFERENCE_SHAPES = ((1, 1), (16, 10), (16, 64), (64, 64), (10, 64))
W, G = 1, 2


class Bench:
    def __init__(self, dut, s):
        self.s, self.cfg = s, s.cfg
        self.mode = s.mode or "stochastic"
        self.engine = EngineBench(dut, s.cfg)
        self.rng = np.random.default_rng(s.seed)
        self.cycles = {}
        self.fused_cycles = {}
        self.lr_max = (1 << 5) - 1                     # the instruction's lr field

    def exps(self, shift):
        """(e_w, lr, e_g) with e_w + lr - e_g == shift, exponents within cfg.exp_bits."""
        limit = 1 << (self.cfg.exp_bits - 1)
        lr = int(self.rng.integers(0, self.lr_max + 1))
        e_w = int(np.clip(shift - lr + int(self.rng.integers(-8, 9)), -limit, limit - 1))
        e_g = e_w + lr - shift
        if not -limit <= e_g < limit:                  # extreme shifts: pin the exponents
            lr = 0 if shift < 0 else self.lr_max
            e_w = limit - 1 if shift >= 0 else -limit
            e_g = int(np.clip(e_w + lr - shift, -limit, limit - 1))
        return e_w, lr, e_g

    async def check(self, shape, shift, w=None, g=None, same=False, what="update"):
        """UPDATE W by G at ``shift`` on DUT and machine; random W/G unless given; compare all words."""
        cfg = self.cfg
        rows, cols = shape
        filler = (int(self.rng.integers(1, 4)), int(self.rng.integers(1, 2 * cfg.lanes)))
        e_w, lr, e_g = self.exps(shift)
        machine = random_machine(cfg, self.rng, [filler, shape, shape], exps=[0, e_w, e_g])
        if w is not None:
            machine.write_tensor(W, QTensor(np.broadcast_to(w, shape).astype(np.int8), e_w))
        if g is not None:
            machine.write_tensor(G, QTensor(np.broadcast_to(g, shape).astype(np.int8), e_g))
        g_slot = W if same else G
        shift = machine.table[W].exp + lr - machine.table[g_slot].exp
        key = int(self.rng.integers(0, MASK32 + 1))
        end = self.engine.words_in_use(machine)
        await self.engine.load(machine, end)
        inst = isa.update(W, g_slot, lr, stochastic=self.mode == "stochastic", key=key)
        result, cycles = await self.engine.execute(machine, inst)
        got = np.array([await self.engine.read_tmem(addr) for addr in range(end)], dtype=np.int64)
        want = machine.tmem[:end].astype(np.int64)
        if not np.array_equal(got, want):
            word, lane = np.argwhere(got != want)[0]
            raise AssertionError(f"{what} ({rows}x{cols}, shift {shift}, key {key:#x}): TMEM word {word} lane "
                                 f"{lane}: DUT {got[word, lane]} golden {want[word, lane]} "
                                 f"(W at {machine.table[W].base}, G at {machine.table[g_slot].base})\n"
                                 f" DUT word {got[word].tolist()}\n golden word {want[word].tolist()}")
        self.cycles.setdefault(shape, cycles)


    def random_acc(self, shape, bits=None):
        cfg = self.cfg
        bits = int(self.rng.integers(0, cfg.acc_bits)) if bits is None else bits
        acc = self.rng.integers(-(2 ** bits), 2 ** bits, size=shape, dtype=np.int64)
        return np.clip(acc, cfg.acc_min, cfg.acc_max)

    async def check_fused(self, shape, shift, acc=None, w=None, grad_sr=True, upd_sr=True, what="qupdate"):
        """QUPDATE W by SQ(ACC) at update ``shift`` on DUT and machine; compare every TMEM word in use."""
        cfg = self.cfg
        rows, cols = shape
        filler = (int(self.rng.integers(1, 4)), int(self.rng.integers(1, 2 * cfg.lanes)))
        limit = 1 << (cfg.exp_bits - 1)
        lr = int(self.rng.integers(0, self.lr_max + 1))
        e_w = int(self.rng.integers(-16, 4))
        machine = random_machine(cfg, self.rng, [filler, shape], exps=[0, e_w])
        if w is not None:
            machine.write_tensor(W, QTensor(np.broadcast_to(w, shape).astype(np.int8), e_w))
        acc = self.random_acc(shape) if acc is None else np.broadcast_to(np.asarray(acc, np.int64), shape).copy()
        machine.acc = acc
        machine.acc_exp = e_w + lr - shift - sq_shift(acc, cfg)      # steers the update shift
        assert abs(machine.acc_exp) < 4 * limit
        key = int(self.rng.integers(0, MASK32 + 1))
        end = self.engine.words_in_use(machine)
        await self.engine.load(machine, end)
        await self.engine.load_acc(machine, pad=int(self.rng.choice([cfg.acc_min, cfg.acc_max, 12345])))
        inst = isa.qupdate(W, lr, stochastic_grad=grad_sr, stochastic_update=upd_sr, key=key)
        result, cycles = await self.engine.execute(machine, inst)
        got = np.array([await self.engine.read_tmem(addr) for addr in range(end)], dtype=np.int64)
        want = machine.tmem[:end].astype(np.int64)
        if not np.array_equal(got, want):
            word, lane = np.argwhere(got != want)[0]
            raise AssertionError(f"{what} ({rows}x{cols}, shift {shift}, f0 {grad_sr}, f1 {upd_sr}, key {key:#x}): "
                                 f"TMEM word {word} lane {lane}: DUT {got[word, lane]} golden {want[word, lane]} "
                                 f"(W at {machine.table[W].base})\n DUT word {got[word].tolist()}\n"
                                 f" golden word {want[word].tolist()}")
        self.fused_cycles.setdefault(shape, cycles)

    async def check_fused_modes(self, shape, shift, **kwargs):
        for grad_sr, upd_sr in itertools.product((False, True), repeat=2):
            await self.check_fused(shape, shift, grad_sr=grad_sr, upd_sr=upd_sr, **kwargs)


async def setup(dut):
    s = settings(dut)
    b = Bench(dut, s)
    await b.engine.start()
    return b


@cocotb.test()
async def reference_shapes(dut):
    """Reference shapes at typical shifts; reports cycles per UPDATE."""
    b = await setup(dut)
    for shape in REFERENCE_SHAPES:
        for shift in (-3, 0, 6):
            await b.check(shape, shift, what="reference shape")
    for (rows, cols), cycles in b.cycles.items():
        words = rows * words_per_row(cols, b.cfg.lanes)
        dut._log.info(f"UPDATE {rows}x{cols}: {words} words, {cycles} cycles from command to done")


@cocotb.test()
async def shifts(dut):
    """Every shift from left shifts past the data_bits + 1 clamp to right shifts past max_shift (flush)."""
    b = await setup(dut)
    cfg = b.cfg
    for shift in range(-(cfg.data_bits + 4), cfg.max_shift + 4):
        shape = (int(b.rng.integers(1, 5)), int(b.rng.integers(1, 3 * cfg.lanes + 2)))
        await b.check(shape, shift, what=f"shift {shift}")


@cocotb.test()
async def extreme_shifts(dut):
    """Shifts from the exponent extremes (largest negative and positive e_w + lr - e_g)."""
    b = await setup(dut)
    limit = 1 << (b.cfg.exp_bits - 1)
    for shift in (-(2 * limit - 1), -limit, limit, 2 * limit - 1 + b.lr_max):
        await b.check((3, 10), shift, what=f"extreme shift {shift}")


@cocotb.test()
async def saturation(dut):
    """W saturating at +-127 from both ends, G = -128 / +127, W = -128 stored values, all-zero G."""
    b = await setup(dut)
    cfg = b.cfg
    shape = (4, 10)
    for shift in (-(cfg.data_bits + 1), -3, 0, 2):
        await b.check(shape, shift, w=cfg.qmax, g=-128, what="W at +127, G -128")
        await b.check(shape, shift, w=cfg.qmin, g=cfg.qmax, what="W at -127, G +127")
        await b.check(shape, shift, w=-128, g=-128, what="W -128, G -128")
        await b.check(shape, shift, w=cfg.qmax, g=cfg.qmin, what="W +127 pushed up")
        await b.check(shape, shift, g=0, what="zero G")
        await b.check(shape, shift, w=np.arange(-128, -128 + shape[1]) * 6 % 256 - 128,
                      g=np.arange(shape[1]) * 25 % 256 - 128, what="spread values")


@cocotb.test()
async def shapes(dut):
    """1x1, cols not a multiple of lanes, the largest tensors, random shapes, G == W (same slot)."""
    b = await setup(dut)
    cfg = b.cfg
    for shape in ((1, 1), (1, cfg.lanes), (cfg.max_features, cfg.max_features),
                  (cfg.max_batch, cfg.max_features), (cfg.max_features, 10)):
        await b.check(shape, int(b.rng.integers(-4, 12)), what="shape")
    for n in range(12):
        shape = (int(b.rng.integers(1, cfg.max_batch + 1)), int(b.rng.integers(1, cfg.max_features + 1)))
        await b.check(shape, int(b.rng.integers(-10, cfg.max_shift + 3)), what=f"random {n}")
    await b.check((5, 10), 0, same=True, what="G == W")
    await b.check((5, 10), -2, same=True, what="G == W left")


@cocotb.test()
async def fused_reference_shapes(dut):
    """QUPDATE on the reference shapes at typical shifts, all rounding combinations; reports cycles."""
    b = await setup(dut)
    for shape in REFERENCE_SHAPES:
        for shift in (-3, 0, 6):
            await b.check_fused_modes(shape, shift, what="fused reference shape")
    for (rows, cols), cycles in b.fused_cycles.items():
        words = rows * words_per_row(cols, b.cfg.lanes)
        dut._log.info(f"QUPDATE {rows}x{cols}: {words} words, {cycles} cycles from command to done")


@cocotb.test()
async def fused_shifts(dut):
    """QUPDATE at every update shift (left clamp to flush) and every ACC magnitude (SQ shift 0 .. 24)."""
    b = await setup(dut)
    cfg = b.cfg
    for shift in range(-(cfg.data_bits + 4), cfg.max_shift + 4):
        shape = (int(b.rng.integers(1, 5)), int(b.rng.integers(1, 3 * cfg.lanes + 2)))
        await b.check_fused(shape, shift, grad_sr=bool(shift % 2), upd_sr=bool(shift % 3), what=f"fused shift {shift}")
    for bits in range(cfg.acc_bits):
        shape = (int(b.rng.integers(1, 4)), int(b.rng.integers(1, 2 * cfg.lanes + 2)))
        await b.check_fused(shape, int(b.rng.integers(-4, 10)), acc=b.random_acc(shape, bits),
                            grad_sr=bool(bits % 2), upd_sr=bool(bits % 3 == 0), what=f"fused acc bits {bits}")
    limit = 1 << (cfg.exp_bits - 1)
    for shift in (-(2 * limit - 1), -limit, limit, 2 * limit + b.lr_max):
        await b.check_fused_modes((3, 10), shift, what=f"fused extreme shift {shift}")


@cocotb.test()
async def fused_saturation(dut):
    """QUPDATE: W at +-127 / -128 pushed further, ACC at the int32 extremes, ties rounding to 128, zero ACC."""
    b = await setup(dut)
    cfg = b.cfg
    shape = (4, 10)
    lo, hi = cfg.acc_min, cfg.acc_max
    half = 1 << 9
    top = (2 * 127 + 1) * half                       # 127.5 * 2**10 at SQ shift 10: rounds to 128, saturates
    for shift in (-(cfg.data_bits + 1), -3, 0, 2):
        await b.check_fused_modes(shape, shift, w=cfg.qmax, acc=lo, what="W at +127, ACC acc_min")
        await b.check_fused_modes(shape, shift, w=cfg.qmin, acc=hi, what="W at -127, ACC acc_max")
        await b.check_fused_modes(shape, shift, w=-128, acc=[[top, -top, hi, lo, 1, -1, 0, top - 1, 3, -3]],
                                  what="W -128, ties and extremes")
        await b.check_fused_modes(shape, shift, acc=0, what="zero ACC")


@cocotb.test()
async def fused_shapes(dut):
    """QUPDATE on 1x1, one full word, the largest tensors and random shapes; interleaved with UPDATE."""
    b = await setup(dut)
    cfg = b.cfg
    for shape in ((1, 1), (1, cfg.lanes), (cfg.max_features, cfg.max_features),
                  (cfg.max_batch, cfg.max_features), (cfg.max_features, 10)):
        await b.check_fused(shape, int(b.rng.integers(-4, 12)), what="fused shape")
    for n in range(8):
        shape = (int(b.rng.integers(1, cfg.max_batch + 1)), int(b.rng.integers(1, cfg.max_features + 1)))
        await b.check_fused(shape, int(b.rng.integers(-10, cfg.max_shift + 3)), grad_sr=bool(n % 2),
                            upd_sr=bool(n // 2 % 2), what=f"fused random {n}")
        await b.check(shape, int(b.rng.integers(-4, 12)), what=f"UPDATE after QUPDATE {n}")
