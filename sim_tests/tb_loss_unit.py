"""cocotb bench of hw.loss_unit.LossUnit against golden_model.int_loss.int_softmax_grid.

Every command's errors (int32 on the grid), per-row loss bits and correct
flags must equal the golden model's: random logits at every class count up
to the configuration's limit, ties, saturated and confident rows, exponent
extremes, batch 1 and full batches, with gaps and back-pressure.
"""

import cocotb
import numpy as np

from golden_model.int_loss import int_softmax_grid
from golden_model.quant import QTensor
from hw.loss_unit import LossUnit
from sim_tests.common import StreamSink, StreamSource, payload_layout, start_bench


class Bench:
    def __init__(self, dut, s):
        self.s, self.cfg = s, s.cfg
        model = LossUnit(s.cfg)
        self.cmd = StreamSource(dut, "cmd", payload_layout(model, "cmd"), s.rng)
        self.src = StreamSource(dut, "i", payload_layout(model, "i"), s.rng)
        self.sink = StreamSink(dut, "o", payload_layout(model, "o"), s.rng)
        self.np_rng = np.random.default_rng(s.seed)

    async def check(self, q, exp, labels, gap=0.0, stall=0.0, what="batch"):
        q = np.asarray(q, dtype=np.int8)
        rows, cols = q.shape
        self.src.gap, self.sink.stall = gap, stall
        receiving = cocotb.start_soon(self.sink.receive(until_last=True))
        await self.cmd.send([{"rows": rows, "cols": cols, "exp": exp}])
        await self.src.send([{"logit": int(q[r, c]), "label": int(labels[r])} for r in range(rows) for c in range(cols)])
        out = await receiving
        assert len(out) == rows * cols, f"{what}: {len(out)} beats for {rows}x{cols} (seed {self.s.seed})"
        got = np.array([beat["error"] for beat in out], dtype=np.int64).reshape(rows, cols)
        want, bits = int_softmax_grid(QTensor(q, exp), np.asarray(labels), self.cfg)
        context = f"{what} (EOQ_SEED={self.s.seed}) exp {exp} labels {list(labels)}\n logits {q.tolist()}"
        assert np.array_equal(got, want), f"{context}\n got {got.tolist()}\nwant {want.tolist()}"
        ends = [beat for beat in out if beat["row_last"]]
        assert [beat["loss_bits"] for beat in ends] == bits.tolist(), context
        assert [beat["correct"] for beat in ends] == (np.argmax(q, axis=1) == labels).astype(int).tolist(), context
        assert [n for n, beat in enumerate(out) if beat["last"]] == [rows * cols - 1], context

    def random_batch(self, rows, cols):
        q = self.np_rng.integers(-127, 128, (rows, cols))
        return q, self.np_rng.integers(0, cols, rows)


async def setup(dut):
    return await start_bench(dut, Bench)


@cocotb.test()
async def random_batches(dut):
    """Random logits: batch 1 and the full batch, class counts from 1 to the limit, gaps and back-pressure."""
    b = await setup(dut)
    limit = b.cfg.max_features
    for n, (rows, cols) in enumerate([(1, 10), (b.cfg.max_batch, 10), (3, 1), (2, limit), (5, 2), (1, limit)]):
        q, labels = b.random_batch(rows, cols)
        await b.check(q, int(b.np_rng.integers(-9, -2)), labels, gap=0.3 if n % 2 else 0.0,
                      stall=0.3 if n % 3 else 0.0, what=f"random {rows}x{cols}")


@cocotb.test()
async def edge_rows(dut):
    """Ties, all-equal rows, saturated confident rows (right and wrong), and exponents beyond the clamps."""
    b = await setup(dut)
    q = np.zeros((6, 10), dtype=np.int64)
    q[0, [2, 7]] = 100
    q[1] = -127
    q[1, 4] = 127
    q[2] = 127
    q[3] = np.arange(-127, 127, 26)[:10]
    q[4] = -128
    q[5, 9] = 127
    labels = np.array([7, 4, 9, 0, 5, 3])
    for exp in (-40, -26, -25, -9, -3, 0, 4, 5, 6, 30):
        await b.check(q, exp, labels, what=f"edge rows at exp {exp}")


@cocotb.test()
async def back_to_back(dut):
    """Consecutive commands (state is per command): the last rows' top and label must not leak."""
    b = await setup(dut)
    for n in range(6):
        rows, cols = int(b.np_rng.integers(1, 5)), int(b.np_rng.integers(1, 12))
        q, labels = b.random_batch(rows, cols)
        await b.check(q, int(b.np_rng.integers(-12, 2)), labels, what=f"back to back {n}")
