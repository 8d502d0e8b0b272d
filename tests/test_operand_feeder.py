"""The MATMUL/CONV operand feeder (hw/operand_feeder.py + hw/feed_addresses.py) in Amaranth's simulator:
the vectors it emits, in order, equal op(T) of the golden layouts (sim_tests/command_model.py's shapes,
golden_model/geometry.py's pixel maps), for every mode, with random back-pressure."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from golden_model.config import get_config
from golden_model.geometry import Geometry
from hw.feed_addresses import Gather, feed_params_layout
from hw.interfaces import tmem_word_layout
from hw.operand_feeder import OperandFeeder

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


class FeederWithMemory(Elaboratable):
    def __init__(self, cfg, width, outer_step, rep_step, words):
        self.feeder = OperandFeeder(cfg, width=width, outer_step=outer_step, rep_step=rep_step)
        self.words = words
        self.cfg = cfg

    def elaborate(self, platform):
        m = Module()
        m.submodules.feeder = feeder = self.feeder
        layout = tmem_word_layout(self.cfg)
        init = [[int(v) for v in word] for word in self.words]
        m.submodules.mem = mem = Memory(shape=layout, depth=len(init), init=init)
        read = mem.read_port()
        m.d.comb += [read.addr.eq(feeder.mem.addr), read.en.eq(feeder.mem.en), feeder.mem.data.eq(read.data)]
        return m


def run_feeder(cfg, width, outer_step, rep_step, words, params, count, stall=0.3, then=()):
    """The vectors of a command (``params``, ``count`` vectors) and of the commands ``then`` (more
    ``params``, the same count), each started after the last one's vectors."""
    dut = FeederWithMemory(cfg, width, outer_step, rep_step, words)
    f = dut.feeder
    got = []

    async def bench(ctx):
        rng = random.Random(SEED)
        for run, command in enumerate([params, *then], start=1):
            values = {name: 0 for name, _ in feed_params_layout(cfg)}
            values.update(command)
            ctx.set(f.params, values)
            await ctx.tick().repeat(OperandFeeder.PARAMS_LEAD)
            ctx.set(f.start, 1)
            await ctx.tick()
            ctx.set(f.start, 0)
            for _ in range(count * 40 + 200):
                ready = rng.random() >= stall
                ctx.set(f.o.ready, ready)
                if ready and ctx.get(f.o.valid):
                    got.append([int(v) for v in ctx.get(f.o.payload)])
                await ctx.tick()
                if len(got) == run * count:
                    break
            ctx.set(f.o.ready, 0)
            for _ in range(20):
                assert not ctx.get(f.o.valid), "more vectors than the loops make"
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64).reshape(-1, width)


