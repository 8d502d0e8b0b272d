"""cocotb bench of hw.shift_quantizer.ShiftQuantizer against golden_model.quant.shift_quantize.

EOQ_MODE selects the rounding mode of every tensor (nearest or stochastic).
"""

import cocotb
import numpy as np

from golden_model import quant
from golden_model.prng import MASK32
from hw.shift_quantizer import ShiftQuantizer
from sim_tests.common import StreamSink, StreamSource, chunk, payload_layout, start_bench


class Bench:
    def __init__(self, dut, s):
        self.dut, self.s, self.cfg = dut, s, s.cfg
        self.mode = s.mode or "nearest"
        self.lanes = s.lanes or s.cfg.lanes
        model = ShiftQuantizer(s.cfg, self.lanes)
        self.cmd = StreamSource(dut, "cmd", payload_layout(model, "cmd"), s.rng)
        self.src = StreamSource(dut, "i", payload_layout(model, "i"), s.rng)
        self.sink = StreamSink(dut, "o", payload_layout(model, "o"), s.rng)
        self.np_rng = np.random.default_rng(s.seed)
        self.shift_limit = 2 ** len(model.cmd.payload.shift) - 1

    def beats(self, acc):
        data = chunk([int(v) for v in acc], self.lanes)
        return [{"data": d, "last": int(n == len(data) - 1)} for n, d in enumerate(data)]

    async def run(self, acc, relu=False, shift=None, key=None, gap=0.0, stall=0.0):
        """Quantize one tensor (explicit ``shift`` if given); return (q, shift) from the unit."""
        key = self.s.rng.randrange(MASK32 + 1) if key is None else key
        cmd = {"relu": int(relu), "stochastic": int(self.mode == "stochastic"),
               "explicit": int(shift is not None), "shift": shift or 0, "key": key}
        beats = self.beats(acc)
        self.src.gap, self.sink.stall = gap, stall
        receiving = cocotb.start_soon(self.sink.receive(until_last=True))
        await self.cmd.send([cmd])
        await self.src.send(beats if shift is not None else beats + beats)
        out = await receiving
        assert len(out) == len(beats), f"{len(out)} output beats for {len(beats)} input beats"
        shifts = {bt["shift"] for bt in out}
        assert len(shifts) == 1, f"shift changed within a tensor: {shifts}"
        q = [v for bt in out for v in bt["data"]]
        assert q[len(acc):] == [0] * (len(q) - len(acc)), "padding lanes not zero"
        return np.array(q[:len(acc)], dtype=np.int64), shifts.pop(), key

    async def check(self, acc, relu=False, gap=0.0, stall=0.0, what="tensor"):
        acc = np.asarray(acc, dtype=np.int64)
        q, shift, key = await self.run(acc, relu=relu, gap=gap, stall=stall)
        want = quant.shift_quantize(acc, 0, self.mode, self.cfg, key=key, relu=relu)
        assert shift == want.exp, f"{what}: shift {shift} != golden {want.exp} (key {key:#x})"
        assert np.array_equal(q, want.q.astype(np.int64)), \
            f"{what}: key {key:#x} shift {shift}\n acc {acc.tolist()}\n got {q.tolist()}\nwant {want.q.tolist()}"

    async def check_explicit(self, acc, shift, relu=False, what="explicit"):
        acc = np.asarray(acc, dtype=np.int64)
        q, got_shift, key = await self.run(acc, relu=relu, shift=shift)
        x = np.maximum(acc, 0) if relu else acc
        want = quant.saturate(quant.round_shift(x, shift, self.mode, self.cfg, key), self.cfg).astype(np.int64)
        assert got_shift == shift, f"{what}: shift output {got_shift} != {shift}"
        assert np.array_equal(q, want), f"{what} shift {shift} key {key:#x}\n acc {acc.tolist()}\n got {q.tolist()}\nwant {want.tolist()}"

    def random_acc(self, n, bits=None):
        bits = self.s.rng.randrange(0, self.cfg.acc_bits) if bits is None else bits
        values = self.np_rng.integers(-(2 ** bits), 2 ** bits, n, dtype=np.int64)
        return np.clip(values, self.cfg.acc_min, self.cfg.acc_max)


