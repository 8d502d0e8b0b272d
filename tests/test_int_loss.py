"""golden_model.int_loss: the integer softmax error, on hand-worked cases and against the float loss.

Random cases draw from a printed seed (TEST_SEED=<n> replays a failure).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.int_loss import draw
from golden_model.arithmetic import Arithmetic
from golden_model.config import get_config
from golden_model.data import load_digits_split
from golden_model.int_loss import (EXP2_TABLE, EXP_BITS, LOG2_TABLE, LOG2E, LOG_FRAC, Z_LIMIT, exp2_neg,
                                   int_output_error, int_softmax_grid, interpolate, log2_q16, log2e_scaled)
from golden_model.loss import output_error
from golden_model.network import ResMLP, Trace, quantize_input
from golden_model.quant import QTensor

CFG = get_config("default")


def test_tables_endpoints_and_monotone():
    assert LOG2E == 94548
    assert EXP2_TABLE[0, 0] == 2**EXP_BITS
    assert EXP2_TABLE[-1].sum() == 2 ** (EXP_BITS - 1)            # the 257th point: 2**-1
    assert LOG2_TABLE[0, 0] == 0 and LOG2_TABLE[-1].sum() == 2**LOG_FRAC
    assert np.all(EXP2_TABLE[:, 1] < 0) and np.all(LOG2_TABLE[:, 1] > 0)


def test_interpolation_halfway_and_exact_points():
    """At a table point the entry itself; halfway between, the mean rounded half up."""
    assert interpolate(EXP2_TABLE, 5 << 8) == EXP2_TABLE[5, 0]
    value, step = EXP2_TABLE[5]
    assert interpolate(EXP2_TABLE, (5 << 8) + 128) == value + ((step * 128 + 128) >> 8)


def test_exp2_and_log2_against_floats():
    z = np.arange(0, 20 << LOG_FRAC, 997)
    assert np.allclose(exp2_neg(z), np.round(2.0 ** (EXP_BITS - z / 2**LOG_FRAC)), rtol=2e-6, atol=1)
    x = np.arange(1, 1 << 20, 331)
    assert np.abs(log2_q16(x) - np.log2(x) * 2**LOG_FRAC).max() < 3     # floor of the mantissa, table, interpolation


def test_log2_of_powers_of_two_is_exact():
    assert log2_q16(np.array([1, 2, 16, 2**24, 2**31])).tolist() == [k << LOG_FRAC for k in (0, 1, 4, 24, 31)]


def test_exp2_flushes_and_refuses_a_negative_whole_part():
    assert exp2_neg(np.array([(EXP_BITS + 2) << LOG_FRAC]))[0] == 0
    assert exp2_neg(np.array([-3 << LOG_FRAC]), scale_bits=0)[0] == 2**3
    with pytest.raises(ValueError, match="below"):
        exp2_neg(np.array([-1]))


def test_log2e_scaling_saturates_where_the_hardware_clamps_its_shift():
    """The core shifts by the exponent clamped to [-25, 5]; beyond that z is 0 or Z_LIMIT for every d."""
    d = np.arange(256)
    for exp in range(-40, 21):
        clamped = min(max(exp, -25), 5)
        assert np.array_equal(log2e_scaled(d, exp), log2e_scaled(d, clamped)), exp
    assert log2e_scaled(np.array([0]), 20)[0] == 0 and log2e_scaled(np.array([1]), 5)[0] == Z_LIMIT


def test_uniform_logits_hand_case():
    """Ten equal logits, B = 1, label 0: the float case of tests/test_network.py (q [-115, 13 x 9], exp -7).

    S = 10 * 2**24, log2 S = 27 + LOG2[64] / 2**16 (10 * 2**24 >> 11 = 1.25 * 2**16); g = 2**24 / 10 for
    the nine others, the label -9 g."""
    logits = QTensor(np.zeros((1, 10), dtype=np.int8), -3)
    grid, bits = int_softmax_grid(logits, np.array([0]), CFG)
    g = grid[0, 1]
    assert abs(g - 2**24 / 10) < 2 and np.all(grid[0, 1:] == g) and grid[0, 0] == -9 * g
    assert bits[0] == (27 << LOG_FRAC) + LOG2_TABLE[64, 0] - (EXP_BITS << LOG_FRAC)
    e, loss = int_output_error(logits, np.array([0]), CFG)
    assert e.exp == -7 and e.q.tolist() == [[-115] + [13] * 9]
    assert loss == pytest.approx(math.log(10.0), rel=1e-4)


def test_confident_wrong_prediction_is_minus_one_over_batch_exactly():
    """One logit at +127, the rest at -127 with exponent 0: p = 1 on class 0 to 2**-366; label 3.
    The error is +w at class 0 and -w at the label, w = 2**24 / 16 = 2**20, the rest 0: no overshoot."""
    q = np.full((16, 10), -127, dtype=np.int8)
    q[:, 0] = 127
    labels = np.full(16, 3)
    grid, _ = int_softmax_grid(QTensor(q, 0), labels, CFG)
    assert np.all(grid[:, 0] == 2**20) and np.all(grid[:, 3] == -(2**20))
    assert np.count_nonzero(grid) == 32


def test_ties_give_equal_errors():
    """Tied top logits share the probability: the top (first of the ties, by subtraction) and its twin
    (from the tables) agree to the tables' relative precision, 2**-16."""
    q = np.zeros((1, 10), dtype=np.int8)
    q[0, [2, 7]] = 100
    grid, _ = int_softmax_grid(QTensor(q, -5), np.array([0]), CFG)
    assert 0 < grid[0, 7] and abs(grid[0, 2] - grid[0, 7]) <= grid[0, 7] >> 16


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_within_one_step_of_the_float_loss(rng, batch):
    """Random tensors (bench/int_loss.py's draw): every element within one SQ step of the float error."""
    for _ in range(200):
        logits, labels = draw(rng, batch, 10)
        got, loss = int_output_error(logits, labels, CFG)
        want, float_loss = output_error(logits, labels, CFG)
        assert got.exp == want.exp, (logits.q.tolist(), logits.exp, labels.tolist())
        assert np.abs(got.q.astype(int) - want.q).max() <= 1, (logits.q.tolist(), logits.exp, labels.tolist())


