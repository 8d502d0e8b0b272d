"""LoopCounter (hw/loop_counter.py) in Amaranth's simulator: after any sequence of restarts, steps and loads,
its registered ``last`` equals the compare it replaces, value >= bound (value == bound where exact)."""

from __future__ import annotations

import os
import random

import pytest
from amaranth import Module, Signal, signed

from hw.loop_counter import LoopCounter
from sim_tests.amaranth_sim import simulate

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


@pytest.mark.parametrize("exact", [0, 1])
def test_last_follows_the_compare_it_replaces(exact):
    rng = random.Random(SEED + exact)
    m = Module()
    bound, step = Signal(signed(12)), Signal(5)
    op, loaded, loaded_last = Signal(2), Signal(10), Signal()
    counter = LoopCounter(m, 10, bound=bound, step=step, exact=exact, name="c")
    with m.Switch(op):
        with m.Case(1):
            counter.restart()
        with m.Case(2):
            counter.step()
        with m.Case(3):
            counter.load(loaded, counter.test(loaded, counter.bound))

    def expected(value, b):
        return int(value == b) if exact else int(value >= b)

    async def bench(ctx):
        for trial in range(40):
            b, s = rng.randint(-20, 200), rng.randint(1, 16)
            if exact:                                   # equality is met only on the step's multiples
                s = rng.choice([1, 1, 3])
                b = s * rng.randint(-1, 40)
            ctx.set(bound, b)
            ctx.set(step, s)
            ctx.set(op, 1)                          # the bound may change up to the cycle of the restart
            await ctx.tick()
            for cycle in range(60):
                value = ctx.get(counter.value)
                assert ctx.get(counter.last) == expected(value, b), \
                    f"trial {trial} cycle {cycle}: value {value} bound {b} step {s} (EOQ_SEED={SEED})"
                choice = rng.choice([0, 2, 2, 2, 1, 3])
                if choice == 2 and value + s >= 1 << 10:    # a walk's counters never wrap
                    choice = 1
                ctx.set(op, choice)
                ctx.set(loaded, rng.randrange(1 << 10))
                await ctx.tick()

    simulate(m, bench)
