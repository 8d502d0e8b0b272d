"""The integer loss in gateware (hw/log_domain.py, hw/loss_unit.py) against golden_model/int_loss.py,
in Amaranth's simulator.  The cocotb bench (sim_tests/tb_loss_unit.py) runs the same checks under
Verilator with back-pressure and more cases; these are the quick ones.  EOQ_SEED replays a run."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from golden_model.config import get_config
from golden_model.int_loss import EXP_BITS, LOG_FRAC, exp2_neg, int_softmax_grid, log2_q16, softmax_grid
from golden_model.quant import QTensor
from hw.log_domain import Exp2, Log2
from hw.loss_unit import LossUnit
from sim_tests.amaranth_sim import simulate

SEED = int(os.environ.get("EOQ_SEED", random.randrange(2**31)))


def test_exp2_pipeline_matches_the_golden_function():
    rng = random.Random(SEED)
    cases = [(0, 0), (1, 0), (65535, 0), (65536, 0), ((EXP_BITS + 1) << LOG_FRAC, 0), ((EXP_BITS + 2) << LOG_FRAC, 0),
             (-(24 << LOG_FRAC), 24), (-1, 24), (12345, 24)]
    cases += [(rng.randrange(-(24 << LOG_FRAC), 40 << LOG_FRAC), 24) for _ in range(60)]
    cases += [(rng.randrange(0, 30 << LOG_FRAC), rng.randrange(0, 25)) for _ in range(60)]
    dut = Exp2(24, tag_bits=8)
    got = []

    async def bench(ctx):
        for n, (z, offset) in enumerate(cases + [(0, 0)] * Exp2.LATENCY):
            ctx.set(dut.valid, n < len(cases))
            ctx.set(dut.z, z)
            ctx.set(dut.offset, offset)
            ctx.set(dut.tag, n % 256)
            await ctx.tick()
            if ctx.get(dut.out_valid):
                got.append((ctx.get(dut.out_tag), ctx.get(dut.out)))

    simulate(dut, bench)
    want = [(n % 256, int(exp2_neg(np.array(z), scale_bits=EXP_BITS - offset))) for n, (z, offset) in enumerate(cases)]
    assert got == want, f"EOQ_SEED={SEED}"


def test_log2_pipeline_matches_the_golden_function():
    rng = random.Random(SEED)
    values = [1, 2, 3, 16, 65535, 65536, 65537, 2**24, 10 * 2**24, 2**31 - 1] + [rng.randrange(1, 2**31)
                                                                               for _ in range(100)]
    dut = Log2(31)
    got = []

    async def bench(ctx):
        for n, v in enumerate(values + [1] * Log2.LATENCY):
            ctx.set(dut.valid, n < len(values))
            ctx.set(dut.v, v)
            await ctx.tick()
            if ctx.get(dut.out_valid):
                got.append(ctx.get(dut.out))

    simulate(dut, bench)
    assert got == log2_q16(np.array(values)).tolist(), f"EOQ_SEED={SEED}"


def loss_unit_run(cfg, logits: QTensor, labels, stall: float = 0.0, seed: int = 0):
    """Drive one command through the LossUnit; returns (errors (rows, cols), loss bits per row, correct per row,
    labelled per row)."""
    dut = LossUnit(cfg)
    rows, cols = logits.q.shape
    rng = random.Random(seed)
    out, bits, correct, labelled = [], [], [], []

    async def bench(ctx):
        ctx.set(dut.cmd.payload, {"rows": rows, "cols": cols, "exp": logits.exp})
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        beats = [(int(logits.q[r, c]), int(labels[r])) for r in range(rows) for c in range(cols)]
        sent, cycles = 0, 0
        while len(out) < rows * cols:
            cycles += 1
            assert cycles < 200 * rows * cols + 100, "the loss unit stalled"
            if sent < len(beats):
                ctx.set(dut.i.payload, {"logit": beats[sent][0], "label": beats[sent][1]})
                ctx.set(dut.i.valid, 1)
            else:
                ctx.set(dut.i.valid, 0)
            ready = rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            _, _, i_ready, o_valid, payload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            if sent < len(beats) and i_ready:
                sent += 1
            if o_valid and ready:
                out.append(payload.error)
                if payload.row_last:
                    bits.append(payload.loss_bits)
                    correct.append(payload.correct)
                    labelled.append(payload.labelled)
                assert payload.last == (len(out) == rows * cols)

    simulate(dut, bench)
    return np.array(out, dtype=np.int64).reshape(rows, cols), bits, correct, labelled


def check(cfg, logits, labels, stall=0.0):
    got, bits, correct, labelled = loss_unit_run(cfg, logits, labels, stall, SEED)
    want, want_bits = int_softmax_grid(logits, labels, cfg)
    context = f"EOQ_SEED={SEED} exp {logits.exp} labels {list(labels)}\nlogits {logits.q.tolist()}"
    assert np.array_equal(got, want), f"{context}\n got {got.tolist()}\nwant {want.tolist()}"
    assert bits == want_bits.tolist(), context
    assert correct == (np.argmax(logits.q, axis=1) == labels).astype(int).tolist(), context
    assert labelled == [1] * len(labels), context


def test_a_row_without_a_label_is_not_labelled():
    """Label max_features (what the LossEngine feeds for a label outside the classes): no one-hot term,
    and the row is not counted (labelled 0)."""
    cfg = get_config("small4x4")
    logits = QTensor(np.array([[5, -3, 9], [1, 2, 3], [0, 0, 7]], dtype=np.int8), -2)
    labels = np.array([2, cfg.max_features, 0])
    got, _, _, labelled = loss_unit_run(cfg, logits, labels)
    want, _ = softmax_grid(logits, np.where(labels == cfg.max_features, -1, labels), cfg)
    assert np.array_equal(got, want) and labelled == [1, 0, 1]


@pytest.mark.parametrize("config", ["small4x4", "default"])
def test_loss_unit_random_rows(config):
    cfg = get_config(config)
    rng = np.random.default_rng(SEED)
    for rows, exp in ((3, -5), (1, -8)):
        logits = QTensor(rng.integers(-127, 128, (rows, 10)).astype(np.int8), exp)
        check(cfg, logits, rng.integers(0, 10, rows), stall=0.3)


def test_loss_unit_ties_saturation_and_exponent_extremes():
    cfg = get_config("default")
    q = np.zeros((4, 10), dtype=np.int8)
    q[0, [2, 7]] = 100                                      # tied top
    q[1] = -127
    q[1, 4] = 127                                           # saturated, confident
    q[2] = 127                                              # all equal at the top value
    q[3] = np.arange(-127, 127, 26)[:10]
    labels = np.array([7, 3, 9, 0])
    for exp in (-30, -3, 0, 7):
        check(cfg, QTensor(q, exp), labels)