def stored(cfg, matrix, base=3):
    """TMEM words of a matrix stored row-major from word ``base`` (rows padded to words), random elsewhere."""
    lanes = cfg.lanes
    stride = -(-matrix.shape[1] // lanes)
    rng = np.random.default_rng(SEED)
    words = rng.integers(-128, 128, size=(base + matrix.shape[0] * stride + 5, lanes))
    padded = np.zeros((matrix.shape[0], stride * lanes), dtype=np.int64)
    padded[:, :matrix.shape[1]] = matrix
    words[base:base + matrix.shape[0] * stride] = padded.reshape(-1, lanes)
    return words, stride


def expected(op_t, width, outer, rep_step, repeat, blocks_rows):
    """The vectors the loops emit for op(T) (rows x K): per outer, per block of W rows, per rep, per k."""
    rows, depth = op_t.shape
    out = []
    for _ in range(outer):
        for row0 in range(0, rows, width):
            block = np.zeros((width, depth), dtype=np.int64)
            block[:min(width, rows - row0)] = op_t[row0:row0 + width]
            for _ in range(0, repeat, rep_step):
                out.extend(block.T.tolist())
    return np.array(out, dtype=np.int64).reshape(-1, width)


@pytest.mark.parametrize("config", ["small4x4", "default", "wide8x16"])
@pytest.mark.parametrize("transposed", [0, 1])
@pytest.mark.parametrize("side", ["a", "b"])
def test_plain_and_transposed_operands(config, transposed, side):
    cfg = get_config(config)
    rng = np.random.default_rng(SEED)
    width = cfg.array_rows if side == "a" else cfg.array_cols
    rows = int(rng.choice([rng.integers(1, 3 * width), rng.integers(1, 300)]))
    depth = int(rng.integers(1, 3 * cfg.lanes + 2))
    op_t = rng.integers(-128, 128, size=(rows, depth))
    t = op_t.T if transposed else op_t
    words, stride = stored(cfg, t)
    outer, repeat = (1, int(rng.integers(1, 20))) if side == "a" else (int(rng.integers(1, 20)), 1)
    outer_step, rep_step = (1, cfg.array_cols) if side == "a" else (cfg.array_rows, 1)
    params = dict(transposed=transposed, gather=Gather.NONE, base=3, stride=stride, rows=rows, depth=depth,
                  outer=outer, repeat=repeat, kh=1, kw=1)
    want = expected(op_t, width, -(-outer // outer_step), rep_step, repeat, rows)
    got = run_feeder(cfg, width, outer_step, rep_step, words, params, len(want))
    assert np.array_equal(got, want), f"(EOQ_SEED={SEED})"


@pytest.mark.parametrize("config", ["small4x4", "default", "wide8x16"])
def test_a_new_command_starts_with_empty_banks(config):
    """One block whose K fits a bank, repeated (the repeats hit the bank), then the same shape from other
    words: the second command's first fill reads them (its tags were cleared at its start) instead of
    hitting the bank the first command left."""
    cfg = get_config(config)
    rng = np.random.default_rng(SEED)
    width = cfg.array_rows
    first, second = rng.integers(-128, 128, size=(2, width, cfg.lanes))
    words, stride = stored(cfg, np.concatenate([first, second]))
    params = dict(transposed=0, gather=Gather.NONE, base=3, stride=stride, rows=width, depth=cfg.lanes,
                  outer=1, repeat=3 * cfg.array_cols, kh=1, kw=1)
    want = [expected(t, width, 1, cfg.array_cols, 3 * cfg.array_cols, width) for t in (first, second)]
    got = run_feeder(cfg, width, 1, cfg.array_cols, words, params, len(want[0]),
                     then=[{**params, "base": 3 + width * stride}])
    assert np.array_equal(got, np.concatenate(want)), f"(EOQ_SEED={SEED})"


def conv_cases():
    return [Geometry(batch=2, height=4, width=5, kh=3, kw=3, stride=1, pad_h=1, pad_w=1),
            Geometry(batch=1, height=6, width=5, kh=3, kw=3, stride=2, pad_h=1, pad_w=1),
            Geometry(batch=2, height=1, width=7, kh=1, kw=3, pad_w=1),
            Geometry(batch=3, height=4, width=4, kh=1, kw=1, stride=2)]


def padded_im2col(x, g: Geometry, lanes):
    """(out_rows, taps * Cp) of the golden layouts."""
    cp = -(-x.shape[1] // lanes) * lanes
    padded = np.zeros((x.shape[0] + 1, cp), dtype=np.int64)
    padded[:x.shape[0], :x.shape[1]] = x
    return padded[g.im2col()].reshape(g.out_rows, -1)


def col2im_source(e, g: Geometry, lanes):
    """(in_rows, taps * Op): for each input pixel and tap, the error of the output pixel that covers it."""
    op = -(-e.shape[1] // lanes) * lanes
    padded = np.zeros((e.shape[0] + 1, op), dtype=np.int64)
    padded[:e.shape[0], :e.shape[1]] = e
    source = np.full((g.in_rows, g.taps), -1)
    for out_row, taps in enumerate(g.im2col()):
        for tap, in_row in enumerate(taps):
            if in_row >= 0:
                source[in_row, tap] = out_row
    return padded[source].reshape(g.in_rows, -1)


def geometry_params(g: Geometry, walk, src):
    return dict(kh=g.kh, kw=g.kw, stride_log2=g.stride.bit_length() - 1, pad_h=g.pad_h, pad_w=g.pad_w,
                walk_h=walk[0], walk_w=walk[1], src_h=src[0], src_w=src[1], src_image=src[0] * src[1])


@pytest.mark.parametrize("config", ["small4x4", "default", "wide8x16"])
@pytest.mark.parametrize("g", conv_cases(), ids=str)
def test_gathers(config, g):
    """IM2COL (forward A, gradient B), COL2IM (error A) and TAPS (error B) against the golden maps."""
    cfg = get_config(config)
    lanes, rows_a, cols_b = cfg.lanes, cfg.array_rows, cfg.array_cols
    rng = np.random.default_rng(SEED)
    channels, outputs = int(rng.integers(1, 2 * lanes + 2)), int(rng.integers(1, 2 * lanes + 2))
    x = rng.integers(-128, 128, size=(g.in_rows, channels))
    e = rng.integers(-128, 128, size=(g.out_rows, outputs))
    cw, ow = -(-channels // lanes), -(-outputs // lanes)
    w = rng.integers(-128, 128, size=(outputs, g.taps, cw * lanes))
    w[:, :, channels:] = 0                           # each tap's padding channels have weight 0
    w = w.reshape(outputs, -1)
    in_grid, out_grid = (g.height, g.width), (g.out_height, g.out_width)

    # forward A: im2col(X), plain, M = out pixels, repeated per N tile
    words, stride = stored(cfg, x)
    cols = padded_im2col(x, g, lanes)
    params = dict(transposed=0, gather=Gather.IM2COL, base=3, stride=stride, rows=g.out_rows, depth=cols.shape[1],
                  outer=1, repeat=outputs, tap_words=cw, **geometry_params(g, out_grid, in_grid))
    want = expected(cols, rows_a, 1, cols_b, outputs, g.out_rows)
    assert np.array_equal(run_feeder(cfg, rows_a, 1, cols_b, words, params, len(want)), want), "im2col A"

    # gradient B: im2col(X)^T, transposed, N = taps x Cp lanes, K = out pixels, once per M tile
    params = dict(transposed=1, gather=Gather.IM2COL, base=3, stride=stride, rows=cols.shape[1], depth=g.out_rows,
                  outer=outputs, repeat=1, tap_words=cw, **geometry_params(g, out_grid, in_grid))
    want = expected(cols.T, cols_b, -(-outputs // rows_a), 1, 1, cols.shape[1])
    assert np.array_equal(run_feeder(cfg, cols_b, rows_a, 1, words, params, len(want)), want), "im2col B"

    # error A: col2im(E), plain, M = input pixels, K = taps x Op
    words, stride = stored(cfg, e)
    source = col2im_source(e, g, lanes)
    params = dict(transposed=0, gather=Gather.COL2IM, base=3, stride=stride, rows=g.in_rows, depth=source.shape[1],
                  outer=1, repeat=channels, tap_words=ow, **geometry_params(g, in_grid, out_grid))
    want = expected(source, rows_a, 1, cols_b, channels, g.in_rows)
    assert np.array_equal(run_feeder(cfg, rows_a, 1, cols_b, words, params, len(want)), want), "col2im A"

    # error B: W tap by tap, transposed: k = (tap, o) for o < Op, lane c = W[o, tap * Cp + c]
    words, stride = stored(cfg, w)
    op_b = np.zeros((cw * lanes, g.taps * ow * lanes), dtype=np.int64)
    for tap in range(g.taps):
        block = w[:, tap * cw * lanes:(tap + 1) * cw * lanes]           # (O, Cp)
        op_b[:, tap * ow * lanes:tap * ow * lanes + outputs] = block.T
    params = dict(transposed=1, gather=Gather.TAPS, base=3, stride=stride, rows=channels, depth=op_b.shape[1],
                  outer=g.in_rows, repeat=1, tap_words=cw, tap_depth=ow * lanes, krows=outputs,
                  **geometry_params(g, in_grid, out_grid))
    want = expected(op_b[:channels], cols_b, -(-g.in_rows // rows_a), 1, 1, channels)
    assert np.array_equal(run_feeder(cfg, cols_b, rows_a, 1, words, params, len(want)), want), "taps B"