async def setup(dut):
    return await start_bench(dut, Bench)


@cocotb.test()
async def random_tensors(dut):
    """Random sizes (not multiples of lanes too), magnitudes, ReLU, keys, gaps and back-pressure."""
    b = await setup(dut)
    for n in range(24):
        size = b.s.rng.randrange(1, 5 * b.lanes + 2)
        await b.check(b.random_acc(size), relu=b.s.rng.random() < 0.4,
                      gap=0.3 if n % 2 else 0.0, stall=0.3 if n % 3 else 0.0, what=f"random tensor {n}")


@cocotb.test()
async def edge_tensors(dut):
    """Zeros, extremes, largest accumulators, shift 0 with -128, saturation both ends, ties."""
    b = await setup(dut)
    cfg, n = b.cfg, 3 * b.lanes + 1
    await b.check(np.zeros(n, np.int64), what="zeros")
    await b.check(np.zeros(n, np.int64), relu=True, what="zeros relu")
    await b.check(np.full(n, cfg.acc_min), what="all acc_min")
    await b.check(np.full(n, cfg.acc_min), relu=True, what="all acc_min relu")
    await b.check(np.full(n, cfg.acc_max), what="all acc_max")
    await b.check(np.array([cfg.acc_min, cfg.acc_max] * n), what="acc_min/acc_max")
    await b.check(np.full(n, -128), what="all -128 (shift 1)")
    await b.check(np.arange(-127, 128), what="every shift-0 value")
    await b.check(np.array([-128] + [-127, 127] * n), what="-128 among int8")
    for s in (1, 2, 7, 13, 24):
        half = 1 << (s - 1)
        top = (2 * 127 + 1) * half                     # 127.5 * 2**s: rounds to 128 -> saturates
        ties = np.array([top, -top] + [(2 * k + 1) * half * sign for k in range(-5, 5) for sign in (1, -1)])
        if int(np.abs(ties).max()).bit_length() - 7 == s:
            await b.check(ties, what=f"ties at shift {s}")
        await b.check(np.array([top, -top, top - 1, -top + 1, -top - 1 if -top - 1 >= -(2 ** (s + 7)) else 0]),
                      what=f"saturation at shift {s}")
    bits = cfg.acc_bits - 1
    await b.check(np.array([1 << bits - 1, -(1 << bits - 1), 0, 1, -1]), what="top bit magnitudes")


@cocotb.test()
async def explicit_shifts(dut):
    """Explicit shift: every shift 0..limit incl. > max_shift (flush), with and without ReLU."""
    b = await setup(dut)
    cfg = b.cfg
    for shift in range(b.shift_limit + 1):
        acc = np.concatenate([b.random_acc(2 * b.lanes + 1),
                              [cfg.acc_min, cfg.acc_max, 0, -1, 1, (1 << max(shift - 1, 0)), -(1 << max(shift - 1, 0))]])
        await b.check_explicit(np.clip(acc, cfg.acc_min, cfg.acc_max), shift, relu=shift % 3 == 0,
                               what=f"explicit shift {shift}")


@cocotb.test()
async def back_to_back(dut):
    """Consecutive tensors, alternating explicit and computed shifts (state is per tensor)."""
    b = await setup(dut)
    for n in range(10):
        acc = b.random_acc(b.s.rng.randrange(1, 3 * b.lanes))
        if n % 2:
            await b.check_explicit(acc, b.s.rng.randrange(0, b.cfg.max_shift + 2), what=f"b2b explicit {n}")
        else:
            await b.check(acc, what=f"b2b computed {n}")