def test_loss_matches_the_float_cross_entropy_below_the_cap(rng):
    """Per-sample -log2 p[y] in Q16 against the float value, where z stays below Z_LIMIT."""
    q = rng.integers(-60, 61, (64, 10)).astype(np.int8)
    labels = rng.integers(0, 10, 64)
    logits = QTensor(q, -5)
    _, bits = int_softmax_grid(logits, labels, CFG)
    z = logits.to_float()
    want = (np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)) - (z - z.max(axis=1, keepdims=True))[
        np.arange(64), labels]) / math.log(2)
    assert np.abs(bits / 2**LOG_FRAC - want).max() < 1e-3


def test_bad_labels_and_grid():
    logits = QTensor(np.zeros((2, 10), dtype=np.int8), -3)
    with pytest.raises(ValueError, match="labels"):
        int_output_error(logits, np.array([0, 10]), CFG)
    with pytest.raises(ValueError, match="loss_fixed_exp"):
        int_output_error(logits, np.array([0, 1]), CFG.replace(loss_fixed_exp=-25))


def test_the_int_loss_variant_trains_with_the_integer_error():
    """ResMLP with Arithmetic(loss="int"): the step's output error is int_output_error of its logits."""
    data = load_digits_split()
    x, labels = quantize_input(data.train_x[:16], CFG), data.train_y[:16]
    trace = Trace()
    model = ResMLP(CFG, seed=3, lr_shift=4, arithmetic=Arithmetic(loss="int"))
    model.train_step(x, labels, trace)
    (_, inputs, outputs), = [r for r in trace.records if r[0] == "host_output_error"]
    want, _ = int_output_error(inputs["y"], labels, CFG)
    assert outputs["e"].exp == want.exp and np.array_equal(outputs["e"].q, want.q)
    assert Arithmetic(loss="int").label == "loss=int"
    with pytest.raises(ValueError, match="loss"):
        Arithmetic(loss="softmax")
