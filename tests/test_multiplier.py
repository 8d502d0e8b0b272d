"""RegisteredMultiplier in Amaranth's simulator: its product, LATENCY cycles after the operands, equals a * b,
on a DSP's behavioural model and built in logic (shift-and-add, CoreConfig.logic_product_area)."""

from __future__ import annotations

import itertools
import os
import random

import pytest
from amaranth.back import rtlil

from fpga.build import get_platform
from golden_model.config import CoreConfig
from hw.multiplier import RegisteredMultiplier, size_multiplier
from sim_tests.amaranth_sim import simulate

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


def operands(a_bits, b_bits, rng):
    """Every pair for small widths; else the extremes and random pairs."""
    ranges = [range(-(1 << (bits - 1)), 1 << (bits - 1)) for bits in (a_bits, b_bits)]
    if a_bits + b_bits <= 12:
        return list(itertools.product(*ranges))
    extremes = [(x, y) for x in (ranges[0].start, -1, 0, 1, ranges[0].stop - 1)
                for y in (ranges[1].start, -1, 0, 1, ranges[1].stop - 1)]
    return extremes + [(rng.choice(ranges[0]), rng.choice(ranges[1])) for _ in range(400)]


@pytest.mark.parametrize("in_logic", [False, True])
@pytest.mark.parametrize("a_bits, b_bits", [(5, 5), (6, 6), (8, 8), (11, 8), (12, 13), (9, 18), (18, 18)])
def test_the_product_follows_its_operands(a_bits, b_bits, in_logic):
    print(f"EOQ_SEED={SEED}")
    pairs = operands(a_bits, b_bits, random.Random(SEED))
    dut = RegisteredMultiplier(a_bits=a_bits, b_bits=b_bits, in_logic=in_logic)

    async def bench(ctx):
        got = []
        for a, b in pairs + [(0, 0)] * RegisteredMultiplier.LATENCY:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()
            got.append(ctx.get(dut.p))
        want = [a * b for a, b in pairs]
        assert got[RegisteredMultiplier.LATENCY - 1:][:len(want)] == want

    simulate(dut, bench)


def test_products_in_logic_are_no_dsp_on_ecp5():
    ecp5 = get_platform("ulx3s", "85F")()
    board = rtlil.convert(RegisteredMultiplier(a_bits=8, b_bits=8, in_logic=True), platform=ecp5)
    assert "MULT18X18D" not in board and "$mul" not in board


def test_the_configuration_picks_the_products_in_logic():
    cfg = CoreConfig(logic_product_area=64)
    assert size_multiplier(cfg, a_bits=8, b_bits=8).in_logic
    assert not size_multiplier(cfg, a_bits=8, b_bits=9).in_logic
    assert not size_multiplier(CoreConfig(), a_bits=2, b_bits=2).in_logic
