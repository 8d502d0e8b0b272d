"""cocotb bench of hw.prng.RandomLanes against golden_model.prng.random_words."""

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

from golden_model.prng import MASK32, random_words
from hw.prng import RandomLanes
from sim_tests.common import decode, read_unsigned, settings, start


class Bench:
    def __init__(self, dut, s):
        self.dut, self.s = dut, s
        self.lanes = s.lanes or s.cfg.lanes
        self.layout = RandomLanes(self.lanes).words.shape()

    async def words(self):
        await ReadOnly()
        got = decode(self.layout, read_unsigned(self.dut.words))
        await FallingEdge(self.dut.clk)
        return got

    async def load(self, key):
        self.dut.key.value = key
        self.dut.load.value = 1
        self.dut.advance.value = 1  # load wins over advance
        await FallingEdge(self.dut.clk)
        self.dut.load.value = 0
        self.dut.advance.value = 0

    async def check_stream(self, key, steps, idle_prob=0.0):
        """Load key, then compare the words over ``steps`` advances (random idle cycles in between)."""
        await self.load(key)
        expected = random_words(key, steps * self.lanes).reshape(steps, self.lanes)
        for step in range(steps):
            while self.s.rng.random() < idle_prob:
                self.dut.advance.value = 0
                got = await self.words()
                assert got == [int(w) for w in expected[step]], f"key {key:#x} step {step} (idle)"
            self.dut.advance.value = 1
            got = await self.words()
            assert got == [int(w) for w in expected[step]], f"key {key:#x} step {step}: {got} != {list(expected[step])}"
        self.dut.advance.value = 0


async def setup(dut):
    s = settings(dut)
    dut.key.value = 0
    dut.load.value = 0
    dut.advance.value = 0
    await start(dut)
    return Bench(dut, s)


@cocotb.test()
async def edge_keys(dut):
    """Keys 0, all-ones, PHI-complement and the configured seed; long run wraps the counters."""
    b = await setup(dut)
    for key in (0, MASK32, (-0x9E3779B9) & MASK32, b.s.cfg.seed):
        await b.check_stream(key, 40)


@cocotb.test()
async def random_keys_with_idle(dut):
    """Random keys, random idle cycles between advances, reloads mid-stream."""
    b = await setup(dut)
    for _ in range(20):
        await b.check_stream(b.s.rng.randrange(MASK32 + 1), b.s.rng.randrange(1, 30), idle_prob=0.3)
