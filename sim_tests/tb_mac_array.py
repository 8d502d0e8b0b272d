"""cocotb bench of hw.mac_array.MacArray: acc[r][c] = sum_k a_k[r] * b_k[c] (numpy int64 reference)."""

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from golden_model.quant import check_acc
from hw.mac_array import MacArray
from sim_tests.common import StreamSink, encode, payload_layout, read_unsigned, settings, start


class Bench:
    def __init__(self, dut, s):
        self.dut, self.s, self.cfg = dut, s, s.cfg
        self.rows, self.cols = s.cfg.array_rows, s.cfg.array_cols
        model = MacArray(s.cfg)
        self.in_layout = payload_layout(model, "i")
        self.sink = StreamSink(dut, "o", payload_layout(model, "o"), s.rng)
        self.np_rng = np.random.default_rng(s.seed)

    async def feed(self, a, b, clear=True, drain=True, gap=0.0):
        """Feed beats a[k] (R,), b[k] (C,); ``clear`` with the first beat, ``drain`` with the last."""
        dut = self.dut
        if len(a) == 0:
            dut.clear.value = int(clear)
            dut.drain.value = int(drain)
            await FallingEdge(dut.clk)
        for k in range(len(a)):
            while gap and self.s.rng.random() < gap:
                dut.i__valid.value = 0
                dut.clear.value = int(clear and k == 0)  # a clear may precede the first beat
                dut.drain.value = 0
                await FallingEdge(dut.clk)
            dut.i__valid.value = 1
            dut.i__payload.value = encode(self.in_layout, {"a": list(a[k]), "b": list(b[k])})
            dut.clear.value = int(clear and k == 0)
            dut.drain.value = int(drain and k == len(a) - 1)
            await ReadOnly()
            assert read_unsigned(dut.i__ready) == 1, "array not ready while idle"
            await FallingEdge(dut.clk)
        dut.i__valid.value = 0
        dut.clear.value = 0
        dut.drain.value = 0

    async def read(self, stall=0.3):
        self.sink.stall = stall
        beats = await self.sink.receive(count=self.rows)
        assert [bt["last"] for bt in beats] == [0] * (self.rows - 1) + [1], "last flag wrong"
        return np.array([bt["row"] for bt in beats], dtype=np.int64)

    def reference(self, a, b):
        acc = np.asarray(a, dtype=np.int64).reshape(-1, self.rows).T @ np.asarray(b, dtype=np.int64).reshape(-1, self.cols)
        return check_acc("reference", acc, self.cfg)

    async def tile(self, a, b, gap=0.0, stall=0.3, what="tile"):
        await self.feed(a, b, gap=gap)
        got = await self.read(stall)
        want = self.reference(a, b)
        assert np.array_equal(got, want), f"{what}: K={len(a)}\n got {got.tolist()}\nwant {want.tolist()}"

    def random(self, k, low=-128, high=127):
        return (self.np_rng.integers(low, high + 1, (k, self.rows)),
                self.np_rng.integers(low, high + 1, (k, self.cols)))


async def setup(dut):
    s = settings(dut)
    for name in ("clear", "drain", "i__valid", "i__payload"):
        getattr(dut, name).value = 0
    await start(dut)
    return Bench(dut, s)


def longest_dot(cfg):
    """Longest reduction the configuration allows (see CoreConfig.__post_init__)."""
    return max(cfg.max_features, cfg.max_batch * cfg.max_features)


@cocotb.test()
async def random_tiles(dut):
    """Random int8 tiles of random length, random input gaps and output back-pressure."""
    b = await setup(dut)
    for n in range(12):
        a, bb = b.random(b.s.rng.randrange(1, 48))
        await b.tile(a, bb, gap=0.3 if n % 2 else 0.0, stall=0.4 if n % 3 else 0.0, what=f"random tile {n}")


@cocotb.test()
async def extremes(dut):
    """All -128, all 127, mixed extremes and zeros; largest accumulators (longest reduction)."""
    b = await setup(dut)
    rows, cols, cfg = b.rows, b.cols, b.cfg
    k = longest_dot(cfg)
    full = lambda v, n: np.full((k, n), v)  # noqa: E731
    await b.tile(full(-128, rows), full(-128, cols), what="all -128 (largest positive)")
    await b.tile(full(-128, rows), full(127, cols), what="-128 x 127 (largest negative)")
    await b.tile(full(127, rows), full(127, cols), stall=0.0, what="all 127")
    await b.tile(np.zeros((5, rows), int), full(-128, cols)[:5], what="zero a")
    alternating = np.where(np.indices((k, rows)).sum(0) % 2, -128, 127)
    await b.tile(alternating, full(-128, cols), what="alternating signs")


@cocotb.test()
async def controls(dut):
    """clear without beats, clear discards a partial tile, re-drain, accumulate across drains."""
    b = await setup(dut)
    a, bb = b.random(7)
    await b.tile(a, bb, what="first")
    await b.feed([], [], clear=True, drain=True)   # K = 0 tile
    assert np.array_equal(await b.read(), np.zeros((b.rows, b.cols), np.int64)), "clear without beats"
    a1, b1 = b.random(5)
    await b.feed(a1, b1, drain=False)              # abandoned tile ...
    a2, b2 = b.random(9)
    await b.tile(a2, b2, what="clear after abandoned tile")
    await b.feed([], [], clear=False, drain=True)  # drain again: readout is non-destructive
    assert np.array_equal(await b.read(), b.reference(a2, b2)), "second drain"
    a3, b3 = b.random(4)
    await b.feed(a3, b3, clear=False)              # keep accumulating without clear
    got = await b.read()
    want = b.reference(np.concatenate([a2, a3]), np.concatenate([b2, b3]))
    assert np.array_equal(got, want), "accumulate across a drain"
