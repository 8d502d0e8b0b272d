"""hw/skewed_banks.py in Amaranth's simulator: random word writes and lane reads against a plain model of
two banks of words, for every shape the configurations use."""

from __future__ import annotations

import os
import random

import pytest
from amaranth.sim import Simulator

from hw.skewed_banks import SkewedBanks

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


@pytest.mark.parametrize("lanes, words", [(4, 4), (8, 8), (16, 8), (16, 16), (8, 1), (8, 2)])
def test_reads_match_a_model_of_the_banks(lanes, words):
    print(f"EOQ_SEED={SEED}")
    rng = random.Random(SEED)
    dut = SkewedBanks(lanes=lanes, words=words, bits=8)
    model = [[[0] * lanes for _ in range(words)] for _ in range(2)]
    checked = []

    async def bench(ctx):
        for _ in range(300):
            bank, lane, transposed = rng.randrange(2), rng.randrange(lanes), rng.randrange(2)
            if transposed:
                lane -= lane % words                 # a transposed read takes a whole segment of word 0
            ctx.set(dut.r_bank, bank)
            ctx.set(dut.r_lane, lane)
            ctx.set(dut.r_transposed, transposed)
            want = [model[bank][0][lane + i] for i in range(words)] if transposed else \
                [model[bank][i][lane] for i in range(words)]
            got = [v if v < 128 else v - 256 for v in (ctx.get(dut.r_data[i]) for i in range(words))]
            assert got == want, f"bank {bank} lane {lane} transposed {transposed}"
            checked.append(transposed)
            write = rng.random() < 0.6
            w_bank, w_word = rng.randrange(2), rng.randrange(words)
            w_data = [rng.randrange(-128, 128) for _ in range(lanes)]
            ctx.set(dut.w_en, write)
            ctx.set(dut.w_bank, w_bank)
            ctx.set(dut.w_word, w_word)
            ctx.set(dut.w_data, w_data)
            await ctx.tick()
            if write:
                model[w_bank][w_word] = w_data

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert 0 < sum(checked) < len(checked)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")   # the refused banks
def test_rejects_shapes_it_cannot_skew():
    with pytest.raises(ValueError, match="words divide it"):
        SkewedBanks(lanes=8, words=3, bits=8)
    with pytest.raises(ValueError, match="power of two"):
        SkewedBanks(lanes=12, words=4, bits=8)
