"""cocotb bench of hw.shuffler.Shuffler against golden_model.shuffle.permute.

Whole epochs (every index of a set, the order compared with the golden
model's), set sizes from 1 to the unit's limit, epoch changes between
indices, gaps and back-pressure.
"""

import cocotb
import numpy as np

from golden_model.prng import MASK32, tensor_key
from golden_model.shuffle import MAX_SAMPLES, SHUFFLE_TENSOR_ID, permute
from hw.shuffler import Shuffler
from sim_tests.common import StreamSink, StreamSource, payload_layout, start_bench


class Bench:
    def __init__(self, dut, s):
        self.s = s
        model = Shuffler(max_count=MAX_SAMPLES)
        self.cmd = StreamSource(dut, "cmd", payload_layout(model, "cmd"), s.rng)
        self.src = StreamSource(dut, "i", payload_layout(model, "i"), s.rng)
        self.sink = StreamSink(dut, "o", payload_layout(model, "o"), s.rng)

    async def epoch(self, count, key, indices=None, gap=0.0, stall=0.0):
        indices = list(range(count)) if indices is None else indices
        self.src.gap, self.sink.stall = gap, stall
        await self.cmd.send([{"count": count, "key": key}])
        receiving = cocotb.start_soon(self.sink.receive(count=len(indices)))
        await self.src.send(indices)
        got = await receiving
        want = permute(np.array(indices), count, key).tolist()
        assert got == want, f"count {count} key {key:#x} (EOQ_SEED={self.s.seed}): first difference at " \
                            f"{next(n for n, (g, w) in enumerate(zip(got, want)) if g != w)}"


@cocotb.test()
async def whole_epochs(dut):
    """Every index of sets of 1 to 1,437 samples (the digits split, with an epoch's key as training draws it)."""
    b = await start_bench(dut, Bench)
    s = b.s
    for n, count in enumerate((1, 2, 3, 5, 16, 17, 100, 1437)):
        await b.epoch(count, s.rng.randrange(MASK32 + 1), gap=0.3 if n % 2 else 0.0, stall=0.3 if n % 3 else 0.0)
    await b.epoch(1437, tensor_key(s.rng.randrange(2**32), 2, SHUFFLE_TENSOR_ID))


@cocotb.test()
async def the_limit_and_epoch_changes(dut):
    """The largest set (sampled indices), then a new key between indices of a running epoch."""
    b = await start_bench(dut, Bench)
    s = b.s
    indices = sorted(s.rng.sample(range(MAX_SAMPLES), 300)) + [0, MAX_SAMPLES - 1]
    await b.epoch(MAX_SAMPLES, s.rng.randrange(MASK32 + 1), indices=indices, stall=0.2)
    for count in (7, 4000, 1):
        await b.epoch(count, s.rng.randrange(MASK32 + 1), indices=[s.rng.randrange(count) for _ in range(20)])
