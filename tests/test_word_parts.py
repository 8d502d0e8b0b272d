"""hw.word_parts (CoreConfig.unit_lanes): a word's parts, their valid counts, the TensorWalker that steps through
them and the WordAssembler that puts result words together again, in Amaranth's simulator against plain
Python."""

from __future__ import annotations

import os
import random

import pytest
from amaranth import ClockDomain, Module, Signal

from golden_model.config import CONFIGS, CoreConfig
from hw.rounding import data_shape
from hw.tensor_walker import TensorWalker
from hw.word_parts import WordAssembler, part_count, part_shape, word_part
from sim_tests.amaranth_sim import simulate

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))
NARROW = [CONFIGS["default"].replace(unit_lanes=2), CONFIGS["wide8x16"], CONFIGS["default"]]


def test_unit_lanes_must_divide_the_lanes():
    for bad in (3, 16, -1):
        with pytest.raises(ValueError, match=f"unit_lanes must divide lanes \\(8\\), or be 0 for lanes, got {bad}"):
            CoreConfig(unit_lanes=bad)
    assert (CoreConfig(unit_lanes=4).unit_width, CoreConfig(unit_lanes=4).unit_beats) == (4, 2)
    assert (CoreConfig().unit_width, CoreConfig().unit_beats) == (8, 1)


@pytest.mark.parametrize("cfg", NARROW, ids=lambda c: f"{c.name}-u{c.unit_width}")
def test_parts_split_a_word_and_its_valid_lanes(cfg):
    rng = random.Random(SEED)
    print(f"EOQ_SEED={SEED}")
    m = Module()
    count, part = Signal(range(cfg.lanes + 1)), Signal(part_shape(cfg))
    word = [Signal(data_shape(cfg), name=f"w{lane}") for lane in range(cfg.lanes)]
    counted = Signal(range(cfg.unit_width + 1))
    picked = [Signal(data_shape(cfg), name=f"p{lane}") for lane in range(cfg.unit_width)]
    m.d.comb += [counted.eq(part_count(cfg, count, part)),
                 *(p.eq(v) for p, v in zip(picked, word_part(cfg, word, part)))]

    async def bench(ctx):
        for _ in range(60):
            values = [rng.randint(-128, 127) for _ in range(cfg.lanes)]
            n, j = rng.randint(0, cfg.lanes), rng.randrange(cfg.unit_beats)
            for signal, value in zip(word, values):
                ctx.set(signal, value)
            ctx.set(count, n)
            ctx.set(part, j)
            width = cfg.unit_width
            assert ctx.get(counted) == min(max(n - j * width, 0), width), (n, j)
            assert [ctx.get(p) for p in picked] == values[j * width:(j + 1) * width]

    simulate(m, bench)


@pytest.mark.parametrize("cfg", NARROW, ids=lambda c: f"{c.name}-u{c.unit_width}")
def test_the_assembler_puts_parts_together(cfg):
    rng = random.Random(SEED)
    print(f"EOQ_SEED={SEED}")
    dut = WordAssembler(cfg)
    top = Module()                  # one part per word is wiring alone: the bench brings the clock
    top.submodules.dut = dut
    top.domains.sync = ClockDomain()

    async def bench(ctx):
        for tensor in range(3):
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            parts = [[rng.randint(-128, 127) for _ in range(cfg.unit_width)]
                     for _ in range(cfg.unit_beats * rng.randint(1, 4))]
            words, pending = [], list(parts)
            while pending:
                valid = rng.random() < 0.7
                ctx.set(dut.i.valid, valid)
                if valid:
                    ctx.set(dut.i.data, pending.pop(0))
                if ctx.get(dut.o.valid):
                    words.append([int(v) for v in ctx.get(dut.o.data)])
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            assert not ctx.get(dut.o.valid)
            want = [sum(parts[w:w + cfg.unit_beats], []) for w in range(0, len(parts), cfg.unit_beats)]
            assert words == want, f"tensor {tensor}"

    simulate(top, bench)


@pytest.mark.parametrize("cfg", NARROW, ids=lambda c: f"{c.name}-u{c.unit_width}")
def test_the_walker_steps_through_every_part(cfg):
    """Each padded row's words, each word's parts: (part, valid lanes, word's last part, tensor's last)."""
    rng = random.Random(SEED)
    print(f"EOQ_SEED={SEED}")
    dut = TensorWalker(cfg)
    width = cfg.unit_width

    def expected(rows, cols):
        steps = []
        for row in range(rows):
            words = -(-cols // cfg.lanes)
            for word in range(words):
                valid = min(cols - word * cfg.lanes, cfg.lanes)
                for part in range(cfg.unit_beats):
                    end = part == cfg.unit_beats - 1
                    steps.append((part, min(max(valid - part * width, 0), width), int(end),
                                  int(end and word == words - 1 and row == rows - 1)))
        return steps

    async def bench(ctx):
        for _ in range(6):
            rows, cols = rng.randint(1, 4), rng.randint(1, 3 * cfg.lanes)
            ctx.set(dut.rows, rows)
            ctx.set(dut.cols, cols)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            got = []
            while not got or not got[-1][3]:
                stall = rng.random() < 0.3
                ctx.set(dut.step, not stall)
                if not stall:
                    got.append((ctx.get(dut.part), ctx.get(dut.count), ctx.get(dut.word_end), ctx.get(dut.last)))
                await ctx.tick()
            ctx.set(dut.step, 0)
            assert got == expected(rows, cols), (rows, cols)

    simulate(dut, bench)
