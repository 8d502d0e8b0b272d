"""cocotb bench of hw.update_unit.UpdateUnit against golden_model.quant.update_weights.

EOQ_MODE selects the rounding mode of the update (nearest or stochastic).
"""

import cocotb
import numpy as np

from golden_model import quant
from golden_model.prng import MASK32
from hw.update_unit import UpdateUnit
from sim_tests.common import StreamSink, StreamSource, chunk, payload_layout, start_bench


class Bench:
    def __init__(self, dut, s):
        self.dut, self.s, self.cfg = dut, s, s.cfg
        self.mode = s.mode or "stochastic"
        self.lanes = s.lanes or s.cfg.lanes
        model = UpdateUnit(s.cfg, self.lanes)
        self.cmd = StreamSource(dut, "cmd", payload_layout(model, "cmd"), s.rng)
        self.src = StreamSource(dut, "i", payload_layout(model, "i"), s.rng)
        self.sink = StreamSink(dut, "o", payload_layout(model, "o"), s.rng)
        self.np_rng = np.random.default_rng(s.seed)
        width = len(model.cmd.payload.shift)
        self.shift_range = (-(2 ** (width - 1)), 2 ** (width - 1) - 1)

    async def check(self, w, g, shift, gap=0.0, stall=0.0, what="update"):
        """Update one tensor with shift = w_exp + lr_shift - g_exp; compare with the golden model."""
        w, g = quant.to_int8("w", w), quant.to_int8("g", g)
        key = self.s.rng.randrange(MASK32 + 1)
        lr_shift = max(shift, 0) + self.s.rng.randrange(3)      # any split into exponents will do
        want = quant.update_weights(quant.QTensor(w, 0), quant.QTensor(g, lr_shift - shift), lr_shift,
                                    self.mode, self.cfg, key).q.astype(np.int64)
        ws, gs = chunk(w.tolist(), self.lanes), chunk(g.tolist(), self.lanes)
        beats = [{"w": a, "g": b, "last": int(n == len(ws) - 1)} for n, (a, b) in enumerate(zip(ws, gs))]
        self.src.gap, self.sink.stall = gap, stall
        receiving = cocotb.start_soon(self.sink.receive(until_last=True))
        await self.cmd.send([{"shift": shift, "stochastic": int(self.mode == "stochastic"), "key": key}])
        await self.src.send(beats)
        out = await receiving
        assert len(out) == len(beats), f"{what}: {len(out)} output beats for {len(beats)}"
        got = np.array([v for bt in out for v in bt["w"]][:w.size], dtype=np.int64)
        assert np.array_equal(got, want), \
            f"{what}: shift {shift} key {key:#x}\n w {w.tolist()}\n g {g.tolist()}\n got {got.tolist()}\nwant {want.tolist()}"

    def random_int8(self, n):
        return self.np_rng.integers(-128, 128, n)


async def setup(dut):
    return await start_bench(dut, Bench)


@cocotb.test()
async def random_updates(dut):
    """Random w, g, shifts around the interesting range, keys, gaps and back-pressure."""
    b = await setup(dut)
    for n in range(30):
        size = b.s.rng.randrange(1, 5 * b.lanes + 2)
        shift = b.s.rng.randrange(-12, b.cfg.max_shift + 4)
        await b.check(b.random_int8(size), b.random_int8(size), shift,
                      gap=0.3 if n % 2 else 0.0, stall=0.3 if n % 3 else 0.0, what=f"random update {n}")


@cocotb.test()
async def every_gradient_value(dut):
    """All 256 gradient values (ties at every shift) against random weights, shifts -11 .. 10."""
    b = await setup(dut)
    g = np.arange(-128, 128)
    for shift in range(-11, 11):
        await b.check(b.random_int8(g.size), g, shift, what=f"every g at shift {shift}")


@cocotb.test()
async def edge_updates(dut):
    """Saturation of w at both ends, -128 operands, zeros, flush (max_shift, beyond, field extremes)."""
    b = await setup(dut)
    cfg, n = b.cfg, 2 * b.lanes + 1
    full = lambda v: np.full(n, v)  # noqa: E731
    low, high = b.shift_range
    shifts = (0, 1, -1, -(cfg.data_bits + 1), -(cfg.data_bits + 2), cfg.max_shift, cfg.max_shift + 1, low, high)
    for shift in shifts:
        await b.check(full(127), full(-128), shift, what="w 127 minus most negative g")
        await b.check(full(-128), full(127), shift, what="w -128 minus most positive g")
        await b.check(full(-128), full(-128), shift, what="all -128")
        await b.check(full(127), full(127), shift, what="all 127")
        await b.check(full(0), full(0), shift, what="zeros")
        await b.check(b.random_int8(n), full(0), shift, what="zero gradient")
        await b.check(full(-128), full(0), shift, what="w -128 saturates to -127")
