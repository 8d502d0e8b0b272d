"""golden_model.shuffle (the epoch's order) and hw/shuffler.py against it in Amaranth's simulator.
EOQ_SEED replays a run."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from golden_model.prng import PHI, tensor_key, xs32
from golden_model.shuffle import ROUNDS, SHUFFLE_TENSOR_ID, epoch_order, feistel, half_bits, permute
from hw.shuffler import Shuffler
from sim_tests.amaranth_sim import simulate

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))
#: cycles of one Feistel pass of the Shuffler
CYCLES_PER_PASS = ROUNDS * Shuffler.CYCLES_PER_ROUND


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 16, 17, 255, 256, 1437, 1797, 4096])
def test_epoch_order_is_a_permutation(count):
    order = epoch_order(count, SEED, 3)
    assert sorted(order.tolist()) == list(range(count)), f"EOQ_SEED={SEED}"


def test_half_bits_and_one_round_by_hand():
    assert [half_bits(n) for n in (1, 2, 3, 4, 5, 16, 17, 1437)] == [1, 1, 1, 1, 2, 2, 3, 6]
    # one pass over 2 bits (half 1), key 0: each round L, R = R, L ^ (xs32(R + r * PHI) & 1)
    left, right = 1, 0
    for r in range(ROUNDS):
        left, right = right, left ^ (int(xs32((right + r * PHI) & 0xFFFFFFFF)) & 1)
    assert feistel(np.array([2]), 1, 0)[0] == (left << 1) | right


def test_epochs_and_seeds_give_other_orders():
    a, b, c = epoch_order(1437, 0, 0), epoch_order(1437, 0, 1), epoch_order(1437, 1, 0)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a, epoch_order(1437, 0, 0))
    assert np.array_equal(a, permute(np.arange(1437), 1437, tensor_key(0, 0, SHUFFLE_TENSOR_ID)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one sample"):
        epoch_order(0, 0, 0)
    with pytest.raises(ValueError, match="key"):
        permute(np.arange(3), 3, -1)


def walk_passes(index: int, count: int, key: int) -> int:
    """Feistel passes the cycle walk takes for ``index`` (golden model)."""
    half = half_bits(count)
    x, passes = feistel(np.array([index]), half, key)[0], 1
    while x >= count:
        x, passes = feistel(np.array([x]), half, key)[0], passes + 1
    return passes


def shuffler_run(counts_keys, max_count):
    """Each (count, key): a command, then every index; returns the unit's outputs and cycles per index.

    The wait for an output is bounded by the longest walk possible (every value of the
    Feistel domain at or above ``count`` visited once), so a long walk is not mistaken for a hang.
    """
    dut = Shuffler(max_count=max_count)
    results = []

    async def bench(ctx):
        for count, key in counts_keys:
            ctx.set(dut.cmd.payload, {"count": count, "key": key})
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)
            longest = (4 ** half_bits(count) - count + 1) * CYCLES_PER_PASS + 2
            out = []
            for index in range(count):
                ctx.set(dut.i.payload, index)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.o.ready, 1)
                for cycles in range(1, longest + 1):
                    _, _, valid, value = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                    if valid:
                        break
                else:
                    raise AssertionError(f"no output for index {index} of {count} key {key:#x} within {longest} "
                                         f"cycles (EOQ_SEED={SEED})")
                ctx.set(dut.o.ready, 0)
                out.append((value, cycles))
            results.append(out)

    simulate(dut, bench)
    return results


def test_shuffler_matches_the_golden_permutation():
    """Every output equals the golden permutation, CYCLES_PER_ROUND cycles per round of each pass of its walk."""
    rng = random.Random(SEED)
    cases = [(1, 5), (2, 0), (3, rng.randrange(2**32)), (17, rng.randrange(2**32)), (200, rng.randrange(2**32)),
             (64, 0xFFFFFFFF)]
    got = shuffler_run(cases, max_count=256)
    for (count, key), out in zip(cases, got):
        values, cycles = [v for v, _ in out], [c for _, c in out]
        assert values == permute(np.arange(count), count, key).tolist(), f"count {count} key {key:#x} EOQ_SEED={SEED}"
        assert cycles == [walk_passes(i, count, key) * CYCLES_PER_PASS + 1 for i in range(count)], \
            f"count {count} key {key:#x} EOQ_SEED={SEED}"
