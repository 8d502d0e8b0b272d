"""hw.rounding's split rounding offset: ``add_carry`` against plain integer addition at every value of small
shapes, and ``rounding_addend`` + carry equal to ``rounding_offset`` for every shift, sign and mode (random
generator words), in Amaranth's simulator."""

from __future__ import annotations

import itertools
import os
import random

import pytest
from amaranth import Module, Signal, signed, unsigned

from golden_model.config import CONFIGS
from hw.rounding import ShiftDecode, add_carry, rounding_addend, rounding_offset, shift_shape
from sim_tests.amaranth_sim import simulate

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


def values(shape):
    return range(-(1 << shape.width - 1), 1 << shape.width - 1) if shape.signed else range(1 << shape.width)


@pytest.mark.parametrize("a_shape, b_shape", [(signed(5), unsigned(4)), (unsigned(5), unsigned(4)),
                                              (signed(4), signed(6)), (unsigned(3), signed(5))], ids=str)
def test_add_carry_is_a_plus_b_plus_carry(a_shape, b_shape):
    a, b, carry = Signal(a_shape), Signal(b_shape), Signal()
    m = Module()
    expression = add_carry(a, b, carry)
    total = Signal(expression.shape())
    m.d.comb += total.eq(expression)

    async def bench(ctx):
        for x, y, c in itertools.product(values(a_shape), values(b_shape), (0, 1)):
            ctx.set(a, x), ctx.set(b, y), ctx.set(carry, c)
            assert ctx.get(total) == x + y + c, (x, y, c)

    simulate(m, bench)


@pytest.mark.parametrize("cfg", [CONFIGS["small4x4"], CONFIGS["default"]], ids=lambda c: c.name)
def test_the_addend_and_carry_add_up_to_the_offset(cfg):
    rng = random.Random(SEED)
    print(f"EOQ_SEED={SEED}")
    m = Module()
    shift, negative, stochastic, word = Signal(shift_shape(cfg)), Signal(), Signal(), Signal(32)
    decode = ShiftDecode(m, shift, cfg)
    addend, carry = rounding_addend(negative, decode, stochastic, word)
    offset = rounding_offset(negative.replicate(2).as_signed(), decode, stochastic, word)
    got, want = Signal(addend.shape().width + 1), Signal(offset.shape())
    m.d.comb += [got.eq(addend + carry), want.eq(offset)]

    async def bench(ctx):
        for s, neg, mode in itertools.product(range(cfg.max_shift + 1), (0, 1), (0, 1)):
            for _ in range(8):
                r = rng.getrandbits(32)
                ctx.set(shift, s), ctx.set(negative, neg), ctx.set(stochastic, mode), ctx.set(word, r)
                assert ctx.get(got) == ctx.get(want), (s, neg, mode, r)
                # and against the golden rule itself
                expected = (r & ((1 << s) - 1)) if mode else ((1 << s - 1) - neg if s else 0)
                assert ctx.get(got) == expected, (s, neg, mode, r)

    simulate(m, bench)
