"""BankedMemory (hw/banked_memory.py) in Amaranth's simulator: random writes and reads against a list; every
read's word arrives READ_LATENCY cycles after its ``en`` and equals the last word written there."""

from __future__ import annotations

import os
import random

import pytest
from amaranth import unsigned
from amaranth.sim import Simulator

from hw.banked_memory import BankedMemory

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


@pytest.mark.parametrize("depth, bank_depth", [
    (5, 8),                 # one bank, shallower than a block RAM
    (64, 8),                # one full group of banks
    (9 * 8, 8),             # a second group of one bank
    (29 * 4 + 3, 4),        # DMEM's shape in small: 30 banks, the last partly used, four groups
])
def test_reads_return_the_last_write_after_the_latency(depth, bank_depth):
    print(f"EOQ_SEED={SEED}")
    rng = random.Random(SEED)
    dut = BankedMemory(shape=unsigned(12), depth=depth, bank_depth=bank_depth)
    model = [0] * depth
    checked = []

    async def bench(ctx):
        expected = [None] * (BankedMemory.READ_LATENCY - 1)    # the words the reads in flight should return
        for cycle in range(40 * depth + 200):
            write = rng.random() < (0.6 if cycle < 4 * depth else 0.2)
            w_addr, w_data = rng.randrange(depth), rng.randrange(1 << 12)
            read = rng.random() < 0.6
            r_addr = rng.randrange(depth)
            ctx.set(dut.w.en, write)
            ctx.set(dut.w.addr, w_addr)
            ctx.set(dut.w.data, w_data)
            ctx.set(dut.r.en, read)
            ctx.set(dut.r.addr, r_addr)
            # a read sees the writes of earlier cycles (a write lands a cycle after its en, a read's
            # address is registered a cycle after its en: the two meet at the same bank edge)
            expected.append(model[r_addr] if read else None)
            if write:
                model[w_addr] = w_data
            await ctx.tick()
            want = expected.pop(0)
            if want is not None:
                got = ctx.get(dut.r.data)
                assert got == want, f"cycle {cycle}: read {got}, expected {want} (EOQ_SEED={SEED})"
                checked.append(got)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 10 * depth


def test_rejects_a_bank_depth_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="bank_depth must be a power of two"):
        BankedMemory(shape=unsigned(8), depth=100, bank_depth=48)
